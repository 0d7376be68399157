"""Time sources. Every engine takes a clock so tests drive time instead of sleeping."""

from __future__ import annotations

import math
import time
from typing import Protocol

from ._validation import is_number, require
from .errors import ConfigError

__all__ = ["Clock", "ManualClock", "monotonic_clock"]


class Clock(Protocol):
    """A callable returning seconds from an arbitrary, monotonic origin."""

    def __call__(self) -> float: ...


def monotonic_clock() -> float:
    """The default clock: :func:`time.monotonic`."""
    return time.monotonic()


class ManualClock:
    """A clock that only moves when told to; for tests and simulations.

    Readings are finite floats: NaN, infinities and ints beyond float range raise :class:`ConfigError`
    (an engine fed such a time would compare nothing correctly again).
    """

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = _finite("ManualClock.start", start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (must not be negative) and return the new time."""
        seconds = _finite("ManualClock.advance", seconds)
        if seconds < 0:
            raise ConfigError("ManualClock.advance", f"seconds must be >= 0, got {seconds}")
        now = self._now + seconds
        if not math.isfinite(now):
            raise ConfigError("ManualClock.advance", f"{self._now} + {seconds} is beyond float range")
        self._now = now
        return now

    def set(self, now: float) -> None:
        """Jump to ``now``; going backwards is refused because engines assume monotonic time."""
        now = _finite("ManualClock.set", now)
        if now < self._now:
            raise ConfigError("ManualClock.set", f"time cannot go backwards ({now} < {self._now})")
        self._now = now


def _finite(field: str, value: object) -> float:
    require(field, is_number(value), "a finite number of seconds", value)
    return float(value)  # type: ignore[arg-type]
