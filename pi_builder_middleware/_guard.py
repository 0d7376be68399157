"""Running user callbacks on the request path (subscribers, ``usage=``) so that a broken one is seen, never felt."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

__all__ = ["CallbackFailures"]

T = TypeVar("T")


class CallbackFailures:
    """Failures of user callbacks, counted by kind (``alert_subscriber``, ``usage``, ...).

    A callback that raises, or returns something unusable, must not fail the request it runs in nor
    keep the callbacks after it from running. One that fails on every request must not flood the log
    either: the first failure of each kind is logged with its traceback, later ones are only counted
    (``Middleware.stats()["callback_failures"]``).
    """

    __slots__ = ("_lock", "_logger", "counts")

    def __init__(self, logger: logging.Logger) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._logger = logger

    def failed(self, kind: str, error: BaseException | None = None, detail: str = "") -> None:
        """Count one failure of a ``kind`` callback (``detail``: what was wrong when nothing was raised)."""
        with self._lock:
            self.counts[kind] += 1
            first = self.counts[kind] == 1
        if first:
            why = detail or (type(error).__name__ if error is not None else "failed")
            self._logger.error(
                "%s failed (%s); ignored, later failures of this kind are only counted in stats()",
                kind,
                why,
                exc_info=error,
            )

    def call(self, kind: str, callback: Callable[[T], object], arg: T) -> None:
        """``callback(arg)``; an exception it raises is counted under ``kind`` instead of propagating."""
        try:
            callback(arg)
        except Exception as exc:
            self.failed(kind, exc)

    def snapshot(self) -> dict[str, int]:
        """Failures so far by kind."""
        with self._lock:
            return dict(self.counts)
