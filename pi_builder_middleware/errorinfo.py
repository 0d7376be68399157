"""Reading status codes and Retry-After from exceptions of any HTTP client, without importing one."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["extract_retry_after", "headers_of", "parse_retry_after", "status_code_of"]


def status_code_of(error: BaseException) -> int | None:
    """The HTTP status the provider sent, from ``error`` or its ``response``.

    ``provider_status_code`` (litellm's record of the upstream status, e.g. Anthropic's 529 that it
    maps to a 500) wins over ``status_code``, ``status`` and ``http_status``.
    """
    for owner in (error, getattr(error, "response", None)):
        if owner is None:
            continue
        for attr in ("provider_status_code", "status_code", "status", "http_status"):
            value = getattr(owner, attr, None)
            if isinstance(value, int) and 100 <= value <= 599:
                return value
            if isinstance(value, str) and value.isdigit() and 100 <= int(value) <= 599:
                return int(value)
    return None


def headers_of(error: BaseException) -> Mapping[str, Any] | None:
    """Response headers attached to ``error`` by common clients (httpx/openai/anthropic/litellm)."""
    for attr in ("litellm_response_headers", "headers", "response_headers"):
        value = getattr(error, attr, None)
        if isinstance(value, Mapping) or hasattr(value, "get"):
            return value
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None and hasattr(headers, "get"):
        return headers  # type: ignore[no-any-return]
    return None


def parse_retry_after(value: object, now: float | None = None) -> float | None:
    """Seconds from a Retry-After value: delta-seconds, milliseconds header values, or an HTTP date."""
    if value is None:
        return None
    if isinstance(value, int | float):
        try:
            return max(float(value), 0.0)
        except OverflowError:  # an int beyond float range: no usable delay, as for text that does not parse
            return None
    text = str(value).strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def extract_retry_after(error: BaseException) -> float | None:
    """Seconds the provider asked us to wait, from ``retry-after-ms`` / ``retry-after`` headers or attributes."""
    headers = headers_of(error)
    if headers is not None:
        getter = headers.get
        ms = getter("retry-after-ms") or getter("Retry-After-Ms")
        if ms is not None:
            seconds = parse_retry_after(ms)
            if seconds is not None:
                return seconds / 1000.0
        value = getter("retry-after") or getter("Retry-After")
        if value is not None:
            return parse_retry_after(value)
    for attr in ("retry_after", "retry_after_s"):
        value = getattr(error, attr, None)
        if value is not None:
            return parse_retry_after(value)
    return None
