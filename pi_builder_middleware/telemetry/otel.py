"""OpenTelemetry traces and metrics (extra ``[otel]``: only ``opentelemetry-api`` at runtime).

Imported only when OpenTelemetry is turned on (see :func:`~pi_builder_middleware.telemetry.attach`).
Spans: ``pi_builder.request`` (INTERNAL) per call of the attempt loop, with one CLIENT span
``"chat {model}"`` per attempt (GenAI semantic conventions); breaker transitions, cooldowns, failovers
and waits are span events. Metrics: ``gen_ai.client.operation.duration``, ``gen_ai.client.token.usage``,
``gen_ai.client.operation.time_to_first_chunk`` and the ``pi_builder.*`` instruments (README: reference).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from pi_builder_middleware.enums import EventKind
from pi_builder_middleware.models import FailoverEvent, HealthChange, Outcome, Provider, RouteRequest, RoutingDecision

from . import _names as n

if TYPE_CHECKING:
    from pi_builder_middleware.enums import ErrorKind
    from pi_builder_middleware.middleware import Middleware

__all__ = ["INSTRUMENTATION_NAME", "OtelTelemetry"]

#: The instrumentation scope of every span and instrument.
INSTRUMENTATION_NAME = "pi_builder_middleware"

# Bucket boundaries advised by the GenAI semantic conventions.
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
_TTFC_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


class OtelTelemetry:
    """Spans and instruments of one pair of (tracer, meter) providers; the global ones by default.

    ``Middleware(telemetry=OtelTelemetry(tracer_provider=..., meter_provider=...))`` reports to providers
    the application did not make global; the default (global providers) is shared by every middleware.
    """

    _shared: OtelTelemetry | None = None
    _shared_lock = threading.Lock()

    def __init__(
        self, *, tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
    ) -> None:
        from pi_builder_middleware import __version__

        self.tracer = trace.get_tracer(INSTRUMENTATION_NAME, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(INSTRUMENTATION_NAME, __version__, meter_provider=meter_provider)
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            "s",
            "Duration of each attempt (GenAI client operation)",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            "{token}",
            "Tokens used by each answered attempt",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.ttfc = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            "s",
            "Time to the first chunk of each streamed attempt",
            explicit_bucket_boundaries_advisory=_TTFC_BUCKETS,
        )
        self.ejections = meter.create_counter("pi_builder.ejections", "{ejection}", "Breaker trips (provider ejected)")
        self.failovers = meter.create_counter(
            "pi_builder.failovers", "{failover}", "Requests moved from a provider to the next in their chain"
        )
        self.cooldowns = meter.create_counter("pi_builder.cooldowns", "{cooldown}", "Rate-limit cooldowns started")
        meter.create_observable_up_down_counter(
            "pi_builder.attempts.in_flight", [self._observe_in_flight], "{attempt}", "Attempts running now"
        )
        self.decisions = meter.create_counter(
            "pi_builder.decisions", "{decision}", "Routing decisions by strategy and reason"
        )
        self.requests = meter.create_counter(
            "pi_builder.requests", "{request}", "Calls of the attempt loop by outcome and whether they failed over"
        )
        meter.create_observable_gauge(
            "pi_builder.breaker.state",
            [self._observe_breakers],
            "{state}",
            "Breaker state per provider: 0 closed, 1 half-open, 2 open",
        )
        self._watched: weakref.WeakSet[Middleware] = weakref.WeakSet()
        self._attrs: dict[str, tuple[Provider, dict[str, Any]]] = {}

    @classmethod
    def shared(cls) -> OtelTelemetry:
        """The instance reporting to the global providers (made on first use)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    # -- attributes ----------------------------------------------------------------------------------
    def attributes(self, provider: Provider) -> dict[str, Any]:
        """GenAI attributes of a provider (cached per provider object)."""
        cached = self._attrs.get(provider.id)
        if cached is not None and cached[0] is provider:
            return cached[1]
        attrs: dict[str, Any] = {
            n.OPERATION: n.OPERATION_CHAT,
            n.REQUEST_MODEL: n.request_model(provider),
            n.PROVIDER_ID: provider.id,
        }
        vendor = n.api_provider(provider)
        if vendor:
            attrs[n.PROVIDER_NAME] = vendor
        self._attrs[provider.id] = (provider, attrs)
        return attrs

    # -- spans ------------------------------------------------------------------------------------------
    def attach(self, span: Span) -> object:
        """Make ``span`` current; returns the token for :meth:`detach`."""
        return otel_context.attach(trace.set_span_in_context(span))

    def detach(self, token: Any) -> None:
        """Undo :meth:`attach`."""
        otel_context.detach(token)

    def start_request(self, request: RouteRequest | None) -> Span:
        """The request span, a child of the current span (the framework's, when there is one)."""
        attrs: dict[str, Any] = {"pi_builder.request.stream": bool(request is not None and request.stream)}
        return self.tracer.start_span(n.REQUEST_SPAN, kind=SpanKind.INTERNAL, attributes=attrs)

    def decided(self, span: Span, decision: RoutingDecision) -> None:
        """The routing decision's reason on the request span (the last pass's, when there were several)."""
        span.set_attributes(
            {
                n.DECISION_STRATEGY: decision.strategy,
                n.DECISION_REASON: decision.reason,
                n.DECISION_PROVIDER: decision.provider.id,
                n.DECISION_CHAIN: [p.id for p in decision.chain],
                n.DECISION_TRIAL: decision.trial,
                n.DECISION_PANIC: decision.panic,
            }
        )

    def waiting(self, span: Span, seconds: float) -> None:
        """A wait for a provider to be re-admitted before the next pass."""
        span.add_event("pi_builder.wait", {"pi_builder.wait.seconds": seconds})

    def end_request(
        self, span: Span, attempts: int, failovers: int, provider_id: str | None, error: BaseException | None
    ) -> None:
        """End the request span: how many attempts and failovers, who answered, or the error."""
        span.set_attribute("pi_builder.attempts", attempts)
        span.set_attribute("pi_builder.failovers", failovers)
        if provider_id is not None:
            span.set_attribute(n.PROVIDER_ID, provider_id)
        if error is not None:
            kind = n.error_type(error)
            span.set_attribute(n.ERROR_TYPE, kind)
            span.set_status(Status(StatusCode.ERROR, kind))
        span.end()

    def start_attempt(
        self,
        provider: Provider,
        number: int,
        *,
        start_time: int | None = None,
        stream: bool | None = None,
        server: tuple[str, int | None] | None = None,
        parent: Any = None,
    ) -> Span:
        """The CLIENT span of one attempt, a child of ``parent`` (a span whose context is valid) or else of the
        current span (the request span in the attempt loop)."""
        attrs = dict(self.attributes(provider))
        attrs[n.ATTEMPT] = number
        if stream is not None:
            attrs[n.REQUEST_STREAM] = stream
        if server is not None:
            attrs[n.SERVER_ADDRESS] = server[0]
            if server[1] is not None:
                attrs[n.SERVER_PORT] = server[1]
        context = None
        if parent is not None:
            try:
                if parent.get_span_context().is_valid:
                    context = trace.set_span_in_context(parent)
            except Exception:  # not a span after all: nest under the current one
                context = None
        return self.tracer.start_span(
            f"{n.OPERATION_CHAT} {attrs[n.REQUEST_MODEL]}",
            context=context,
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=start_time,
        )

    def end_attempt(
        self,
        span: Span,
        outcome: Outcome | None,
        error: BaseException | None,
        kind: ErrorKind | None,
        *,
        end_time: int | None = None,
    ) -> None:
        """End an attempt's span: its tokens, or its error (type and kind, never the message)."""
        if outcome is not None and outcome.ok:
            if outcome.input_tokens or outcome.output_tokens:
                span.set_attribute(n.USAGE_INPUT, outcome.input_tokens)
                span.set_attribute(n.USAGE_OUTPUT, outcome.output_tokens)
            if outcome.ttft_s is not None:
                span.set_attribute("pi_builder.ttft_s", outcome.ttft_s)
        if error is not None or (outcome is not None and not outcome.ok):
            err = error if error is not None else (outcome.error if outcome is not None else None)
            etype = n.error_type(err)
            span.set_attribute(n.ERROR_TYPE, etype)
            if kind is None and outcome is not None:
                kind = outcome.error_kind
            if kind is not None:
                span.set_attribute(n.ERROR_KIND, kind.value)
            span.set_status(Status(StatusCode.ERROR, etype))
        span.end(end_time=end_time)

    def span_event(self, event: FailoverEvent) -> None:
        """A breaker transition, cooldown or failover as an event of the current span (when it records)."""
        name = n.BREAKER_EVENTS.get(event.kind.value)
        if name is None:
            return
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                name,
                {
                    n.PROVIDER_ID: event.provider_id,
                    "pi_builder.breaker.state": event.circuit.value,
                    n.EVENT_DETAIL: event.detail,
                },
            )

    # -- metrics (the hub's Sink) -------------------------------------------------------------------------
    def watch(self, middleware: Middleware) -> None:
        """Observe ``middleware``'s breakers in ``pi_builder.breaker.state``."""
        self._watched.add(middleware)

    def outcome(self, provider: Provider | None, outcome: Outcome, kind: ErrorKind | None) -> None:
        """Duration, tokens and time to first chunk of one attempt."""
        if provider is None:
            return
        attrs = self.attributes(provider)
        if outcome.ok:
            self.duration.record(outcome.latency_s, attrs)
            if outcome.input_tokens:
                self.tokens.record(outcome.input_tokens, {**attrs, "gen_ai.token.type": "input"})
            if outcome.output_tokens:
                self.tokens.record(outcome.output_tokens, {**attrs, "gen_ai.token.type": "output"})
        else:
            failed = {**attrs, n.ERROR_TYPE: n.error_type(outcome.error)}
            if kind is not None:
                failed[n.ERROR_KIND] = kind.value
            self.duration.record(outcome.latency_s, failed)
        if outcome.ttft_s is not None:
            self.ttfc.record(outcome.ttft_s, attrs)

    def decision(self, decision: RoutingDecision) -> None:
        """Count a decision by strategy and reason."""
        self.decisions.add(
            1, {n.DECISION_STRATEGY: decision.strategy, "pi_builder.decision.kind": n.decision_reason(decision)}
        )

    def health(self, provider: Provider | None, event: HealthChange) -> None:
        """Health changes are not an OpenTelemetry instrument (the breaker state is)."""

    def failover_event(self, provider: Provider | None, event: FailoverEvent) -> None:
        """Count ejections, failovers and cooldowns."""
        if provider is None:
            return
        kind = event.kind
        if kind is EventKind.BLACKLIST:
            self.ejections.add(1, self.attributes(provider))
        elif kind is EventKind.SWITCH:
            self.failovers.add(1, self.attributes(provider))
        elif kind is EventKind.RATE_LIMITED:
            self.cooldowns.add(1, self.attributes(provider))

    def in_flight(self, provider: Provider, delta: int) -> None:
        """Nothing per attempt: ``pi_builder.attempts.in_flight`` reads the router's counts when collected."""

    def request_ended(self, ok: bool, failovers: int) -> None:
        """Count a call by outcome and whether it failed over."""
        self.requests.add(
            1, {"pi_builder.outcome": "answered" if ok else "failed", "pi_builder.failed_over": failovers > 0}
        )

    def _observe_in_flight(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for mw in list(self._watched):
            router = mw.router
            for pid, provider in list(router.providers.items()):
                out.append(Observation(router.in_flight(pid), self.attributes(provider)))
        return out

    def _observe_breakers(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for mw in list(self._watched):
            failover = mw.failover
            for pid, provider in list(mw.router.providers.items()):
                try:
                    state = failover.state(pid)
                except Exception:  # removed meanwhile
                    continue
                out.append(Observation(n.CIRCUIT_VALUE[state], self.attributes(provider)))
        return out
