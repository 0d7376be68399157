"""Exceptions raised by pi-builder-middleware.

Hierarchy::

    PiBuilderError
    ├── ConfigError                  bad configuration or input; names the field and the fix
    ├── PluginError                  a plugin registered something unusable
    ├── NoProviderAvailableError     filters left no provider; carries the reason per provider
    ├── AllProvidersFailedError      every provider in the chain failed; carries every attempt
    │   └── DeadlineExceededError    the request's timeout_s ran out first (also a TimeoutError)
    └── StreamInterruptedError       a stream failed after chunks were already delivered
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .errorinfo import error_text

if TYPE_CHECKING:
    from .models import Attempt

__all__ = [
    "AllProvidersFailedError",
    "ConfigError",
    "DeadlineExceededError",
    "NoProviderAvailableError",
    "PiBuilderError",
    "PluginError",
    "StreamInterruptedError",
    "chain_exhausted",
]


class PiBuilderError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigError(PiBuilderError, ValueError):
    """Configuration or input that cannot be used.

    ``field`` names the offending setting (dotted path) so the message says what to fix.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class PluginError(PiBuilderError):
    """A plugin registered something the host cannot use (duplicate name, wrong type, ...)."""


class NoProviderAvailableError(PiBuilderError):
    """No provider passed the request's filters.

    ``reasons`` maps every provider id that was considered to why it was excluded.
    """

    def __init__(self, reasons: Mapping[str, str]) -> None:
        self.reasons = dict(reasons)
        if self.reasons:
            detail = "; ".join(f"{pid}: {why}" for pid, why in self.reasons.items())
        else:
            detail = "no providers are configured for this request"
        super().__init__(f"no provider available ({detail})")


class AllProvidersFailedError(PiBuilderError):
    """Every provider in the failover chain failed.

    ``attempts`` lists each attempt in order with its provider and cause; the exception is chained
    (``__cause__``) to the last attempt's error.
    """

    def __init__(self, attempts: Sequence[Attempt]) -> None:
        self.attempts = list(attempts)
        detail = "; ".join(
            f"{a.provider_id}: {a.error_kind.value} ({type(a.error).__name__}: {_short(a.error)})"
            for a in self.attempts
        )
        super().__init__(f"all {len(self.attempts)} attempt(s) failed: {detail}")


class DeadlineExceededError(AllProvidersFailedError, TimeoutError):
    """The request's ``timeout_s`` ran out before any provider answered (across every attempt, hedge and wait).

    ``attempts`` lists the attempts that failed before (possibly none); raise ``timeout_s`` or lower
    ``max_wait_s`` if the request needs more time.
    """

    def __init__(self, timeout_s: float, attempts: Sequence[Attempt]) -> None:
        super().__init__(attempts)
        self.timeout_s = timeout_s
        detail = "; ".join(f"{a.provider_id}: {a.error_kind.value}" for a in self.attempts) or "none answered in time"
        self.args = (f"no answer within the request's timeout_s of {timeout_s:g} s "
                     f"({len(self.attempts)} attempt(s) failed: {detail})",)
        if self.attempts:
            self.__cause__ = self.attempts[-1].error


class StreamInterruptedError(PiBuilderError):
    """A streamed response failed after chunks had already been delivered to the caller.

    Failing over at that point would splice two different answers together, so the stream ends
    with this error instead of a silently truncated answer. ``chunks_delivered`` says how far it got.
    """

    def __init__(self, provider_id: str, chunks_delivered: int, error: BaseException) -> None:
        self.provider_id = provider_id
        self.chunks_delivered = chunks_delivered
        self.error = error
        super().__init__(
            f"stream from {provider_id!r} failed after {chunks_delivered} chunk(s): "
            f"{type(error).__name__}: {_short(error)}"
        )


def _short(error: BaseException, limit: int = 160) -> str:
    text = error_text(error).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def chain_exhausted(provider_ids: Sequence[str], attempts: Sequence[Attempt]) -> PiBuilderError:
    """The error to raise when a failover chain ran out.

    :class:`AllProvidersFailedError` chained to the last attempt's error, or, when no provider could
    even be tried (their breakers opened meanwhile), :class:`NoProviderAvailableError`.
    """
    if not attempts:
        return NoProviderAvailableError({pid: "became unavailable before it could be tried" for pid in provider_ids})
    error = AllProvidersFailedError(attempts)
    error.__cause__ = attempts[-1].error
    return error
