"""Built-in failover policies.

- ``default``: consecutive-failure and failure-rate trips, growing ejection with jitter.
- ``outlier``: consecutive-failure trips plus peer-relative ejection after Envoy's outlier detection
  (success rate against the group, failure percentage), at most 50 % of a group out by default.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import ClassVar

from pi_builder_middleware import (
    BreakerWindow,
    FailoverConfig,
    FailoverPolicy,
    FailoverPolicyRegistry,
    PeerEjection,
    hookimpl,
)

__all__ = ["DefaultPolicy", "OutlierPolicy"]


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


class OutlierPolicy(DefaultPolicy):
    """Peer-relative ejection (``FailoverConfig.outlier``), plus the default's consecutive-failure trip.

    A provider that fails ``consecutive_failures`` times in a row is down whatever its peers do; the
    absolute failure-rate trip is replaced by the group comparison, so a group that is equally bad
    everywhere keeps serving. Ejection times grow on repeat trips as with ``default``.
    """

    name = "outlier"
    default_max_ejection_percent: ClassVar[float | None] = 50.0

    def should_trip(self, window: BreakerWindow, config: FailoverConfig) -> str | None:
        if window.consecutive_failures >= config.consecutive_failures:
            return f"{window.consecutive_failures} consecutive failures"
        return None

    def peer_ejections(
        self, windows: Mapping[str, BreakerWindow], config: FailoverConfig, now: float
    ) -> Sequence[PeerEjection]:
        o = config.outlier
        found: dict[str, tuple[float, str]] = {}  # provider id -> (success rate, reason)
        if o.failure_percentage_threshold is not None:
            for w in windows.values():
                if w.calls >= o.failure_percentage_request_volume:
                    percent = 100.0 * w.failures / w.calls
                    if percent >= o.failure_percentage_threshold:
                        found[w.provider_id] = (
                            1.0 - w.failures / w.calls,
                            (
                                f"failure percentage {percent:.0f} % >= {o.failure_percentage_threshold:g} % "
                                f"over {w.calls} calls"
                            ),
                        )
        rated = [
            (w.provider_id, 1.0 - w.failures / w.calls)
            for w in windows.values()
            if w.calls >= o.success_rate_request_volume
        ]
        if rated and len(rated) >= o.success_rate_minimum_hosts:
            mean = math.fsum(rate for _, rate in rated) / len(rated)
            stdev = math.sqrt(math.fsum((rate - mean) ** 2 for _, rate in rated) / len(rated))
            threshold = mean - max(o.success_rate_stdev_factor * stdev, o.success_rate_minimum_gap)
            for pid, rate in rated:
                if rate < threshold - 1e-12 and pid not in found:  # float noise among equal rates
                    found[pid] = (
                        rate,
                        f"success rate {rate:.1%} < {threshold:.1%} (mean {mean:.1%}, stdev "
                        f"{stdev:.1%} of {len(rated)} providers)",
                    )
        worst_first = sorted(found.items(), key=lambda item: (item[1][0], item[0]))
        return [PeerEjection(pid, reason) for pid, (_, reason) in worst_first]


@hookimpl(trylast=True)
def pbm_register_failover_policies(registry: FailoverPolicyRegistry) -> None:
    """Register the built-in policies."""
    registry.add_default(DefaultPolicy())
    registry.add_default(OutlierPolicy())
