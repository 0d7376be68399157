"""Clocks for the fault schedule: seconds since the simulator started."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Clock", "ManualClock", "MonotonicClock"]

Clock = Callable[[], float]
"""Any callable returning seconds since the simulator's start."""


class MonotonicClock:
    """Real time: seconds elapsed on ``time.monotonic`` since construction or :meth:`restart`."""

    def __init__(self) -> None:
        self._origin = time.monotonic()

    def restart(self) -> None:
        """Make the current instant t=0."""
        self._origin = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self._origin


class ManualClock:
    """A clock that only moves when told to, so tests drive fault phases without sleeping."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` and return the new time."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards; seconds must be >= 0")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        """Jump to ``now`` seconds since start."""
        with self._lock:
            self._now = float(now)

    def __call__(self) -> float:
        with self._lock:
            return self._now
