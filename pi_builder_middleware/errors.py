"""Exceptions raised by pi-builder-middleware.

Hierarchy::

    PiBuilderError
    ├── ConfigError                  bad configuration or input; names the field and the fix
    │   └── UnknownProviderError     no provider with that id (never added, or removed meanwhile)
    ├── PluginError                  a plugin registered something unusable
    ├── NoProviderAvailableError     filters left no provider; carries the reason per provider
    ├── AllProvidersFailedError      every provider in the chain failed; carries every attempt
    │   └── DeadlineExceededError    the request's timeout_s ran out first (also a TimeoutError)
    ├── AttemptTimeoutError          one attempt did not answer in time (also a TimeoutError); failed over
    │   └── FirstChunkTimeoutError   a stream sent no chunk within first_chunk_timeout_s
    └── StreamInterruptedError       a stream failed after chunks were already delivered

The provider simulator's :class:`~pi_builder_middleware.testing.SimulatorConfigError` is a ConfigError too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .errorinfo import error_text

if TYPE_CHECKING:
    from .models import Attempt

__all__ = [
    "AllProvidersFailedError",
    "AttemptTimeoutError",
    "ConfigError",
    "DeadlineExceededError",
    "FirstChunkTimeoutError",
    "NoProviderAvailableError",
    "PiBuilderError",
    "PluginError",
    "StreamInterruptedError",
    "UnknownProviderError",
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


class UnknownProviderError(ConfigError):
    """No provider has the id ``provider_id``: it was never added, or another thread removed it.

    Internals catch this one (not every :class:`ConfigError`) as the sign that a provider went away
    between a decision and its use.
    """

    def __init__(self, provider_id: str) -> None:
        self.provider_id = provider_id
        super().__init__("provider_id", f"unknown provider {provider_id!r}; add it first")


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
        self.args = (
            f"no answer within the request's timeout_s of {timeout_s:g} s "
            f"({len(self.attempts)} attempt(s) failed: {detail})",
        )
        if self.attempts:
            self.__cause__ = self.attempts[-1].error


class AttemptTimeoutError(PiBuilderError, TimeoutError):
    """A provider did not answer within the attempt's time limit; the call failed over to the next one.

    The attempt loop records it as :attr:`ErrorKind.TIMEOUT` without asking the classifier.
    """

    def __init__(self, provider_id: str, timeout_s: float, message: str | None = None) -> None:
        self.provider_id = provider_id
        self.timeout_s = timeout_s
        super().__init__(message or f"{provider_id!r} did not answer within {timeout_s} s (timeout_s)")


class FirstChunkTimeoutError(AttemptTimeoutError):
    """A provider sent no chunk within ``first_chunk_timeout_s``; the stream failed over to the next one."""

    def __init__(self, provider_id: str, timeout_s: float) -> None:
        super().__init__(
            provider_id, timeout_s, f"{provider_id!r} sent no chunk within {timeout_s} s (first_chunk_timeout_s)"
        )


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
