"""Built-in failover policy: consecutive-failure and failure-rate trips, growing ejection with jitter."""

from __future__ import annotations

import math
import random

from pi_builder_middleware import (
    BreakerWindow,
    FailoverConfig,
    FailoverPolicy,
    FailoverPolicyRegistry,
    hookimpl,
)

__all__ = ["DefaultPolicy"]


class DefaultPolicy(FailoverPolicy):
    """Trip on ``consecutive_failures`` in a row, or on ``failure_rate_threshold`` over at least
    ``minimum_calls`` calls in the window. Ejection: ``base × multiplier^(trips-1)``, ±jitter, capped."""

    name = "default"

    def should_trip(self, window: BreakerWindow, config: FailoverConfig) -> str | None:
        if window.consecutive_failures >= config.consecutive_failures:
            return f"{window.consecutive_failures} consecutive failures"
        if window.calls >= config.minimum_calls:
            rate = window.failures / window.calls
            if rate >= config.failure_rate_threshold:
                return f"failure rate {rate:.0%} over {window.calls} calls"
        return None

    def ejection_s(self, trips: int, config: FailoverConfig, rng: random.Random) -> float:
        try:
            base = config.base_ejection_s * config.ejection_multiplier ** max(trips - 1, 0)
        except OverflowError:  # after ~1000 trips in a row multiplier**trips leaves float range: the cap applies
            base = math.inf
        jittered = base * (1.0 + rng.uniform(-config.jitter, config.jitter))
        return min(jittered, config.max_ejection_s)


@hookimpl(trylast=True)
def pbm_register_failover_policies(registry: FailoverPolicyRegistry) -> None:
    """Register the built-in policy."""
    registry.add_default(DefaultPolicy())
