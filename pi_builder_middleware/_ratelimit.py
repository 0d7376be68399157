"""Per-provider 429 bookkeeping for :class:`~pi_builder_middleware.FailoverManager`: streaks and pressure.

A 429 is not a health failure; it says "not now". Without Retry-After the provider is cooled down
briefly, for longer only while it keeps refusing (see :class:`~pi_builder_middleware.FailoverConfig`
for the rule), and routing can read a decayed share of 429s to send it less before anything is cut.
The caller holds the manager's lock for every method except :meth:`RateLimitTracker.pressure`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import FailoverConfig

__all__ = ["RateLimitTracker"]

_MAX_DOUBLINGS = 60  # 2**60 × any sane base is past every cap; keeps 2.0**n finite for endless streaks


class RateLimitTracker:
    """Streak, backoff and decayed 429 share of one provider."""

    __slots__ = ("backoff_until", "calls", "hits", "hold_until", "seen_at", "streak", "streak_until")

    def __init__(self) -> None:
        self.streak = 0
        self.streak_until = float("-inf")  # a 429 after this starts a new streak
        self.backoff_until = 0.0  # end of the cooldown this replica chose (no Retry-After): a success lifts it
        self.hold_until = 0.0  # end of Retry-After cooldowns, local or shared: kept until they end
        self.calls = 0.0  # decayed outcome count, at seen_at
        self.hits = 0.0  # decayed 429 count, at seen_at
        self.seen_at = float("-inf")

    def on_rate_limited(
        self, now: float, cooldown_until: float, retry_after_s: float | None, cfg: FailoverConfig
    ) -> tuple[float, float, str]:
        """Account one 429; returns (new cooldown end, this 429's wait, why)."""
        if self.streak == 0 or now > self.streak_until:
            self.streak = 1
        elif now >= cooldown_until:  # called again after the cooldown and still refused
            self.streak += 1
        # else: a call sent together with the ones already refused; same burst, same step
        if retry_after_s is None:
            step = cfg.rate_limit_base_cooldown_s * 2.0 ** min(self.streak - 1, _MAX_DOUBLINGS)
            wait = min(step, cfg.default_rate_limit_cooldown_s)
            self.backoff_until = max(self.backoff_until, now + wait)
            why = f"429 streak {self.streak}, no Retry-After"
        else:
            wait = min(max(retry_after_s, 0.0), cfg.max_rate_limit_cooldown_s)
            self.hold_until = max(self.hold_until, now + wait)
            why = "Retry-After"
        cooldown_until = max(cooldown_until, now + wait)
        self.streak_until = cooldown_until + cfg.rate_limit_streak_s
        return cooldown_until, wait, why

    def on_success(self, cooldown_until: float) -> float:
        """End the streak; returns the cooldown end without the backoff part (Retry-After stays)."""
        self.streak = 0
        self.streak_until = float("-inf")
        if cooldown_until > self.hold_until:
            self.backoff_until = 0.0
            return self.hold_until
        return cooldown_until

    def held(self, cooldown_until: float) -> None:
        """A cooldown shared by another replica (maybe a Retry-After): a success here must not lift it."""
        self.hold_until = max(self.hold_until, cooldown_until)

    def count(self, now: float, rate_limited: bool, half_life_s: float) -> None:
        """Add one outcome to the decayed 429 share."""
        if now > self.seen_at:
            decay = 0.5 ** ((now - self.seen_at) / half_life_s)
            self.calls *= decay
            self.hits *= decay
            self.seen_at = now
        self.calls += 1.0
        if rate_limited:
            self.hits += 1.0

    def pressure(self, now: float, half_life_s: float) -> float:
        """Decayed share of outcomes that were 429s, in [0, 1).

        ``hits / (calls + 1)`` over counts that halve every half-life: the mean of a Beta posterior
        with a prior of one accepted call. A single 429 reads 0.5, not 1; steady traffic reads the
        429 share; without traffic the evidence decays and the value drifts back to 0 (the more calls
        it rests on, the more half-lives that takes).
        """
        hits, calls, seen_at = self.hits, self.calls, self.seen_at  # lock-free read: tolerate a torn triple
        if hits <= 0.0:
            return 0.0
        decay = 0.5 ** ((now - seen_at) / half_life_s) if now > seen_at else 1.0
        return min(max(hits * decay / (calls * decay + 1.0), 0.0), 1.0)
