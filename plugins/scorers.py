"""Built-in health scorer: availability, discounted by breaker state and fresh failures."""

from __future__ import annotations

from pi_builder_middleware import Candidate, CircuitState, HealthScorer, HealthScorerRegistry, hookimpl

__all__ = ["AvailabilityScorer"]

_CIRCUIT_FACTOR = {CircuitState.CLOSED: 1.0, CircuitState.HALF_OPEN: 0.5, CircuitState.OPEN: 0.0}


class AvailabilityScorer(HealthScorer):
    """Availability estimate × breaker factor (closed 1, half-open 0.5, open 0) ÷ (1 + recent failures).

    The recent-failure discount reacts to a fresh outage at once and fades with
    ``RoutingConfig.failure_half_life_s``, so one error does not exile a provider for good.
    """

    name = "availability"

    def score(self, candidate: Candidate) -> float:
        factor = _CIRCUIT_FACTOR[candidate.circuit]
        return candidate.availability * factor / (1.0 + candidate.recent_failures)


@hookimpl(trylast=True)
def pbm_register_health_scorers(registry: HealthScorerRegistry) -> None:
    """Register the built-in scorer."""
    registry.add_default(AvailabilityScorer())
