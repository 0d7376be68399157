"""Built-in health scorer: availability, discounted by breaker state and fresh failures."""

from __future__ import annotations

from pi_builder_middleware import Candidate, CircuitState, HealthScorer, HealthScorerRegistry, hookimpl

__all__ = ["AvailabilityScorer"]

_CIRCUIT_FACTOR = {CircuitState.CLOSED: 1.0, CircuitState.HALF_OPEN: 0.5, CircuitState.OPEN: 0.0}


class AvailabilityScorer(HealthScorer):
    """Window availability × breaker factor (closed 1, half-open 0.5, open 0) × 0.9 per failure in a row.

    The consecutive-failure discount reacts to a fresh outage before the window average moves.
    """

    name = "availability"

    def score(self, candidate: Candidate) -> float:
        factor = _CIRCUIT_FACTOR[candidate.circuit]
        return candidate.availability * factor * 0.9 ** min(candidate.consecutive_failures, 20)


@hookimpl(trylast=True)
def pbm_register_health_scorers(registry: HealthScorerRegistry) -> None:
    """Register the built-in scorer."""
    registry.add_default(AvailabilityScorer())
