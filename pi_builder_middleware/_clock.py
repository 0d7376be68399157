"""Time sources. Every engine takes a clock so tests drive time instead of sleeping."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "monotonic_clock"]


class Clock(Protocol):
    """A callable returning seconds from an arbitrary, monotonic origin."""

    def __call__(self) -> float: ...


def monotonic_clock() -> float:
    """The default clock: :func:`time.monotonic`."""
    return time.monotonic()


class ManualClock:
    """A clock that only moves when told to; for tests and simulations."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (must not be negative) and return the new time."""
        if seconds < 0:
            raise ValueError(f"ManualClock.advance: seconds must be >= 0, got {seconds}")
        self._now += seconds
        return self._now

    def set(self, now: float) -> None:
        """Jump to ``now``; going backwards is refused because engines assume monotonic time."""
        if now < self._now:
            raise ValueError(f"ManualClock.set: time cannot go backwards ({now} < {self._now})")
        self._now = float(now)
