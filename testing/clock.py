"""Clocks for the fault schedule: seconds since the simulator started.

``ManualClock`` is the core's, so one clock can drive both the middleware and the simulator in tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pi_builder_middleware import ManualClock

__all__ = ["ManualClock", "MonotonicClock", "SimClock"]

SimClock = Callable[[], float]
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
