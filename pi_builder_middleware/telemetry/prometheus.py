"""Prometheus series ``pi_builder_*`` (extra ``[prometheus]``: ``prometheus-client``).

:func:`enable_prometheus` registers them once per process on the default registry (so a LiteLLM
proxy's ``/metrics`` serves them beside LiteLLM's own) and feeds them from every middleware of the
process, now and later. Provider series carry LiteLLM's deployment labels ``model_id`` (the provider
id: a LiteLLM deployment's ``model_info.id``), ``model_group`` (its ``model_name``) and ``api_provider``
(the vendor prefix of its model), so they join ``litellm_deployment_*`` series. Multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, gunicorn/uvicorn workers) works: gauges use prometheus_client's
multiprocess modes (breaker and health: the worst live worker; in flight: the live workers' sum).
``prometheus_client`` is imported by :func:`enable_prometheus`, never by ``import pi_builder_middleware``.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from pi_builder_middleware.enums import EventKind
from pi_builder_middleware.errors import ConfigError, UnknownProviderError
from pi_builder_middleware.models import FailoverEvent, HealthChange, Outcome, Provider, RoutingDecision

from . import _names as n
from ._hub import add_process_sink

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from pi_builder_middleware.enums import ErrorKind
    from pi_builder_middleware.middleware import Middleware

__all__ = ["LABELS", "SERIES", "PrometheusMetrics", "enable_prometheus", "metrics_registry", "serve_metrics"]

#: Labels of every per-provider series: the names LiteLLM's deployment metrics use.
LABELS = ("model_id", "model_group", "api_provider")

#: Every series name this module exports (metric family names; counters add ``_total`` to their samples).
SERIES = (
    "pi_builder_provider_health",
    "pi_builder_breaker_state",
    "pi_builder_in_flight",
    "pi_builder_attempts",
    "pi_builder_attempt_latency_seconds",
    "pi_builder_ttft_seconds",
    "pi_builder_tokens",
    "pi_builder_failovers",
    "pi_builder_ejections",
    "pi_builder_cooldowns",
    "pi_builder_decisions",
    "pi_builder_requests",
)

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 120.0)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)

_lock = threading.Lock()
_enabled: PrometheusMetrics | None = None


class PrometheusMetrics:
    """The ``pi_builder_*`` series of one registry, fed as a telemetry sink."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.registry = registry
        labels = LABELS
        self.health_gauge = Gauge(
            "pi_builder_provider_health",
            "Provider health: 0 healthy or unknown, 1 degraded, 2 unhealthy, 3 offline",
            labels,
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.breaker = Gauge(
            "pi_builder_breaker_state",
            "Breaker state: 0 closed, 1 half-open, 2 open (ejected)",
            labels,
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.in_flight_gauge = Gauge(
            "pi_builder_in_flight", "Attempts running now", labels, registry=registry, multiprocess_mode="livesum"
        )
        self.attempts = Counter(
            "pi_builder_attempts",
            "Attempts by outcome (success, failure) and error kind",
            (*labels, "outcome", "error_kind"),
            registry=registry,
        )
        self.latency = Histogram(
            "pi_builder_attempt_latency_seconds",
            "Attempt latency by outcome",
            (*labels, "outcome"),
            registry=registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.ttft = Histogram(
            "pi_builder_ttft_seconds",
            "Time to first chunk of streamed attempts",
            labels,
            registry=registry,
            buckets=_TTFT_BUCKETS,
        )
        self.tokens = Counter(
            "pi_builder_tokens", "Tokens of answered attempts", (*labels, "token_type"), registry=registry
        )
        self.failovers = Counter(
            "pi_builder_failovers",
            "Requests moved from this provider to the next one in their chain",
            (*labels, "to_model_id", "error_kind"),
            registry=registry,
        )
        self.ejections = Counter("pi_builder_ejections", "Breaker trips (provider ejected)", labels, registry=registry)
        self.cooldowns = Counter("pi_builder_cooldowns", "Rate-limit cooldowns started", labels, registry=registry)
        self.decisions = Counter(
            "pi_builder_decisions",
            "Routing decisions by strategy and reason",
            ("strategy", "reason"),
            registry=registry,
        )
        self.requests = Counter(
            "pi_builder_requests",
            "Calls of the attempt loop by outcome (answered, failed) and whether they failed over",
            ("outcome", "failed_over"),
            registry=registry,
        )
        self._labels: dict[str, tuple[Provider, tuple[str, str, str]]] = {}

    def labels(self, provider: Provider) -> tuple[str, str, str]:
        """``(model_id, model_group, api_provider)`` of a provider (cached per provider object)."""
        cached = self._labels.get(provider.id)
        if cached is not None and cached[0] is provider:
            return cached[1]
        values = (provider.id, provider.group or "", n.api_provider(provider))
        self._labels[provider.id] = (provider, values)
        return values

    # -- the hub's Sink --------------------------------------------------------------------------------
    def watch(self, middleware: Middleware) -> None:
        """Publish the current breaker state and health of the middleware's providers."""
        for pid, provider in list(middleware.router.providers.items()):
            labels = self.labels(provider)
            try:
                self.breaker.labels(*labels).set(n.CIRCUIT_VALUE[middleware.failover.state(pid)])
            except UnknownProviderError:  # removed meanwhile
                continue
            self.health_gauge.labels(*labels).set(0)
            self.in_flight_gauge.labels(*labels).inc(0)

    def outcome(self, provider: Provider | None, outcome: Outcome, kind: ErrorKind | None) -> None:
        """Count one attempt: outcome, error kind, latency, time to first chunk, tokens."""
        if provider is None:
            return
        labels = self.labels(provider)
        result = "success" if outcome.ok else "failure"
        self.attempts.labels(*labels, result, "" if kind is None else kind.value).inc()
        self.latency.labels(*labels, result).observe(outcome.latency_s)
        if outcome.ttft_s is not None:
            self.ttft.labels(*labels).observe(outcome.ttft_s)
        if outcome.input_tokens:
            self.tokens.labels(*labels, "input").inc(outcome.input_tokens)
        if outcome.output_tokens:
            self.tokens.labels(*labels, "output").inc(outcome.output_tokens)

    def decision(self, decision: RoutingDecision) -> None:
        """Count a decision by strategy and reason."""
        self.decisions.labels(decision.strategy, n.decision_reason(decision)).inc()

    def health(self, provider: Provider | None, event: HealthChange) -> None:
        """A provider's health status changed."""
        if provider is not None:
            self.health_gauge.labels(*self.labels(provider)).set(n.HEALTH_VALUE[event.new])

    def failover_event(self, provider: Provider | None, event: FailoverEvent) -> None:
        """Breaker state; ejections, cooldowns and failovers counted."""
        if provider is None:
            return
        labels = self.labels(provider)
        self.breaker.labels(*labels).set(n.CIRCUIT_VALUE[event.circuit])
        kind = event.kind
        if kind is EventKind.BLACKLIST:
            self.ejections.labels(*labels).inc()
        elif kind is EventKind.RATE_LIMITED:
            self.cooldowns.labels(*labels).inc()
        elif kind is EventKind.SWITCH:
            to_id, _, why = event.detail.removeprefix("-> ").partition(": ")
            self.failovers.labels(*labels, to_id, why).inc()

    def in_flight(self, provider: Provider, delta: int) -> None:
        """An attempt began or ended."""
        self.in_flight_gauge.labels(*self.labels(provider)).inc(delta)

    def request_ended(self, ok: bool, failovers: int) -> None:
        """Count a call by outcome and whether it failed over."""
        self.requests.labels("answered" if ok else "failed", "true" if failovers else "false").inc()


def enable_prometheus(registry: CollectorRegistry | None = None) -> PrometheusMetrics:
    """Export the ``pi_builder_*`` series of every middleware of this process (idempotent).

    Registers them on ``registry`` (default: ``prometheus_client.REGISTRY``, the one the LiteLLM proxy's
    ``/metrics`` serves); a second call returns the same :class:`PrometheusMetrics`. A middleware made
    with ``telemetry=False`` is left out. Raises :class:`ConfigError` when ``prometheus-client`` is not
    installed, or when a second call names a different registry.
    """
    global _enabled
    with _lock:
        if _enabled is None:
            try:
                import prometheus_client
            except ImportError:
                raise ConfigError(
                    "prometheus", "prometheus-client is not installed: pip install 'pi-builder-middleware[prometheus]'"
                ) from None
            target = prometheus_client.REGISTRY if registry is None else registry
            try:
                _enabled = PrometheusMetrics(target)
            except ValueError as exc:  # series of these names registered by someone else
                raise ConfigError("prometheus", f"cannot register the pi_builder_* series: {exc}") from None
        elif registry is not None and registry is not _enabled.registry:
            raise ConfigError(
                "registry",
                "the pi_builder_* series are registered on another registry already "
                "(enable_prometheus() exports to one registry per process)",
            )
        metrics = _enabled
    add_process_sink(metrics)
    return metrics


def metrics_registry() -> CollectorRegistry:
    """The registry to serve: the multiprocess collector's under ``PROMETHEUS_MULTIPROC_DIR``, else the default."""
    import prometheus_client
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return prometheus_client.REGISTRY


def serve_metrics(port: int, addr: str = "127.0.0.1") -> Any:
    """Serve ``/metrics`` over HTTP on ``addr:port`` from a daemon thread (after :func:`enable_prometheus`).

    Returns the HTTP server (``server.shutdown()`` stops it; ``server.server_port`` is the bound port).
    """
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigError("port", f"expected a port number 0-65535, got {port!r}")
    enable_prometheus()
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=addr, registry=metrics_registry())
    return server
