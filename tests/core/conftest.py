from __future__ import annotations

import pytest

from pi_builder_middleware import FailoverConfig, ManualClock, Middleware, Provider


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1000.0)


@pytest.fixture
def providers() -> list[Provider]:
    return [
        Provider(id="fast", cost_per_1k_input=0.01, cost_per_1k_output=0.03, quality=0.7, capabilities={"tools"}),
        Provider(id="cheap", cost_per_1k_input=0.001, cost_per_1k_output=0.002, quality=0.5),
        Provider(
            id="smart", cost_per_1k_input=0.03, cost_per_1k_output=0.06, quality=0.95, capabilities={"tools", "vision"}
        ),
    ]


@pytest.fixture
def fast_failover() -> FailoverConfig:
    return FailoverConfig.preset("aggressive", base_ejection_s=10.0, jitter=0.0, recovery_successes=1)


@pytest.fixture
def mw(providers, clock, fast_failover) -> Middleware:
    return Middleware(providers=providers, strategy="latency-optimal", failover=fast_failover, clock=clock, seed=7)
