"""One provider's circuit breaker: its fields and the transitions between its states.

:class:`~pi_builder_middleware.failover.FailoverManager` owns the breakers and holds its lock around
every call here; this module only says what each transition does to the fields, once. Remote updates
(:mod:`pi_builder_middleware._replication`) go through the same transitions.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from typing import Any

from ._ratelimit import RateLimitTracker
from ._validation import is_number, require
from .enums import CircuitState, ErrorKind, EventKind
from .interfaces import BreakerWindow
from .state import BreakerUpdate

__all__ = ["Blocked", "Breaker", "check_record_args"]

_MAX_WINDOW = 10_000


def check_record_args(ok: object, kind: object, retry_after_s: object) -> None:
    """The arguments of :meth:`FailoverManager.record` that its fast check did not accept, named."""
    require("ok", isinstance(ok, bool), "True or False", ok)
    require("kind", kind is None or isinstance(kind, ErrorKind), "an ErrorKind or None", kind)
    require(
        "retry_after_s",
        retry_after_s is None or is_number(retry_after_s),
        "a finite number of seconds or None",
        retry_after_s,
    )


class Blocked(enum.Enum):
    """Why a breaker lets no call through now (:meth:`Breaker.blocked`); None means it does."""

    OPEN = "open"  # ejected until open_until
    TRIALS_TAKEN = "trials_taken"  # half-open, every trial permit in flight
    COOLING_DOWN = "cooling_down"  # a 429 cooldown until cooldown_until


class Breaker:
    """The state of one provider's breaker (not thread-safe: the manager's lock guards it)."""

    __slots__ = (
        "closed_at",
        "consecutive_failures",
        "consecutive_successes",
        "cooldown_until",
        "counts",
        "open_until",
        "permits",
        "rl",
        "state",
        "trips",
        "window",
        "window_failures",
    )

    def __init__(self) -> None:
        self.state = CircuitState.CLOSED
        self.open_until = 0.0
        self.cooldown_until = 0.0
        self.trips = 0
        self.closed_at = float("-inf")  # when it last recovered (trip memory counts from there)
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        self.window: deque[tuple[float, bool]] = deque()
        self.window_failures = 0
        self.permits: deque[float] = deque()
        self.counts: Counter[str] = Counter()
        self.rl = RateLimitTracker()

    # -- transitions ---------------------------------------------------------------------------
    def open(self, until: float) -> None:
        """Eject until ``until``: the window and trial permits start again."""
        self._enter(CircuitState.OPEN, clear_window=True)
        self.open_until = until

    def half_open(self) -> None:
        """Allow trial calls: none taken yet, no successes counted yet."""
        self._enter(CircuitState.HALF_OPEN, clear_window=False)

    def close(self, closed_at: float) -> None:
        """Back in service since ``closed_at`` (trip memory counts from there), with an empty window."""
        self._enter(CircuitState.CLOSED, clear_window=True)
        self.closed_at = closed_at

    def _enter(self, state: CircuitState, *, clear_window: bool) -> None:
        """The part every transition shares: no successes counted, no trial permits taken."""
        self.state = state
        self.consecutive_successes = 0
        self.permits.clear()
        if clear_window:
            self.window.clear()
            self.window_failures = 0

    # -- the sliding window --------------------------------------------------------------------
    def push(self, now: float, failed: bool, cutoff: float) -> None:
        """Add one outcome to the window and drop those older than ``cutoff``."""
        self.window.append((now, failed))
        self.window_failures += failed
        self.expire(cutoff)

    def expire(self, cutoff: float) -> None:
        """Drop outcomes older than ``cutoff`` (and any beyond the window's size cap)."""
        window = self.window
        while window and (window[0][0] < cutoff or len(window) > _MAX_WINDOW):
            _, old_failed = window.popleft()
            self.window_failures -= old_failed

    # -- what may pass -------------------------------------------------------------------------
    def blocked(self, now: float, permit_timeout_s: float, max_permits: int) -> Blocked | None:
        """Why no call may be sent now, or None (trial permits whose outcome never came back are dropped here)."""
        state = self.state
        if state is CircuitState.OPEN:
            return Blocked.OPEN
        if state is CircuitState.HALF_OPEN:
            permits = self.permits
            while permits and permits[0] + permit_timeout_s <= now:
                permits.popleft()  # a trial whose outcome never came back
            if len(permits) >= max_permits:
                return Blocked.TRIALS_TAKEN
        if now < self.cooldown_until:
            return Blocked.COOLING_DOWN
        return None

    def describe(self, blocked: Blocked, now: float) -> str:
        """``blocked`` in words, with the time left."""
        if blocked is Blocked.OPEN:
            return f"circuit open for {self.open_until - now:.1f} s more"
        if blocked is Blocked.TRIALS_TAKEN:
            return f"half-open with {len(self.permits)} trial call(s) in flight"
        return f"rate limited for {self.cooldown_until - now:.1f} s more"

    # -- another replica's update --------------------------------------------------------------
    def take_update(self, u: BreakerUpdate, now: float, wall: float) -> tuple[EventKind, str] | None:
        """Take another replica's update (``wall``: the store's time now); the event it makes, or None."""
        if u.is_cooldown:
            left = u.remaining(u.cooldown_for_s, wall)
            if left <= 0 or now + left <= self.cooldown_until:
                return None  # already cooling down at least that long (a cooldown is never shortened)
            self.cooldown_until = now + left
            self.rl.held(self.cooldown_until)  # maybe another replica's Retry-After: a success here must not lift it
            return EventKind.RATE_LIMITED, f"cooling down {left:.1f} s (Retry-After)"
        detail = self._take_transition(u, now, u.remaining(u.open_for_s, wall), wall - u.sent_at)
        return None if detail is None else (u.kind, detail)

    def _take_transition(self, u: BreakerUpdate, now: float, left: float, sent_ago: float) -> str | None:
        """Move to the state of another replica's transition ``u``; the event's detail, or None if nothing changed.

        ``left``: what remains of its ejection; ``sent_ago``: seconds since it was sent. Cooldowns travel
        only as RATE_LIMITED updates (merged by extension, so order never matters); a transition's
        ``cooldown_for_s`` is informational, and a remote reset leaves Retry-After alone. Trial permits
        are never shared: a half-open breaker keeps its own.
        """
        before = self.state
        reset = u.kind is EventKind.RESET
        self.trips = u.trips
        if reset:
            self.consecutive_failures = 0
            self.closed_at = float("-inf")
        if u.state is CircuitState.OPEN:
            if before is CircuitState.OPEN:
                self.open_until = now + left
            else:
                self.open(now + left)
            detail = f"open for {max(left, 0.0):.1f} s (trip {u.trips})"
        elif u.state is CircuitState.HALF_OPEN:
            if before is not CircuitState.HALF_OPEN:
                self.half_open()
            detail = "allowing trial calls"
        else:
            if before is not CircuitState.CLOSED or reset:
                self.close(self.closed_at)
            if u.kind is EventKind.RECOVERY:
                self.closed_at = now - max(sent_ago, 0.0)
            detail = "closed" if u.kind is EventKind.RECOVERY else "breaker reset"
        if self.state is before and not reset:
            return None  # same state, new numbers: nothing for subscribers to react to
        return detail

    # -- outcomes ------------------------------------------------------------------------------
    def refresh(self, now: float) -> bool:
        """OPEN turns HALF_OPEN once its ejection is over; True if it did."""
        if self.state is CircuitState.OPEN and now >= self.open_until:
            self.half_open()
            return True
        return False

    def succeeded(
        self, now: float, probe: bool, recovery_successes: int, window_s: float
    ) -> tuple[EventKind, str] | None:
        """Count one success; the event it causes (a probe half-opening an OPEN breaker, a recovery), if any."""
        self.consecutive_failures = 0
        if self.state is CircuitState.CLOSED:
            self.push(now, False, now - window_s)
            return None
        if self.state is CircuitState.OPEN:
            if not probe:
                return None  # a call that started before the trip; says nothing about recovery
            self.half_open()
            return EventKind.HALF_OPEN, "probe succeeded during ejection"
        self.consecutive_successes += 1
        successes = self.consecutive_successes
        if successes < recovery_successes:
            return None
        self.close(now)
        return EventKind.RECOVERY, f"{successes} successful trial call(s)"

    def view(self, provider_id: str) -> BreakerWindow:
        """What a :class:`FailoverPolicy` sees of this breaker."""
        return BreakerWindow(provider_id, self.consecutive_failures, len(self.window), self.window_failures, self.trips)

    def info(self, now: float, half_life_s: float) -> dict[str, Any]:
        """State, trips, remaining times and counters (an entry of :meth:`FailoverManager.stats`)."""
        return {
            "state": self.state.value,
            "trips": self.trips,
            "consecutive_failures": self.consecutive_failures,
            "open_for_s": max(self.open_until - now, 0.0) if self.state is CircuitState.OPEN else 0.0,
            "cooldown_for_s": max(self.cooldown_until - now, 0.0),
            "rate_limit_streak": self.rl.streak if now <= self.rl.streak_until else 0,
            "rate_limit_pressure": self.rl.pressure(now, half_life_s),
            **dict(self.counts),
        }
