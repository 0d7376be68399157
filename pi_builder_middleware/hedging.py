"""Hedged requests ("The Tail at Scale", gRPC's hedging policy): when the first attempt is slower than
usual, start the same request on the next provider of the decision's chain; the first answer wins and
the others are cancelled.

:class:`HedgePolicy` configures it (``Middleware(hedge=HedgePolicy())``); :class:`Hedger` is what a
middleware keeps: the policy, the shared :class:`~pi_builder_middleware.budget.RetryBudget`, each
provider's recent latencies (for the adaptive delay) and the counters ``stats()["hedging"]`` shows.
The async driver that runs the race is :func:`pi_builder_middleware._hedged.arun_hedged`.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from ._validation import is_number, require
from .budget import RetryBudget

__all__ = ["HedgePolicy", "Hedger", "LatencyTracker"]

_RECENT = 128  # latencies kept per provider for the adaptive delay
_STALE_AFTER = 8  # new samples before the cached quantile is computed again
_MAX_OVER_MEDIAN = 3.0  # the adaptive delay is at most this many times the median
_STRETCH_BELOW = 0.75  # below this share of the budget the adaptive delay moves toward its cap
_TAIL_SHARE = 0.1  # samples above the cap left out of the quantile while one or at most this share
_TAIL_MEMORY = 500  # answers after the last sign of a tail that the adaptive delay still hedges


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    """When to hedge an async call, how many times, and the budget that bounds hedges and retries.

    - ``delay_s``: start a hedge after this many seconds without an answer; None (adaptive): after the
      first provider's recent ``quantile`` latency (``stream_quantile`` of its time to first chunk for
      streams), at most three
      times its median, and no hedge until it has ``min_samples`` answers to judge by, nor while it shows
      no tail a hedge can cut: an answer above three times its median, or a hedge that answered before it,
      within its last 500 answers (a provider whose calls all end near the median would only pay the hedges'
      attempts; the first slow call of a heavy tail is the sign, later ones are hedged). Calls a hedge
      won are not answers of the first provider, so its answers are the *body* of its latency and the
      quantile sits at the body's edge: about ``1 - quantile`` of its normal calls hedge, on top of the
      slow ones. The default 0.98 keeps that share (2 %) plus a tail of up to about 6 % of slow calls
      under the budget's refill (``budget_ratio`` 0.1, one hedge per ten answers), so the budget does
      not run dry and refuse the slow calls their hedge; a lognormal body's p98 is only about 10 %
      later than its p95. Keep ``1 - quantile`` well below ``budget_ratio``. Slow answers that got in
      (calls that were not hedged: the first ``min_samples``, or refused by the budget) are left out
      while they are one or at most a tenth of the samples, and the cap bounds the delay when there are more,
      so they cannot push it into the very tail it is meant to cut (nor hold it there: with few
      samples, a high quantile is the slowest one). When the budget falls below three quarters full the
      delay moves toward the cap, nearing it where hedges stop (half full): fewer normal calls hedge and the
      budget recovers, while the slow calls still get theirs.
    - ``stream_quantile``: the adaptive delay's quantile for streams (0.9): a stream's race ends at the
      first chunk, so a normal stream that hedges costs little, while a slow one also waits for the whole
      token stream of its hedge after it; streams are a part of the calls, so hedging a tenth of their
      body stays within the budget (with 25 % of calls streamed: about one point more attempts).
    - ``max_hedges``: hedges per request (0: none; the budget still throttles failover retries).
    - ``budget_ratio``: tokens a success puts back into the retry budget (gRPC's ``tokenRatio``): about
      one hedge or retry per ``1 / budget_ratio`` answered calls, none while failures drain it. None:
      no budget (hedges and retries are not throttled).
    - ``budget_tokens``: the budget's size (gRPC's ``maxTokens``); hedges and retries go only while more
      than half of it is left.
    """

    delay_s: float | None = None
    max_hedges: int = 1
    budget_ratio: float | None = 0.1
    budget_tokens: float = 10.0
    quantile: float = 0.98
    min_samples: int = 5
    stream_quantile: float = 0.9

    def __post_init__(self) -> None:
        v: Any = self.delay_s
        if v is not None:
            require(
                "HedgePolicy.delay_s",
                is_number(v) and 0 <= v <= 86_400,
                "a number of seconds from 0 to 86400, or None (adaptive)",
                v,
            )
        v = self.max_hedges
        require(
            "HedgePolicy.max_hedges",
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10,
            "a whole number from 0 to 10",
            v,
        )
        v = self.budget_ratio
        if v is not None:
            require("HedgePolicy.budget_ratio", is_number(v) and 0 < v <= 1, "a number above 0 and up to 1, or None", v)
        v = self.budget_tokens
        require("HedgePolicy.budget_tokens", is_number(v) and 0 < v <= 1000, "a number above 0 and up to 1000", v)
        v = self.quantile
        require("HedgePolicy.quantile", is_number(v) and 0.5 <= v < 1, "a number from 0.5 to below 1 (e.g. 0.98)", v)
        v = self.stream_quantile
        require(
            "HedgePolicy.stream_quantile", is_number(v) and 0.5 <= v < 1, "a number from 0.5 to below 1 (e.g. 0.9)", v
        )
        v = self.min_samples
        require(
            "HedgePolicy.min_samples",
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= _RECENT,
            f"a whole number from 1 to {_RECENT}",
            v,
        )


class LatencyTracker:
    """The last answers' latencies of one provider (non-streamed) or times to first chunk (streamed).

    It also remembers when the provider last showed a tail that a hedge can cut (:meth:`tail_seen`): an
    answer above three times the median, or a hedge that answered before it.
    """

    __slots__ = ("_cached", "_fresh", "_looked", "ceiling", "samples", "seen", "tail_at")

    def __init__(self) -> None:
        self.samples: deque[float] = deque(maxlen=_RECENT)
        self._cached: float | None = None
        self._fresh = 0
        self.ceiling = 0.0  # three times the median, as of the last :meth:`quantile`
        self._looked = False  # whether the samples were sorted once (by :meth:`quantile` or :meth:`has_tail`)
        self.seen = 0  # answers added so far
        self.tail_at: int | None = None  # ``seen`` when the last sign of a tail came

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)
        self._fresh += 1
        self.seen += 1
        if 0.0 < self.ceiling < seconds:
            self.tail_at = self.seen

    def tail_seen(self) -> None:
        """A hedge answered before this provider: it has a tail a hedge can cut."""
        self.tail_at = self.seen

    def has_tail(self) -> bool:
        """Whether a sign of a tail came within the last ``_TAIL_MEMORY`` answers."""
        if not self._looked and len(self.samples) > 1:  # no quantile read yet: look at the samples once
            self._looked = True
            ordered = sorted(self.samples)
            self.ceiling = ordered[len(ordered) // 2] * _MAX_OVER_MEDIAN
            if ordered[-1] > self.ceiling:
                self.tail_at = self.seen
        at = self.tail_at
        return at is not None and self.seen - at <= _TAIL_MEMORY

    def quantile(self, q: float, min_samples: int) -> float | None:
        """The ``q`` quantile (nearest rank) of the kept samples' body, at most three times their median; None
        with fewer than ``min_samples``.

        The body: the samples up to three times the median, when those above are one or at most a tenth of
        them (a few slow calls that were not hedged); otherwise all of them (a tail that big is the
        provider's normal, and the cap decides).
        """
        n = len(self.samples)
        if n < min_samples:
            return None
        if self._cached is None or self._fresh >= _STALE_AFTER:
            ordered = sorted(self.samples)
            cap = ordered[n // 2] * _MAX_OVER_MEDIAN
            body = bisect.bisect_right(ordered, cap)
            if body < n:  # answers above three times the median among the kept ones: a tail
                self.tail_at = self.seen
            m = body if n - body <= max(1.0, n * _TAIL_SHARE) else n
            value = ordered[min(max(math.ceil(q * m) - 1, 0), m - 1)]
            self._cached = value if value < cap else cap
            self.ceiling = cap
            self._fresh = 0
            self._looked = True
        return self._cached


class Hedger:
    """A middleware's hedging state: policy, retry budget, recent latencies, counters (thread-safe counters)."""

    __slots__ = ("_latency", "_lock", "_ttft", "budget", "cancelled", "cancelled_cost", "policy", "started", "won")

    def __init__(self, policy: HedgePolicy) -> None:
        if not isinstance(policy, HedgePolicy):
            raise TypeError("policy must be a HedgePolicy")
        self.policy = policy
        self.budget = None if policy.budget_ratio is None else RetryBudget(policy.budget_ratio, policy.budget_tokens)
        self._latency: dict[str, LatencyTracker] = {}
        self._ttft: dict[str, LatencyTracker] = {}
        self._lock = threading.Lock()
        self.started = 0
        self.won = 0
        self.cancelled = 0
        self.cancelled_cost = 0.0

    def observe(self, provider_id: str, ok: bool, latency_s: float, ttft_s: float | None, health_failure: bool) -> None:
        """One recorded outcome (Middleware.record calls this): feeds the budget and the recent latencies."""
        budget = self.budget
        if ok:
            if budget is not None:
                budget.succeeded()
            table, value = (self._latency, latency_s) if ttft_s is None else (self._ttft, ttft_s)
            tracker = table.get(provider_id)
            if tracker is None:
                tracker = table.setdefault(provider_id, LatencyTracker())
            tracker.add(value)
        elif health_failure and budget is not None:
            budget.failed()

    def delay(self, provider_id: str, stream: bool) -> float | None:
        """Seconds to wait for ``provider_id`` before hedging it, or None (no hedge: too little data, or no tail).

        Adaptive: the quantile of its recent latencies (see :class:`HedgePolicy`), and only while the
        provider has shown a tail a hedge can cut within its last 500 answers (an answer above three times its
        median, or a hedge that answered first): a provider whose calls are all near its median gains nothing
        from a hedge, since its slowest calls end soon after the delay. While the budget is below three
        quarters full the delay moves toward the cap (three times the median), nearing it where hedges stop
        (half full): the hedges left go to the slowest calls rather than to calls only a bit slow.
        """
        policy = self.policy
        if policy.delay_s is not None:
            return policy.delay_s
        value = None
        ttft = self._ttft.get(provider_id)
        latency = self._latency.get(provider_id)
        tracker = ttft if stream else None
        if (
            tracker is not None
        ):  # until enough streams answered, the whole-call latency (later than the first chunk) stands in
            value = tracker.quantile(policy.stream_quantile, policy.min_samples)
        if value is None:
            tracker = latency
            value = None if latency is None else latency.quantile(policy.quantile, policy.min_samples)
        if value is None or not (
            (latency is not None and latency.has_tail()) or (ttft is not None and ttft.has_tail())
        ):
            return None
        budget = self.budget
        if value is None or tracker is None or budget is None:
            return value
        tokens, low = budget.tokens, budget.threshold
        high = budget.max_tokens * _STRETCH_BELOW
        if tokens >= high or tokens <= low:  # at or below half no hedge starts: its refusal is counted when due
            return value
        return value + (tracker.ceiling - value) * (high - tokens) / (high - low)

    def hedge_won(self, provider_id: str, stream: bool) -> None:
        """A hedge answered before ``provider_id``'s own attempt: a sign of a tail that hedges cut."""
        tracker = (self._ttft.get(provider_id) if stream else None) or self._latency.get(provider_id)
        if tracker is not None:
            tracker.tail_seen()

    def count(self, *, started: int = 0, won: int = 0, cancelled: int = 0, cost: float = 0.0) -> None:
        with self._lock:
            self.started += started
            self.won += won
            self.cancelled += cancelled
            self.cancelled_cost += cost

    def reset(self, provider_id: str | None = None) -> None:
        """Forget one provider's recent latencies; for all (None) also the counters, and refill the budget."""
        with self._lock:
            if provider_id is not None:
                self._latency.pop(provider_id, None)
                self._ttft.pop(provider_id, None)
                return
            self._latency.clear()
            self._ttft.clear()
            self.started = self.won = self.cancelled = 0
            self.cancelled_cost = 0.0
        if self.budget is not None:
            self.budget.reset()

    def snapshot(self) -> dict[str, Any]:
        """``stats()["hedging"]``: the policy, hedges started / won / cancelled, the budget."""
        p = self.policy
        return {
            "delay_s": p.delay_s,
            "max_hedges": p.max_hedges,
            "quantile": p.quantile,
            "started": self.started,
            "won": self.won,
            "cancelled": self.cancelled,
            "cancelled_cost": round(self.cancelled_cost, 9),
            "budget": None if self.budget is None else self.budget.snapshot(),
        }
