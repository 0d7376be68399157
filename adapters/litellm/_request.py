"""One LiteLLM pick's request: the router stamp, what the request already tried, and its :class:`RouteRequest`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pi_builder_middleware import MAX_TOKENS, ConfigError, RouteRequest

from ._binding import METADATA_KEY, ROUTE_OPTIONS_KEY, TRACE_KEY, metadata_field
from ._names import mapped_strategy, unmapped_once

__all__ = ["attempted", "route_request", "stamp"]

_DEFAULT_OUTPUT_TOKENS = RouteRequest().output_tokens
_DEFAULT_INPUT_TOKENS = RouteRequest().input_tokens
_OPTION_FIELDS = ("strategy", "required_capabilities", "max_latency_ms", "min_availability", "exclude")


def stamp(request_kwargs: dict[str, Any], token: str) -> None:
    """Put the router token (and the request's trace id) into LiteLLM's own metadata for this request."""
    stamp = {METADATA_KEY: token}
    trace = request_kwargs.get("litellm_trace_id")
    if isinstance(trace, str):
        stamp[TRACE_KEY] = trace
    field = metadata_field(request_kwargs)
    metadata = request_kwargs.get(field)
    if isinstance(metadata, dict):
        metadata.update(stamp)
        if not isinstance(trace, str):
            metadata.pop(TRACE_KEY, None)
    elif metadata is None:
        request_kwargs[field] = stamp
    else:  # some other mapping type: keep it, add ours in a copy
        request_kwargs[field] = {**dict(metadata), **stamp}


def attempted(metadata: Mapping[str, Any]) -> frozenset[str]:
    """Deployment ids this request already tried (LiteLLM's ``previous_models`` on a retry/fallback)."""
    previous = metadata.get("previous_models")
    if not previous:
        return frozenset()
    return frozenset(
        str(p["deployment_id"]) for p in previous if isinstance(p, Mapping) and p.get("deployment_id") is not None
    )


def _input_tokens(messages: object, input: object) -> int:
    chars = 0
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, Mapping) else None
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                for part in content:
                    text = part.get("text") if isinstance(part, Mapping) else None
                    if isinstance(text, str):
                        chars += len(text)
    elif isinstance(input, str):
        chars = len(input)
    elif isinstance(input, list):
        chars = sum(len(i) for i in input if isinstance(i, str))
    return min(chars // 4 + 1, MAX_TOKENS) if chars else _DEFAULT_INPUT_TOKENS


def route_request(
    request_kwargs: Mapping[str, Any],
    candidates: Iterable[str],
    *,
    exclude: Iterable[str] = (),
    messages: object = None,
    input: object = None,
) -> RouteRequest:
    """The :class:`RouteRequest` for one LiteLLM pick.

    ``candidates`` are LiteLLM's healthy deployments for the model group, so LiteLLM's own cooldowns,
    tags and pre-call checks stay in force. ``stream=True`` for streaming calls (latency-aware
    strategies then rank by time to first token). Token estimates: ~4 characters per input token,
    ``max_tokens`` / ``max_completion_tokens`` for output. LiteLLM's per-request ``routing_strategy``
    picks the mapped strategy (see ``_names``). Per-request options may be given as
    ``metadata={"pi_builder_middleware": {"strategy": ..., "required_capabilities": [...],
    "max_latency_ms": ..., "min_availability": ..., "exclude": [...]}}``.
    """
    options = None
    for field in ("litellm_metadata", "metadata"):
        metadata = request_kwargs.get(field)
        if isinstance(metadata, Mapping) and metadata.get(ROUTE_OPTIONS_KEY) is not None:
            options = metadata[ROUTE_OPTIONS_KEY]
            break
    extra: dict[str, Any] = {}
    if options is not None:
        if not isinstance(options, Mapping) or set(options) - set(_OPTION_FIELDS):
            raise ConfigError(
                f"metadata[{ROUTE_OPTIONS_KEY!r}]",
                f"expected a dict with some of {list(_OPTION_FIELDS)}, got {options!r}",
            )
        extra = {k: v for k, v in options.items() if v is not None}
        for key in ("required_capabilities", "exclude"):
            if key in extra and not isinstance(extra[key], str):
                extra[key] = frozenset(extra[key])
    if "strategy" not in extra and request_kwargs.get("routing_strategy") is not None:
        per_request = request_kwargs["routing_strategy"]
        mapped = mapped_strategy(per_request)
        if mapped is not None:
            extra["strategy"] = mapped
        else:
            unmapped_once(
                str(getattr(per_request, "value", per_request)),
                "requests naming it are routed by the installation's strategy among the healthy deployments",
            )
    excluded = frozenset(exclude) | extra.pop("exclude", frozenset())
    max_out = request_kwargs.get("max_completion_tokens") or request_kwargs.get("max_tokens")
    return RouteRequest(
        candidates=frozenset(candidates),
        exclude=excluded,
        stream=request_kwargs.get("stream") is True,
        input_tokens=_input_tokens(
            messages if messages is not None else request_kwargs.get("messages"),
            input if input is not None else request_kwargs.get("input"),
        ),
        output_tokens=(
            min(max_out, MAX_TOKENS)
            if isinstance(max_out, int) and not isinstance(max_out, bool) and max_out > 0
            else _DEFAULT_OUTPUT_TOKENS
        ),  # e.g. 2**31 - 1 for "no limit"
        **extra,
    )
