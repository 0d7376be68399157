"""Helpers the core tests share: an SDK-shaped HTTP error and sleeps that move a manual clock."""

from __future__ import annotations

from pi_builder_middleware import ManualClock

__all__ = ["HTTPError", "Sleeper"]


class HTTPError(Exception):
    """Shaped like the errors of HTTP SDKs: a status code and response headers."""

    def __init__(self, status_code: int, message: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(message or f"HTTP {status_code}")
        self.status_code = status_code
        self.headers = headers or {}


class Sleeper:
    """Injected sleeps that advance the manual clock instead of sleeping, and remember what was asked."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)
