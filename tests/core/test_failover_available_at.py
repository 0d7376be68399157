"""FailoverManager.available_at: when each provider may take a call again."""

from __future__ import annotations

from pi_builder_middleware import CircuitState, ErrorKind, FailoverConfig, ManualClock
from pi_builder_middleware.failover import FailoverManager

CONFIG = FailoverConfig.preset("aggressive", base_ejection_s=10.0, jitter=0.0, half_open_max_calls=1,
                               half_open_permit_timeout_s=30.0)


def manager() -> tuple[FailoverManager, ManualClock]:
    clock = ManualClock(100.0)
    fm = FailoverManager(CONFIG, clock=clock)
    fm.add_provider("p")
    return fm, clock


def test_a_healthy_provider_is_available_now() -> None:
    fm, clock = manager()
    assert fm.available_at("p") == clock()


def test_an_open_breaker_is_available_when_its_ejection_ends_then_a_trial_permit_decides() -> None:
    fm, clock = manager()
    fm.record("p", False, ErrorKind.SERVER_ERROR)
    fm.record("p", False, ErrorKind.SERVER_ERROR)
    assert fm.state("p") is CircuitState.OPEN
    assert fm.available_at("p") == 110.0
    clock.advance(10.0)
    assert fm.available_at("p") == 110.0  # half-open now, a permit is free
    assert fm.acquire("p")
    assert fm.available_at("p") == 110.0 + 30.0  # the only permit is out: until it times out
    fm.release("p")
    assert fm.available_at("p") == clock()


def test_a_rate_limit_cooldown_ends_at_its_retry_after() -> None:
    fm, clock = manager()
    fm.record("p", False, ErrorKind.RATE_LIMITED, retry_after_s=7.5)
    assert fm.available_at("p") == 107.5
    clock.advance(8.0)
    assert fm.available_at("p") == clock()
