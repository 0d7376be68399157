"""Riding out a spell in which no provider can answer: how long to wait before the next pass (``max_wait_s``).

A pass over the providers ends without an answer when the middleware has none to offer (every breaker
open, every provider cooling down after a 429) or when each one tried failed with an error that fails
over. With ``max_wait_s > 0`` the attempt loop then asks :meth:`RecoveryWait.delay` how long to sleep
before the next pass: until the first provider may take a call again (the breakers' own schedule, see
:meth:`FailoverManager.available_at`), but at least a backoff (50 ms, doubling each time it is what
decides the wait) so providers that fail while their breakers stay closed are not hammered; never
past the call's start + ``max_wait_s``, and not at all when nobody comes back before that.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

from ._clock import Clock
from .enums import CircuitState
from .errors import NoProviderAvailableError, PiBuilderError, UnknownProviderError, chain_exhausted
from .failover import FailoverManager
from .models import Attempt

__all__ = ["FIRST_BACKOFF_S", "RecoveryWait"]

#: Shortest sleep between two passes; doubles each time it, not a breaker, decides the wait.
FIRST_BACKOFF_S = 0.05


class RecoveryWait:
    """The waiting state of one call: its deadline, the seconds slept, the next backoff.

    ``delay(error)`` after a pass that ended with ``error`` gives the seconds to sleep before the next
    pass, or None to give up; ``give_up(error, attempts)`` is the error to raise then (every pass's
    attempts). ``start`` is when the call started (default: now).
    """

    __slots__ = ("_backoff", "_slept", "candidates", "clock", "deadline", "failover", "max_wait_s")

    def __init__(
        self,
        failover: FailoverManager,
        candidates: Iterable[str],
        max_wait_s: float,
        clock: Clock,
        *,
        start: float | None = None,
    ) -> None:
        self.failover = failover
        self.candidates = tuple(candidates)
        self.max_wait_s = max_wait_s
        self.clock = clock
        self.deadline = (clock() if start is None else start) + max_wait_s
        self._backoff = FIRST_BACKOFF_S
        self._slept = 0.0

    def delay(self, error: PiBuilderError) -> float | None:
        """Seconds to sleep before the next pass, or None when waiting cannot help within ``max_wait_s``."""
        if self.max_wait_s <= 0:
            return None
        soonest = self._soonest(blocked_only=isinstance(error, NoProviderAvailableError))
        now = self.clock()
        # Seconds slept count too, so a clock that does not move (a test's manual clock) cannot loop forever.
        left = min(self.deadline - now, self.max_wait_s - self._slept)
        if left <= 0 or soonest is None or soonest - now > left:
            return None  # nothing comes back before the deadline: fail now rather than sleep for nothing
        wait = soonest - now
        if wait < self._backoff:  # someone is available (again) but just failed: back off, longer each time
            wait = self._backoff
            self._backoff *= 2
        wait = min(wait, left)
        self._slept += wait
        return wait

    def give_up(self, error: PiBuilderError, attempts: Sequence[Attempt]) -> PiBuilderError:
        """The error to raise: AllProvidersFailedError with every pass's attempts if there were any, else ``error``."""
        if isinstance(error, NoProviderAvailableError) and attempts:
            return chain_exhausted(self.candidates, attempts)
        return error

    def _soonest(self, *, blocked_only: bool) -> float | None:
        """When the first candidate may take a call again (None: none will by waiting).

        After a selection that found nobody, only providers the breakers hold back count: one the
        request's filters excluded (capabilities, latency) is "available now" but will not be chosen.
        A half-open provider whose trial permits are taken may free up any moment (when the trial's
        outcome comes back), so it counts as available now and is polled at the backoff.
        """
        soonest: float | None = None
        for pid in self.candidates:
            with contextlib.suppress(UnknownProviderError):  # removed from the middleware meanwhile
                at = self.failover.available_at(pid)
                now = self.clock()  # read after available_at's own "now": "available now" is at <= now
                held = at > now
                if held and self.failover.state(pid) is CircuitState.HALF_OPEN:
                    at = now
                if blocked_only and not held:
                    continue
                soonest = at if soonest is None else min(soonest, at)
        return soonest
