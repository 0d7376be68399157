"""FailoverManager.available_at: when each provider may take a call again."""

from __future__ import annotations

import dataclasses

from pi_builder_middleware import CircuitState, ErrorKind, FailoverConfig, ManualClock
from pi_builder_middleware.failover import FailoverManager

CONFIG = FailoverConfig.preset(
    "aggressive", base_ejection_s=10.0, jitter=0.0, half_open_max_calls=1, half_open_permit_timeout_s=30.0
)


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


def _trip(fm: FailoverManager, pid: str) -> None:
    fm.record(pid, False, ErrorKind.SERVER_ERROR)
    fm.record(pid, False, ErrorKind.SERVER_ERROR)


def test_escalate_when_all_out_false_keeps_the_base_ejection_while_every_provider_is_out() -> None:
    """With nowhere else to go, a failed trial re-ejects for the base time instead of a doubled one."""
    for escalate, expected in ((True, 20.0), (False, 10.0)):
        clock = ManualClock(100.0)
        fm = FailoverManager(dataclasses.replace(CONFIG, escalate_when_all_out=escalate), clock=clock)
        for pid in ("a", "b"):
            fm.add_provider(pid)
            _trip(fm, pid)  # first trips: base ejection (10 s) either way
        assert fm.available_at("a") == 110.0
        clock.advance(10.0)
        assert fm.acquire("a")  # half-open trial ...
        fm.record("a", False, ErrorKind.SERVER_ERROR)  # ... fails while b is out too
        assert fm.available_at("a") == 110.0 + expected


def test_escalation_still_applies_when_another_provider_is_serving() -> None:
    clock = ManualClock(100.0)
    fm = FailoverManager(dataclasses.replace(CONFIG, escalate_when_all_out=False), clock=clock)
    fm.add_provider("a")
    fm.add_provider("b")  # healthy: callers have somewhere to go
    _trip(fm, "a")
    clock.advance(10.0)
    assert fm.acquire("a")
    fm.record("a", False, ErrorKind.SERVER_ERROR)
    assert fm.available_at("a") == 110.0 + 20.0  # doubled as usual
