"""Built-in observers: structured log lines for outcomes, decisions, health changes and alerts."""

from __future__ import annotations

import logging

from pi_builder_middleware import Alert, ErrorKind, HealthChange, Outcome, RoutingDecision, hookimpl

__all__ = ["log"]

log = logging.getLogger("pi_builder_middleware.events")


@hookimpl(trylast=True)
def pbm_on_outcome(outcome: Outcome, error_kind: ErrorKind | None) -> None:
    """DEBUG line per outcome (no error text: it may echo request content)."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "outcome provider=%s ok=%s latency_ms=%.1f kind=%s",
            outcome.provider_id,
            outcome.ok,
            outcome.latency_s * 1000,
            error_kind.value if error_kind else "-",
        )


@hookimpl(trylast=True)
def pbm_on_decision(decision: RoutingDecision) -> None:
    """DEBUG line per decision."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug("decision %s", decision.reason)


@hookimpl(trylast=True)
def pbm_on_health_change(event: HealthChange) -> None:
    """INFO line per health status change."""
    log.info("health %s: %s -> %s (%s)", event.provider_id, event.old.value, event.new.value, event.reason)


@hookimpl(trylast=True)
def pbm_on_alert(alert: Alert) -> None:
    """WARNING line per alert."""
    log.warning("alert %s: %s", alert.kind.value, alert.message)
