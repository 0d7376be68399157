"""The retry/hedge budget: gRPC's retry throttling (grpc/proposal A6), so failures never multiply load.

A token bucket holds up to ``max_tokens`` tokens and starts full. Every failed attempt that counts
against health (5xx, timeouts, connection errors, 429s) takes one token, every success puts back
``ratio`` tokens, and every hedge takes one token when it starts. Failover retries and hedges go only
while the bucket holds more than half of ``max_tokens``: with ``ratio`` 0.1 that is while fewer than
about one attempt in eleven fails, and at most about one hedge per ten answered calls. When every
provider is failing the bucket empties after a handful of failures and each request makes one
attempt; successes refill it and retries resume on their own.
"""

from __future__ import annotations

import threading
from typing import Any

from ._validation import is_number, require

__all__ = ["RetryBudget"]


class RetryBudget:
    """A token bucket shared by the failover retries and hedges of one middleware (thread-safe).

    ``ratio``: tokens a success puts back (0 < ratio <= 1); ``max_tokens``: the bucket's size (> 0,
    at most 1000, as in gRPC). :meth:`allows` answers whether a retry or hedge may start now.
    """

    __slots__ = ("_lock", "max_tokens", "ratio", "throttled_hedges", "throttled_retries", "tokens")

    def __init__(self, ratio: float = 0.1, max_tokens: float = 10.0) -> None:
        require("budget_ratio", is_number(ratio) and 0 < ratio <= 1, "a number above 0 and up to 1", ratio)
        require(
            "budget_tokens",
            is_number(max_tokens) and 0 < max_tokens <= 1000,
            "a number above 0 and up to 1000",
            max_tokens,
        )
        self.ratio = float(ratio)
        self.max_tokens = float(max_tokens)
        self.tokens = self.max_tokens
        self.throttled_retries = 0
        self.throttled_hedges = 0
        self._lock = threading.Lock()

    @property
    def threshold(self) -> float:
        """Retries and hedges go only while :attr:`tokens` is above this (half the bucket)."""
        return self.max_tokens / 2.0

    def allows(self) -> bool:
        """Whether a failover retry or a hedge may start now (reads only; see :meth:`spend_hedge`)."""
        return self.tokens > self.max_tokens / 2.0

    def succeeded(self) -> None:
        """An attempt answered: put back ``ratio`` tokens."""
        with self._lock:
            tokens = self.tokens + self.ratio
            self.tokens = tokens if tokens < self.max_tokens else self.max_tokens

    def failed(self) -> None:
        """An attempt failed in a way that counts against health: take one token."""
        with self._lock:
            tokens = self.tokens - 1.0
            self.tokens = tokens if tokens > 0.0 else 0.0

    def spend_hedge(self) -> bool:
        """Take one token for a hedge if the budget allows one now; whether the hedge may start."""
        with self._lock:
            if self.tokens > self.max_tokens / 2.0:
                self.tokens = max(self.tokens - 1.0, 0.0)
                return True
            self.throttled_hedges += 1
            return False

    def deny_retry(self) -> bool:
        """Whether a failover retry must not start now (counted when it is refused)."""
        if self.tokens > self.max_tokens / 2.0:
            return False
        with self._lock:
            self.throttled_retries += 1
        return True

    def reset(self) -> None:
        """Full again, counters at zero."""
        with self._lock:
            self.tokens = self.max_tokens
            self.throttled_retries = self.throttled_hedges = 0

    def describe(self) -> str:
        """A short phrase for a decision's reason: the bucket's level."""
        return f"retry budget low ({self.tokens:.1f} of {self.max_tokens:g} tokens, retries above {self.threshold:g})"

    def snapshot(self) -> dict[str, Any]:
        """The bucket for ``stats()``."""
        return {
            "tokens": round(self.tokens, 3),
            "max_tokens": self.max_tokens,
            "ratio": self.ratio,
            "allows": self.allows(),
            "throttled_retries": self.throttled_retries,
            "throttled_hedges": self.throttled_hedges,
        }

    def __repr__(self) -> str:
        return f"RetryBudget(tokens={self.tokens:.2f}/{self.max_tokens:g}, ratio={self.ratio:g})"
