"""The telemetry hub of one :class:`~pi_builder_middleware.Middleware`: one object the hot path asks (or skips).

``Middleware.telemetry`` is None while nothing is turned on, so every front-end pays one ``is None`` test.
When OpenTelemetry or Prometheus is on, the hub observes the middleware through its own hooks
(outcomes, decisions, health changes: every front-end records through them, the LiteLLM adapter
included) and the failover manager's events (breaker transitions, cooldowns, failovers), counts
attempts in flight, and opens a :class:`~._trace.RequestTrace` per call of the attempt loop.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pi_builder_middleware.errors import ConfigError
from pi_builder_middleware.hookspecs import hookimpl
from pi_builder_middleware.models import FailoverEvent, HealthChange, Outcome, Provider, RouteRequest, RoutingDecision

from ._trace import RequestTrace

if TYPE_CHECKING:
    from pi_builder_middleware.enums import ErrorKind
    from pi_builder_middleware.middleware import Middleware

    from .otel import OtelTelemetry

__all__ = ["DISABLE_ENV_VAR", "Sink", "Telemetry", "add_process_sink", "attach", "otel_configured"]

log = logging.getLogger("pi_builder_middleware.telemetry")

#: Set to 1 (or true/yes) to keep OpenTelemetry off even when the application configured it.
DISABLE_ENV_VAR = "PI_BUILDER_OTEL_DISABLED"


class Sink(Protocol):
    """A metrics backend fed by the hub (OpenTelemetry metrics, Prometheus)."""

    def watch(self, middleware: Middleware) -> None:
        """A middleware starts reporting here: publish its providers' current state."""

    def outcome(self, provider: Provider | None, outcome: Outcome, kind: ErrorKind | None) -> None:
        """An attempt's outcome was recorded (``provider`` None if it was removed meanwhile)."""

    def decision(self, decision: RoutingDecision) -> None:
        """A routing decision was made."""

    def health(self, provider: Provider | None, event: HealthChange) -> None:
        """A provider's health status changed."""

    def failover_event(self, provider: Provider | None, event: FailoverEvent) -> None:
        """The failover manager logged an event (breaker transition, cooldown, failover, ...)."""

    def in_flight(self, provider: Provider, delta: int) -> None:
        """An attempt began (+1) or ended (-1)."""

    def request_ended(self, ok: bool, failovers: int) -> None:
        """A call of the attempt loop ended, answered or not, after ``failovers`` moves along its chain."""


class Telemetry:
    """What one middleware reports, and where: OpenTelemetry tracing (``otel``) and metric sinks."""

    def __init__(self, middleware: Middleware) -> None:
        self._mw = weakref.ref(middleware)
        self.otel: OtelTelemetry | None = None
        self.sinks: tuple[Sink, ...] = ()
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None
        self._numbers: dict[str, int] = {}  # attempts per request of a framework's loop (record_attempt)

    # -- wiring ------------------------------------------------------------------------------------
    def add_sink(self, sink: Sink) -> None:
        """Report to ``sink`` too (once per sink); the first sink starts observing the middleware."""
        mw = self._mw()
        if mw is None:
            return
        with self._lock:
            if any(s is sink for s in self.sinks):
                return
            if not self.sinks:
                mw.plugins.pm.register(self, name=f"pi_builder_middleware.telemetry.{id(self):x}")
                self._unsubscribe = mw.failover.subscribe(self._on_failover_event)
            self.sinks = (*self.sinks, sink)
        sink.watch(mw)

    def request(self, request: RouteRequest | None) -> RequestTrace:
        """Start tracking one call of the attempt loop."""
        return RequestTrace(self, request)

    def record_attempt(
        self,
        outcome: Outcome,
        record: Callable[[Outcome], ErrorKind | None],
        *,
        start_s: float | None = None,
        end_s: float | None = None,
        stream: bool | None = None,
        server: tuple[str, int | None] | None = None,
        trace_key: str | None = None,
        parent: Any = None,
    ) -> None:
        """An attempt run by a framework's own loop (LiteLLM's): ``record(outcome)`` inside its CLIENT span.

        The span nests under ``parent`` (the framework's request span, when it hands one over) or else the
        current span (the caller's), covers ``start_s`` to
        ``end_s`` (epoch seconds, when known) and carries the breaker events the record causes; attempts
        sharing ``trace_key`` (one request's) are numbered 1, 2, ... Without OpenTelemetry: just the record.
        """
        otel = self.otel
        provider = self._provider(outcome.provider_id) if otel is not None else None
        if otel is None or provider is None:
            record(outcome)
            return
        span = otel.start_attempt(
            provider,
            self._number(trace_key),
            stream=stream,
            server=server,
            start_time=None if start_s is None else int(start_s * 1e9),
            parent=parent,
        )
        token = otel.attach(span)
        kind = None
        try:
            kind = record(outcome)
        finally:
            otel.detach(token)
            otel.end_attempt(span, outcome, None, kind, end_time=None if end_s is None else int(end_s * 1e9))

    def _number(self, trace_key: str | None) -> int:
        if trace_key is None:
            return 1
        with self._lock:
            number = self._numbers.pop(trace_key, 0) + 1
            self._numbers[trace_key] = number
            while len(self._numbers) > 4096:
                self._numbers.pop(next(iter(self._numbers)))
        return number

    def _provider(self, provider_id: str) -> Provider | None:
        mw = self._mw()
        return None if mw is None else mw.router.providers.get(provider_id)

    # -- in flight (Middleware.begin_attempt / end_attempt) ----------------------------------------
    def begin(self, provider_id: str) -> None:
        """An attempt on ``provider_id`` began."""
        provider = self._provider(provider_id)
        if provider is not None:
            for sink in self.sinks:
                _guarded(sink.in_flight, provider, 1)

    def end(self, provider_id: str) -> None:
        """The attempt on ``provider_id`` ended."""
        provider = self._provider(provider_id)
        if provider is not None:
            for sink in self.sinks:
                _guarded(sink.in_flight, provider, -1)

    # -- hooks (registered on the middleware's plugin manager) -------------------------------------
    @hookimpl
    def pbm_on_outcome(self, outcome: Outcome, error_kind: ErrorKind | None) -> None:
        """Every recorded outcome (health-check probes left out: they are not traffic)."""
        if outcome.probe:
            return
        provider = self._provider(outcome.provider_id)
        for sink in self.sinks:
            _guarded(sink.outcome, provider, outcome, error_kind)

    @hookimpl
    def pbm_on_decision(self, decision: RoutingDecision) -> None:
        """Every routing decision."""
        for sink in self.sinks:
            _guarded(sink.decision, decision)

    @hookimpl
    def pbm_on_health_change(self, event: HealthChange) -> None:
        """Every health status change."""
        provider = self._provider(event.provider_id)
        for sink in self.sinks:
            _guarded(sink.health, provider, event)

    def _on_failover_event(self, event: FailoverEvent) -> None:
        provider = self._provider(event.provider_id)
        for sink in self.sinks:
            _guarded(sink.failover_event, provider, event)
        otel = self.otel
        if otel is not None:
            otel.span_event(event)

    def request_ended(self, ok: bool, failovers: int) -> None:
        """Called by :class:`RequestTrace` when its call ends."""
        for sink in self.sinks:
            _guarded(sink.request_ended, ok, failovers)


def _guarded(fn: Callable[..., Any], *args: Any) -> None:
    """Telemetry never breaks a request: a failing sink is logged (once per sink method) and skipped."""
    try:
        fn(*args)
    except Exception:
        key = getattr(fn, "__qualname__", repr(fn))
        if key not in _logged:
            _logged.add(key)
            log.exception("telemetry sink %s failed (ignored; later failures are not logged)", key)


_logged: set[str] = set()

# -- process-wide state ----------------------------------------------------------------------------
#: Every middleware with telemetry allowed (``telemetry`` not False): a sink enabled later reaches them too.
_middlewares: weakref.WeakSet[Middleware] = weakref.WeakSet()
_process_sinks: list[Sink] = []
_process_lock = threading.Lock()


def add_process_sink(sink: Sink) -> None:
    """Report every middleware of this process (now and later) to ``sink`` (Prometheus)."""
    with _process_lock:
        if any(s is sink for s in _process_sinks):
            return
        _process_sinks.append(sink)
        middlewares = list(_middlewares)
    for mw in middlewares:
        _hub(mw).add_sink(sink)


def _hub(mw: Middleware) -> Telemetry:
    hub = mw.telemetry
    if hub is None:
        hub = mw.telemetry = Telemetry(mw)
    return hub


def otel_configured() -> bool:
    """Whether the application set a global TracerProvider or MeterProvider (never imports OpenTelemetry).

    An application that configured OpenTelemetry has imported it; one that has not pays nothing here.
    """
    trace_api = sys.modules.get("opentelemetry.trace")
    if trace_api is not None:
        provider = trace_api.get_tracer_provider()
        if not isinstance(provider, trace_api.ProxyTracerProvider | trace_api.NoOpTracerProvider):
            return True
    metrics_api = sys.modules.get("opentelemetry.metrics")
    if metrics_api is not None:
        meter_provider = metrics_api.get_meter_provider()
        if (
            not isinstance(meter_provider, metrics_api.NoOpMeterProvider)
            and type(meter_provider).__name__ != "_ProxyMeterProvider"
        ):
            return True
    return False


def _env_disabled() -> bool:
    return os.environ.get(DISABLE_ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def attach(mw: Middleware, setting: object) -> None:
    """Set up ``mw.telemetry`` from ``Middleware(telemetry=...)``.

    None (default): OpenTelemetry on when the application configured a global TracerProvider or
    MeterProvider (and :data:`DISABLE_ENV_VAR` is not set), the process-wide sinks (Prometheus) on when
    enabled. True: OpenTelemetry on with the global providers, even ones set later. An
    :class:`~.otel.OtelTelemetry`: OpenTelemetry on with its providers. False: everything off.
    """
    mw.telemetry = None
    if setting is False:
        return
    otel: OtelTelemetry | None = None
    if setting is not None and setting is not True:
        otel_module = sys.modules.get("pi_builder_middleware.telemetry.otel")
        if otel_module is None or not isinstance(setting, otel_module.OtelTelemetry):
            raise ConfigError(
                "telemetry", f"expected True, False, None or an OtelTelemetry, got {type(setting).__name__}"
            )
        otel = setting
    elif setting is True or (not _env_disabled() and otel_configured()):
        try:
            from .otel import OtelTelemetry
        except ImportError:
            if setting is True:
                raise ConfigError(
                    "telemetry", "OpenTelemetry is not installed: pip install 'pi-builder-middleware[otel]'"
                ) from None
        else:
            otel = OtelTelemetry.shared()
    if otel is not None:
        hub = _hub(mw)
        hub.otel = otel
        hub.add_sink(otel)
    with _process_lock:
        _middlewares.add(mw)
        sinks = list(_process_sinks)
    for sink in sinks:
        _hub(mw).add_sink(sink)
