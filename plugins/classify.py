"""Built-in error classifier. Reads class names, HTTP status and message text, so it understands
litellm, openai, anthropic, httpx and LangChain errors without importing any of them."""

from __future__ import annotations

from pi_builder_middleware import ErrorKind, Provider, hookimpl, status_code_of
from pi_builder_middleware.errorinfo import error_text

__all__ = ["classify"]

# Matched against the error's class and its bases, most specific first.
_SPECIFIC_NAMES = {
    "ContextWindowExceededError": ErrorKind.CONTEXT_WINDOW,
    "ContentPolicyViolationError": ErrorKind.CONTENT_POLICY,
}
_GENERIC_NAMES = {
    "RateLimitError": ErrorKind.RATE_LIMITED,
    "AuthenticationError": ErrorKind.AUTH,
    "PermissionDeniedError": ErrorKind.AUTH,
    "NotFoundError": ErrorKind.AUTH,
    "APITimeoutError": ErrorKind.TIMEOUT,
    "Timeout": ErrorKind.TIMEOUT,
    "TimeoutException": ErrorKind.TIMEOUT,
    "ReadTimeout": ErrorKind.TIMEOUT,
    "ConnectTimeout": ErrorKind.TIMEOUT,
    "ServiceUnavailableError": ErrorKind.OVERLOADED,
    "OverloadedError": ErrorKind.OVERLOADED,
    "InternalServerError": ErrorKind.SERVER_ERROR,
    "APIConnectionError": ErrorKind.CONNECTION,
    "ConnectError": ErrorKind.CONNECTION,
    "RemoteProtocolError": ErrorKind.CONNECTION,
    "ServerDisconnectedError": ErrorKind.CONNECTION,
    "ClientConnectionError": ErrorKind.CONNECTION,
    "BadRequestError": ErrorKind.BAD_REQUEST,
    "UnprocessableEntityError": ErrorKind.BAD_REQUEST,
}
_CONTEXT_HINTS = (
    "context length",
    "context_length",
    "maximum context",
    "prompt is too long",
    "too many tokens",
    "context window",
)
_POLICY_HINTS = ("content_policy", "content policy", "content management policy", "content_filter")


def _by_status(status: int) -> ErrorKind | None:
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status in (503, 529):
        return ErrorKind.OVERLOADED
    if status == 408:
        return ErrorKind.TIMEOUT
    if status >= 500:
        return ErrorKind.SERVER_ERROR
    if status in (401, 402, 403, 404):
        return ErrorKind.AUTH
    if status == 413:
        return ErrorKind.CONTEXT_WINDOW
    if status in (400, 422):
        return ErrorKind.BAD_REQUEST
    return None


def classify(error: BaseException) -> ErrorKind:
    """The built-in reading of ``error``."""
    names = [cls.__name__ for cls in type(error).__mro__]
    for name in names:
        if name in _SPECIFIC_NAMES:
            return _SPECIFIC_NAMES[name]
    text = error_text(error).lower()
    status = status_code_of(error)
    kind = _by_status(status) if status is not None else None
    if kind is None:
        kind = next((_GENERIC_NAMES[n] for n in names if n in _GENERIC_NAMES), None)
    if kind in (None, ErrorKind.BAD_REQUEST):
        if any(hint in text for hint in _CONTEXT_HINTS):
            return ErrorKind.CONTEXT_WINDOW
        if any(hint in text for hint in _POLICY_HINTS):
            return ErrorKind.CONTENT_POLICY
    if kind is not None:
        return kind
    if isinstance(error, TimeoutError):
        return ErrorKind.TIMEOUT
    if isinstance(error, ConnectionError):
        return ErrorKind.CONNECTION
    return ErrorKind.UNKNOWN


@hookimpl(trylast=True)
def pbm_classify_error(error: BaseException, provider: Provider) -> ErrorKind | None:
    """Built-in classification; runs after every third-party classifier returned None."""
    return classify(error)
