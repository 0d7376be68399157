"""Telemetry: OpenTelemetry traces and metrics, Prometheus series.

Nothing here imports ``opentelemetry`` or ``prometheus_client`` until it is turned on:

- OpenTelemetry (extra ``[otel]``) turns itself on for a :class:`~pi_builder_middleware.Middleware` made
  after the application set a global TracerProvider or MeterProvider; ``Middleware(telemetry=False)`` or
  ``PI_BUILDER_OTEL_DISABLED=1`` keeps it off, ``Middleware(telemetry=True)`` forces it on.
- Prometheus (extra ``[prometheus]``): :func:`enable_prometheus` once per process; :func:`serve_metrics`
  serves ``/metrics`` when nothing else does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._hub import DISABLE_ENV_VAR, Telemetry, otel_configured

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .prometheus import PrometheusMetrics

__all__ = ["DISABLE_ENV_VAR", "Telemetry", "enable_prometheus", "otel_configured", "serve_metrics"]


def enable_prometheus(registry: CollectorRegistry | None = None) -> PrometheusMetrics:
    """Export the ``pi_builder_*`` Prometheus series of every middleware of this process (idempotent).

    See :func:`pi_builder_middleware.telemetry.prometheus.enable_prometheus`.
    """
    from .prometheus import enable_prometheus as enable

    return enable(registry)


def serve_metrics(port: int, addr: str = "127.0.0.1") -> Any:
    """Serve ``/metrics`` on ``addr:port`` (see :func:`pi_builder_middleware.telemetry.prometheus.serve_metrics`)."""
    from .prometheus import serve_metrics as serve

    return serve(port, addr)
