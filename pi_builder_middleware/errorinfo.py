"""Reading status codes and Retry-After from exceptions of any HTTP client, without importing one.

Provider errors carry whatever a server (or a broken client) put in them, so nothing here raises:
an attribute or header mapping that raises reads as absent. Retry-After is None (absent) or a finite
number of seconds in ``[0, limit_s]``: a value that says nothing (NaN, unparsable) is absent, a
negative one or a date in the past means "now" (0), and anything longer than ``limit_s``, infinite
included, is ``limit_s`` (the middleware passes its ``FailoverConfig.max_rate_limit_cooldown_s``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

#: Default bound of a Retry-After (seconds), the default of ``FailoverConfig.max_rate_limit_cooldown_s``.
RETRY_AFTER_LIMIT_S = 300.0

__all__ = [
    "RETRY_AFTER_LIMIT_S",
    "error_text",
    "extract_retry_after",
    "headers_of",
    "parse_retry_after",
    "status_code_of",
]


def error_text(error: BaseException) -> str:
    """``str(error)``, or ``"<unprintable>"`` when the error's ``__str__`` raises (or returns no string).

    Provider errors are built from whatever a server sent; reading one must never raise a second error
    in place of the first.
    """
    try:
        text = str(error)
    except Exception:
        return "<unprintable>"
    return text if isinstance(text, str) else "<unprintable>"


def status_code_of(error: BaseException) -> int | None:
    """The HTTP status the provider sent, from ``error`` or its ``response``; None if there is none.

    ``provider_status_code`` (litellm's record of the upstream status, e.g. Anthropic's 529 that it
    maps to a 500) wins over ``status_code``, ``status`` and ``http_status``.
    """
    for owner in (error, _attribute(error, "response")):
        if owner is None:
            continue
        for attr in ("provider_status_code", "status_code", "status", "http_status"):
            value = _attribute(owner, attr)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                return int(value)
            if isinstance(value, str) and len(value) == 3 and value.isascii() and value.isdigit():
                number = int(value)
                if 100 <= number <= 599:
                    return number
    return None


def headers_of(error: BaseException) -> Mapping[str, Any] | None:
    """Response headers attached to ``error`` by common clients (httpx/openai/anthropic/litellm)."""
    for attr in ("litellm_response_headers", "headers", "response_headers"):
        value = _attribute(error, attr)
        if isinstance(value, Mapping) or hasattr(value, "get"):
            return value  # type: ignore[no-any-return]
    headers = _attribute(_attribute(error, "response"), "headers")
    if headers is not None and hasattr(headers, "get"):
        return headers  # type: ignore[no-any-return]
    return None


def parse_retry_after(value: object, now: float | None = None, *, limit_s: float = RETRY_AFTER_LIMIT_S) -> float | None:
    """Seconds from a Retry-After value (delta-seconds or an HTTP date): None, or finite in ``[0, limit_s]``.

    Never raises; see the module docstring for how NaN, negative and endless values read.
    """
    return _bounded(_seconds(value, now), limit_s)


def extract_retry_after(error: BaseException, *, limit_s: float = RETRY_AFTER_LIMIT_S) -> float | None:
    """Seconds the provider asked us to wait, from ``retry-after-ms`` / ``retry-after`` headers or attributes.

    None, or finite in ``[0, limit_s]``; never raises (headers that cannot be read count as absent).
    """
    headers = headers_of(error)
    if headers is not None:
        ms = _header(headers, "retry-after-ms", "Retry-After-Ms")
        seconds = _seconds(ms)
        if seconds is not None:
            return _bounded(seconds / 1000.0, limit_s)
        seconds = _seconds(_header(headers, "retry-after", "Retry-After"))
        if seconds is not None:
            return _bounded(seconds, limit_s)
    for attr in ("retry_after", "retry_after_s"):
        seconds = _seconds(_attribute(error, attr))
        if seconds is not None:
            return _bounded(seconds, limit_s)
    return None


def _attribute(owner: object, name: str) -> Any:
    """``getattr(owner, name, None)``, also None when reading it raises (a property of a broken error)."""
    if owner is None:
        return None
    try:
        return getattr(owner, name, None)
    except Exception:
        return None


def _header(headers: Mapping[str, Any], *names: str) -> object:
    """The first of ``names`` the mapping has; None when it has none or cannot be read."""
    for name in names:
        try:
            value = headers.get(name)
        except Exception:
            return None
        if value is not None:
            return value
    return None


def _seconds(value: object, now: float | None = None) -> float | None:
    """Unbounded seconds in ``[0, inf]`` from a Retry-After value, or None when it says nothing."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, int):  # compared, not converted: 10**400 does not fit a float
            return 0.0 if value <= 0 else math.inf if value > 2**53 else float(value)
        if isinstance(value, float):
            return None if math.isnan(value) else max(value, 0.0)
        text = value.decode("latin-1") if isinstance(value, bytes | bytearray) else str(value)
        text = text.strip()
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            return None if math.isnan(number) else max(number, 0.0)
        import email.utils  # only an HTTP-date Retry-After needs it (it pulls in socket, calendar, ...)

        when = email.utils.parsedate_to_datetime(text)
        delta = when.timestamp() - (time.time() if now is None else now)
    except Exception:  # unparsable, or an object whose __str__ raises: no Retry-After
        return None
    return None if math.isnan(delta) else max(delta, 0.0)


def _bounded(seconds: float | None, limit_s: float) -> float | None:
    return None if seconds is None else min(seconds, limit_s)
