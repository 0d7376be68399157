"""The LiteLLM ``CustomLogger`` that feeds every attempt's outcome to the middleware.

LiteLLM calls these hooks by keyword, so the parameter names are exactly LiteLLM's
(``kwargs, response_obj, start_time, end_time``); a different name is only logged by LiteLLM and the
event is lost. Each attempt (first try, every retry, every fallback) is one LiteLLM call with its own
``litellm_call_id``; an attempt is recorded once even if it reaches more than one hook.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from litellm.integrations.custom_logger import CustomLogger

from pi_builder_middleware import MAX_COST, MAX_LATENCY_S, MAX_TOKENS, Outcome, extract_retry_after, status_code_of

from ._binding import Binding, request_token, stamped_trace

__all__ = ["LiteLLMFailure", "MiddlewareCallback"]

log = logging.getLogger("pi_builder_middleware.adapters.litellm")

_SEEN_MAX = 8192


class LiteLLMFailure(Exception):
    """Stands in for a failure LiteLLM logged without an exception object (rare)."""


def _seconds(start: object, end: object) -> float | None:
    if isinstance(start, _dt.datetime) and isinstance(end, _dt.datetime):
        value = (end - start).total_seconds()
    elif isinstance(start, int | float) and isinstance(end, int | float):
        value = float(end) - float(start)
    else:
        return None
    if not value >= 0:  # negative, or NaN
        return 0.0
    return min(value, MAX_LATENCY_S)  # what LiteLLM reports must never cost the outcome (Outcome's bound)


def _count(value: object) -> int:
    return min(value, MAX_TOKENS) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _tokens(slo: Mapping[str, Any], response_obj: Any) -> tuple[int, int]:
    prompt, completion = _count(slo.get("prompt_tokens")), _count(slo.get("completion_tokens"))
    if prompt or completion:
        return prompt, completion
    usage = getattr(response_obj, "usage", None)
    return _count(getattr(usage, "prompt_tokens", None)), _count(getattr(usage, "completion_tokens", None))


def _epoch(value: object) -> float | None:
    if isinstance(value, _dt.datetime):
        return value.timestamp()
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _span_fields(kwargs: Mapping[str, Any], start_time: Any, end_time: Any) -> dict[str, Any]:
    """Telemetry of one LiteLLM attempt: its times, stream flag, server and the request it belongs to."""
    params = kwargs.get("litellm_params")
    api_base = params.get("api_base") if isinstance(params, Mapping) else None
    server = None
    if isinstance(api_base, str) and api_base:
        parsed = urlsplit(api_base)
        if parsed.hostname:
            try:
                server = (parsed.hostname, parsed.port)
            except ValueError:  # a malformed port
                server = (parsed.hostname, None)
    trace = kwargs.get("litellm_trace_id")
    return {
        "start_s": _epoch(kwargs.get("start_time", start_time) or start_time),
        "end_s": _epoch(kwargs.get("end_time", end_time) or end_time),
        "stream": kwargs.get("stream") is True,
        "server": server,
        "trace_key": trace if isinstance(trace, str) else None,
        "parent": _parent_span(kwargs, params),
    }


def _parent_span(kwargs: Mapping[str, Any], params: object) -> Any:
    """LiteLLM's own request span (``litellm_parent_otel_span``, set by the proxy's OpenTelemetry integration)."""
    for holder in (kwargs.get("metadata"), params.get("metadata") if isinstance(params, Mapping) else None, kwargs):
        if isinstance(holder, Mapping):
            span = holder.get("litellm_parent_otel_span")
            if span is not None and hasattr(span, "get_span_context"):
                return span
    return None


class MiddlewareCallback(CustomLogger):
    """Outcomes of one router's calls → :meth:`Middleware.record`; open breakers → filtered candidates.

    Callbacks are process-wide in LiteLLM, so every router's events reach every installed callback.
    An event belongs to this installation when it carries this installation's router token (stamped
    into the request metadata by its routing strategy); events stamped by another installation are
    ignored; unstamped events (no routing strategy was involved) count only for a monitoring-only
    installation (``install(..., route=False)``) and only for deployment ids of its router.
    """

    def __init__(self, binding: Binding) -> None:
        super().__init__()
        # Public and unique: LiteLLM de-duplicates callbacks by class name plus public str/int/bool
        # attributes, so two installations must differ here or the second one would be dropped.
        self.pbm_router_token = binding.token
        self._binding = binding
        self._seen: set[tuple[str, str]] = set()
        self._order: deque[tuple[str, str]] = deque()
        self._lock = threading.Lock()

    # -- LiteLLM hooks (names and parameters exactly as LiteLLM calls them) --------------------------
    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        """An attempt of an async call succeeded (for streams: after the last chunk)."""
        self._on_event(kwargs, response_obj, start_time, end_time, ok=True)

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        """An attempt of an async call failed; LiteLLM awaits this before it retries or falls back."""
        self._on_event(kwargs, response_obj, start_time, end_time, ok=False)

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        """An attempt of a sync call succeeded (LiteLLM calls this on a logging thread)."""
        self._on_event(kwargs, response_obj, start_time, end_time, ok=True)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        """An attempt of a sync call failed."""
        self._on_event(kwargs, response_obj, start_time, end_time, ok=False)

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        """An attempt is about to call its deployment (once per attempt: first try, retries, fallbacks; sync,
        async and streaming alike, in the caller's thread or task): it counts as in flight from here."""
        try:
            owned = self._owned_deployment(kwargs)
            if owned is None:
                return
            pid = owned[0]
            if pid not in self._binding.known:
                self._binding.ensure_current((pid,))
            self._binding.attempt_started(kwargs.get("litellm_call_id"), pid)
        except Exception:  # never let accounting break the caller's request
            self._binding.counts["hook_errors"] += 1
            log.exception("pi-builder-middleware: log_pre_api_call failed; attempt not counted in flight")

    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list[Any],
        messages: Any,
        request_kwargs: dict[str, Any] | None = None,
        parent_otel_span: Any = None,
    ) -> list[Any]:
        """Remove this router's deployments whose breaker is open (never all of them)."""
        try:
            if not self._binding.owns_request(request_kwargs):
                return healthy_deployments
            return self._binding.filter(healthy_deployments)
        except Exception:  # a bug here must never fail the caller's request
            self._binding.counts["hook_errors"] += 1
            log.exception("pi-builder-middleware: async_filter_deployments failed; not filtering")
            return healthy_deployments

    # -- recording ---------------------------------------------------------------------------------
    def _on_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any, *, ok: bool) -> None:
        if not ok:
            self._binding.failure_events += 1  # LiteLLM may have set a cooldown: re-read it on the next pick
        try:
            self._record(kwargs, response_obj, start_time, end_time, ok=ok)
        except Exception:  # never let monitoring break LiteLLM's logging
            self._binding.counts["hook_errors"] += 1
            log.exception("pi-builder-middleware: could not record a LiteLLM %s event", "success" if ok else "failure")

    def _owned_deployment(self, kwargs: Any) -> tuple[str, Mapping[str, Any]] | None:
        """The deployment id of an event of this installation's router (and its standard logging object)."""
        binding = self._binding
        if not isinstance(kwargs, Mapping):
            return None
        params = kwargs.get("litellm_params")
        params = params if isinstance(params, Mapping) else {}
        slo = kwargs.get("standard_logging_object")
        slo = slo if isinstance(slo, Mapping) else {}
        info = params.get("model_info")
        pid = info.get("id") if isinstance(info, Mapping) else None
        pid = pid if pid is not None else slo.get("model_id")
        if pid is None:
            return None  # not a deployment call (e.g. the router refused before picking one)
        pid = str(pid)
        token = request_token(params)
        trace = stamped_trace(params)
        if (
            token is not None
            and trace is not None
            and binding.check_trace
            and kwargs.get("litellm_trace_id") not in (None, trace)
        ):
            token = None  # a stale stamp: the caller reused a metadata dict LiteLLM had written ours into
        if token is not None:
            if token != binding.token:
                return None  # another installation's router
        elif binding.route or pid not in binding.known:
            return None
        return pid, slo

    def _record(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any, *, ok: bool) -> None:
        owned = self._owned_deployment(kwargs)
        if owned is None:
            return
        pid, slo = owned
        call_id = kwargs.get("litellm_call_id")
        try:
            self._record_attempt(pid, slo, kwargs, response_obj, start_time, end_time, ok=ok)
        finally:  # after the outcome: Middleware.record reads the in-flight count including this attempt
            self._binding.attempt_ended(call_id, pid)

    def _record_attempt(
        self,
        pid: str,
        slo: Mapping[str, Any],
        kwargs: Mapping[str, Any],
        response_obj: Any,
        start_time: Any,
        end_time: Any,
        *,
        ok: bool,
    ) -> None:
        binding = self._binding
        if not self._first_time(kwargs.get("litellm_call_id"), pid):
            binding.counts["duplicate_events"] += 1
            return
        if kwargs.get("cache_hit") is True:
            binding.counts["cache_hits_ignored"] += 1  # served from cache: says nothing about the deployment
            return
        if pid not in binding.known:
            binding.ensure_current((pid,))
            if pid not in binding.known:
                binding.counts["unknown_deployment"] += 1
                return
        outcome = self._outcome(pid, kwargs, slo, response_obj, start_time, end_time, ok)
        tel = binding.middleware.telemetry
        if tel is None:
            binding.middleware.record(outcome)
        else:  # telemetry: the attempt's CLIENT span, current while its outcome is recorded
            tel.record_attempt(outcome, binding.middleware.record, **_span_fields(kwargs, start_time, end_time))
        binding.trial_recorded(kwargs.get("litellm_call_id"), pid)
        binding.counts["recorded_ok" if ok else "recorded_failure"] += 1

    def _outcome(
        self,
        pid: str,
        kwargs: Mapping[str, Any],
        slo: Mapping[str, Any],
        response_obj: Any,
        start_time: Any,
        end_time: Any,
        ok: bool,
    ) -> Outcome:
        start = kwargs.get("start_time", start_time) or start_time
        end = kwargs.get("end_time", end_time) or end_time
        latency = _seconds(start, end) or 0.0
        ttft = None
        if ok and kwargs.get("stream") is True:
            ttft = _seconds(start, kwargs.get("completion_start_time"))
        tokens_in, tokens_out = _tokens(slo, response_obj) if ok else (0, 0)
        cost = kwargs.get("response_cost")
        cost = (
            min(float(cost), MAX_COST)
            if isinstance(cost, int | float) and not isinstance(cost, bool) and 0 < cost < float("inf")
            else None
        )
        if ok:
            return Outcome(pid, True, latency, ttft_s=ttft, input_tokens=tokens_in, output_tokens=tokens_out, cost=cost)
        error = kwargs.get("exception")
        if not isinstance(error, BaseException):
            info = slo.get("error_information")
            name = info.get("error_class") if isinstance(info, Mapping) else None
            error = LiteLLMFailure(f"{name or 'unknown error'}: {slo.get('error_str') or ''}".strip())
        limit = self._binding.middleware.failover.config.max_rate_limit_cooldown_s
        return Outcome(
            pid,
            False,
            latency,
            error=error,
            status_code=status_code_of(error),
            retry_after_s=extract_retry_after(error, limit_s=limit),
        )

    def _first_time(self, call_id: object, pid: str) -> bool:
        if not isinstance(call_id, str) or not call_id:
            return True
        key = (call_id, pid)
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            self._order.append(key)
            if len(self._order) > _SEEN_MAX:
                self._seen.discard(self._order.popleft())
        return True
