"""The request path: a provider that answered is never lost, and no user callback breaks a request."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import pytest

from pi_builder_middleware import (
    MAX_TOKENS,
    Alert,
    AlertKind,
    AlertThresholds,
    AllProvidersFailedError,
    BreakerWindow,
    CircuitState,
    ConfigError,
    ErrorKind,
    EventKind,
    FailoverConfig,
    FailoverEvent,
    FailoverPolicy,
    HealthChange,
    HealthStatus,
    ManualClock,
    Middleware,
    MonitorConfig,
    Outcome,
    Provider,
    RouteRequest,
    StreamInterruptedError,
    Usage,
)


class Unprintable(Exception):
    """An exception whose ``__str__`` raises (seen with SDK errors built from a broken response)."""

    def __init__(self, status_code: int = 500) -> None:
        super().__init__()
        self.status_code = status_code

    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


def chain(clock: ManualClock, *ids: str, **kw: object) -> Middleware:
    """Strategy failover over ``ids`` (a first); two failures eject for 5 s, one success closes a half-open breaker."""
    config = FailoverConfig.preset("aggressive", base_ejection_s=5.0, jitter=0.0, recovery_successes=1)
    return Middleware(
        [Provider(id=pid) for pid in ids or ("a", "b")],
        strategy="failover",
        failover=config,
        clock=clock,
        load_entrypoints=False,
        **kw,
    )  # type: ignore[arg-type]


# -- error messages ------------------------------------------------------------------------------


def test_every_provider_failing_with_an_unprintable_error_still_raises_all_providers_failed(clock):
    mw = chain(clock)

    def call(provider: Provider) -> str:
        raise Unprintable(503)

    with pytest.raises(AllProvidersFailedError) as info:
        mw.execute(call)
    assert [(a.provider_id, a.error_kind) for a in info.value.attempts] == [
        ("a", ErrorKind.OVERLOADED),
        ("b", ErrorKind.OVERLOADED),
    ]
    assert "Unprintable: <unprintable>" in str(info.value)
    assert isinstance(info.value.__cause__, Unprintable)


def test_a_stream_interrupted_by_an_unprintable_error_has_a_message():
    error = StreamInterruptedError("a", 3, Unprintable())
    assert str(error) == "stream from 'a' failed after 3 chunk(s): Unprintable: <unprintable>"


# -- subscribers ---------------------------------------------------------------------------------


def alerting(clock: ManualClock) -> Middleware:
    """Chain a, b whose monitor alerts from the first sample on."""
    return chain(clock, monitor=MonitorConfig(min_samples=1, alerts=AlertThresholds(min_samples=1)))


def test_an_alert_subscriber_that_raises_never_fails_the_request_nor_the_others(clock, caplog):
    mw = alerting(clock)
    delivered: list[Alert] = []

    def broken(alert: Alert) -> None:
        raise RuntimeError("subscriber bug")

    mw.subscribe_alerts(broken)
    mw.subscribe_alerts(delivered.append)

    def call(provider: Provider) -> str:
        if provider.id == "a":
            raise ConnectionError("refused")
        return "from b"

    with caplog.at_level(logging.ERROR, logger="pi_builder_middleware"):
        assert mw.execute(call) == "from b"
        assert mw.failover.breaker_info("a")["consecutive_failures"] == 1  # the breaker saw the failure
        assert mw.execute(call) == "from b"
    assert mw.failover.state("a") is CircuitState.OPEN  # two failures trip it
    assert {a.kind for a in delivered} >= {AlertKind.UNAVAILABLE, AlertKind.HIGH_ERROR_RATE}
    failures = mw.stats()["callback_failures"]
    assert failures["alert_subscriber"] == len(delivered)
    assert len([r for r in caplog.records if "alert_subscriber" in r.getMessage()]) == 1  # logged once


def test_health_and_failover_subscribers_that_raise_are_counted_not_raised(clock):
    mw = chain(clock, monitor=MonitorConfig(min_samples=1))
    changes: list[HealthChange] = []
    events: list[FailoverEvent] = []

    def broken(item: object) -> None:
        raise RuntimeError("subscriber bug")

    mw.monitor.subscribe_health(broken)
    mw.monitor.subscribe_health(changes.append)
    mw.failover.subscribe(broken)
    mw.failover.subscribe(events.append)
    for _ in range(2):
        mw.record(Outcome("a", False, 0.1, error_kind=ErrorKind.SERVER_ERROR))
    assert mw.failover.state("a") is CircuitState.OPEN
    assert mw.health("a").status is HealthStatus.OFFLINE  # the router's own subscriber still ran
    assert changes and events[-1].kind is EventKind.BLACKLIST
    failures = mw.stats()["callback_failures"]
    assert failures["health_subscriber"] == len(changes) and failures["failover_subscriber"] == len(events)


# -- the usage callback --------------------------------------------------------------------------


def half_open(mw: Middleware, clock: ManualClock, pid: str = "a") -> None:
    for _ in range(2):
        mw.record(Outcome(pid, False, 0.1, error_kind=ErrorKind.SERVER_ERROR))
    clock.advance(5.1)
    assert mw.failover.state(pid) is CircuitState.HALF_OPEN


def run(mw: Middleware, mode: str, fn: Callable[[Provider], str], **kwargs: Any) -> str:
    if mode == "sync":
        return mw.execute(fn, **kwargs)

    async def afn(provider: Provider) -> str:
        return fn(provider)

    return asyncio.run(mw.aexecute(afn, **kwargs))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_usage_callback_that_raises_never_fails_a_request_the_provider_answered(clock, mode):
    mw = chain(clock)
    half_open(mw, clock)

    def answer(provider: Provider) -> str:
        clock.advance(0.2)
        return f"from {provider.id}"

    def usage(result: str) -> Usage:
        clock.advance(3.0)  # a slow callback is not the provider's latency either
        raise KeyError("usage_metadata")

    assert run(mw, mode, answer, usage=usage) == "from a"
    assert mw.failover.state("a") is CircuitState.CLOSED  # the trial's success was recorded: permit used up
    snap = mw.health("a")
    assert snap.successes == 1 and snap.latency_max_ms == pytest.approx(200)
    assert mw.monitor.candidate("a").inflight == 0
    assert mw.stats()["callback_failures"] == {"usage": 1}


@pytest.mark.parametrize(
    "counted", [{"input_tokens": 5}, "12 tokens", (5, 3), None]
)  # (a Usage with bad numbers cannot be built: ConfigError)
def test_a_usage_callback_returning_garbage_records_the_success_without_it(clock, counted):
    mw = chain(clock)
    half_open(mw, clock)
    assert mw.execute(lambda p: "ok", usage=lambda result: counted) == "ok"
    assert mw.failover.state("a") is CircuitState.CLOSED
    assert mw.health("a").successes == 1 and mw.health("a").tokens_in == 0
    assert mw.stats()["callback_failures"] == ({} if counted is None else {"usage": 1})


def test_token_counts_beyond_float_range_are_refused_by_outcome_not_overflowing_later(clock):
    mw = chain(clock)
    with pytest.raises(ConfigError, match=r"Outcome\.input_tokens"):
        Outcome("a", True, 0.1, input_tokens=10**400)
    with pytest.raises(ConfigError, match=r"RouteRequest\.output_tokens"):
        RouteRequest(output_tokens=2**60)
    mw.record(Outcome("a", True, 0.1, input_tokens=MAX_TOKENS))  # the largest accepted
    assert mw.health("a").tokens_in == MAX_TOKENS


def test_an_interrupt_in_the_usage_callback_propagates_after_the_success_is_recorded(clock):
    mw = chain(clock)
    half_open(mw, clock)

    def usage(result: str) -> Usage:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mw.execute(lambda p: "ok", usage=usage)
    assert mw.failover.state("a") is CircuitState.CLOSED


# -- providers removed while their call runs -----------------------------------------------------


def test_a_provider_removed_while_its_call_runs_still_returns_its_answer(clock):
    mw = chain(clock)

    def call(provider: Provider) -> str:
        mw.remove_provider(provider.id)  # e.g. a config reload while the request was in flight
        return f"from {provider.id}"

    assert mw.execute(call) == "from a"
    assert set(mw.providers) == {"b"}


def test_a_provider_removed_while_its_call_fails_still_fails_over(clock):
    mw = chain(clock, "a", "b", "c")
    calls = []

    def call(provider: Provider) -> str:
        calls.append(provider.id)
        if provider.id == "a":
            mw.remove_provider("a")
            mw.remove_provider("b")  # a backup of this request's chain, gone before its turn
            raise ConnectionError("refused")
        return f"from {provider.id}"

    assert mw.execute(call) == "from c"
    assert calls == ["a", "c"]


# -- failover policies ---------------------------------------------------------------------------


class Policy(FailoverPolicy):
    """Trips on every failure (or raises in should_trip); ejects for ``ejection`` seconds (or raises)."""

    name = "scripted-policy"

    def __init__(self, trip: bool | None = True, ejection: float | None = 1.0) -> None:
        self.trip = trip
        self.ejection = ejection

    def should_trip(self, window: BreakerWindow, config: FailoverConfig) -> str | None:
        if self.trip is None:
            raise RuntimeError("policy bug")
        return "scripted" if self.trip else None

    def ejection_s(self, trips: int, config: FailoverConfig, rng: random.Random) -> float:
        if self.ejection is None:
            raise RuntimeError("policy bug")
        return self.ejection


def with_policy(clock: ManualClock, policy: Policy) -> Middleware:
    mw = Middleware(
        [Provider(id="a"), Provider(id="b")],
        strategy="failover",
        clock=clock,
        load_entrypoints=False,
        failover=FailoverConfig(base_ejection_s=7.0, jitter=0.0),
    )
    mw.failover.policy = policy
    return mw


def test_a_policy_that_raises_in_should_trip_never_fails_the_request(clock):
    mw = with_policy(clock, Policy(trip=None))

    def call(provider: Provider) -> str:
        if provider.id == "a":
            raise ConnectionError("refused")
        return "from b"

    assert mw.execute(call) == "from b"
    assert mw.failover.state("a") is CircuitState.CLOSED  # no verdict: no trip
    assert mw.health("a").failures == 1
    assert mw.stats()["callback_failures"] == {"failover_policy": 1}


@pytest.mark.parametrize("ejection", [None, float("nan"), float("inf"), -1.0])
def test_an_unusable_ejection_time_falls_back_to_the_configured_one(clock, ejection):
    mw = with_policy(clock, Policy(ejection=ejection))
    mw.record(Outcome("a", False, 0.1, error_kind=ErrorKind.SERVER_ERROR))
    assert mw.failover.state("a") is CircuitState.OPEN
    assert mw.failover.available_at("a") == pytest.approx(clock() + 7.0)  # base_ejection_s of the config
    clock.advance(7.0)
    assert mw.failover.state("a") is CircuitState.HALF_OPEN
    assert mw.stats()["callback_failures"] == {"failover_policy": 1}
