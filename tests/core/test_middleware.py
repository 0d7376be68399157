"""Middleware facade: execute/aexecute failover, classification, rate limits, health, export, checks."""

from __future__ import annotations

import asyncio
import json

import pytest
from core_support import HTTPError

from pi_builder_middleware import (
    AllOutMode,
    AllProvidersFailedError,
    CircuitState,
    ConfigError,
    ErrorKind,
    EventKind,
    FailoverConfig,
    HealthStatus,
    ManualClock,
    Middleware,
    NoProviderAvailableError,
    Outcome,
    Provider,
    RouteRequest,
    RoutingConfig,
    Usage,
)


class RateLimitError(HTTPError):
    pass


class ContextWindowExceededError(HTTPError):
    pass


def failover_mw(clock, **kw):
    return Middleware(
        providers=[Provider(id="a"), Provider(id="b"), Provider(id="c")],
        strategy="failover",
        failover=FailoverConfig.preset("aggressive", base_ejection_s=5.0, jitter=0.0, recovery_successes=2),
        clock=clock,
        **kw,
    )


def test_execute_fails_over_along_the_chain_and_records_each_attempt(clock):
    mw = failover_mw(clock)
    calls = []

    def call(provider):
        calls.append(provider.id)
        clock.advance(0.2)
        if provider.id == "a":
            raise HTTPError(503, "overloaded")
        return f"answer from {provider.id}"

    assert mw.execute(call) == "answer from b"
    assert calls == ["a", "b"]
    assert mw.health("a").failures == 1
    assert mw.health("b").successes == 1
    assert mw.health("b").latency_p50_ms == pytest.approx(200)
    switches = [e for e in mw.failover.events if e.kind is EventKind.SWITCH]
    assert len(switches) == 1 and switches[0].detail == "-> b: overloaded"


def test_execute_records_usage_and_cost(clock):
    mw = Middleware(providers=[Provider(id="a", cost_per_1k_input=1.0, cost_per_1k_output=2.0)], clock=clock)
    mw.execute(lambda p: "ok", usage=lambda r: Usage(input_tokens=500, output_tokens=250))
    snap = mw.health("a")
    assert (snap.tokens_in, snap.tokens_out) == (500, 250)
    assert snap.cost_total == pytest.approx(1.0)


def test_all_fail_raises_with_every_attempt_chained(clock):
    mw = failover_mw(clock)
    errors = {"a": HTTPError(500), "b": TimeoutError("slow"), "c": ConnectionResetError("reset")}

    def call(provider):
        raise errors[provider.id]

    with pytest.raises(AllProvidersFailedError) as info:
        mw.execute(call)
    err = info.value
    assert [(a.provider_id, a.error_kind) for a in err.attempts] == [
        ("a", ErrorKind.SERVER_ERROR),
        ("b", ErrorKind.TIMEOUT),
        ("c", ErrorKind.CONNECTION),
    ]
    assert [a.error for a in err.attempts] == list(errors.values())
    assert err.__cause__ is errors["c"]
    assert "a: server_error (HTTPError" in str(err)


def test_bad_request_propagates_at_once(clock):
    mw = failover_mw(clock)
    calls = []

    def call(provider):
        calls.append(provider.id)
        raise HTTPError(400, "messages: field required")

    with pytest.raises(HTTPError):
        mw.execute(call)
    assert calls == ["a"]
    assert mw.health("a").failures == 0  # not a health failure


def test_context_window_skips_provider_for_this_request_only(clock):
    mw = failover_mw(clock)

    def call(provider):
        if provider.id == "a":
            raise ContextWindowExceededError(400, "maximum context length is 8192 tokens")
        return provider.id

    assert mw.execute(call) == "b"
    assert mw.failover.state("a") is CircuitState.CLOSED
    assert mw.health("a").failures == 0
    assert mw.select().provider.id == "a"  # still first choice for the next request


def test_breaker_takes_failing_provider_out_and_brings_it_back(clock):
    mw = Middleware(
        providers=[Provider(id="a", quality=0.9), Provider(id="b", quality=0.8)],
        strategy="failover",
        failover=FailoverConfig.preset("aggressive", base_ejection_s=5.0, jitter=0.0, recovery_successes=2),
        clock=clock,
    )
    down = {"a"}
    tried = []

    def call(provider):
        tried.append(provider.id)
        if provider.id in down:
            raise HTTPError(500)
        return provider.id

    for _ in range(2):
        assert mw.execute(call) == "b"
    assert mw.failover.state("a") is CircuitState.OPEN
    tried.clear()
    for _ in range(5):
        assert mw.execute(call) == "b"
    assert "a" not in tried  # no request sent into the outage
    down.clear()
    clock.advance(5.1)
    assert mw.failover.state("a") is CircuitState.HALF_OPEN
    assert mw.execute(call) == "a"  # trial call
    assert mw.execute(call) == "a"  # second success closes it (recovery_successes=2)
    assert mw.failover.state("a") is CircuitState.CLOSED
    kinds = [e.kind for e in mw.failover.events if e.provider_id == "a" and e.kind is not EventKind.SWITCH]
    assert kinds == [EventKind.FAILURE, EventKind.FAILURE, EventKind.BLACKLIST, EventKind.HALF_OPEN, EventKind.RECOVERY]


def test_repeat_trips_grow_the_ejection(clock):
    mw = failover_mw(clock)
    fail = Outcome("a", False, 0.1, error_kind=ErrorKind.SERVER_ERROR)
    mw.record(fail)
    mw.record(fail)
    ejections = [mw.failover.breaker_info("a")["open_for_s"]]
    for _ in range(3):  # each failed trial call re-opens for longer
        clock.advance(ejections[-1] + 0.01)
        assert mw.failover.acquire("a")
        mw.record(fail)
        ejections.append(mw.failover.breaker_info("a")["open_for_s"])
    assert ejections == pytest.approx([5.0, 10.0, 20.0, 40.0])
    clock.advance(40.01)
    mw.record(Outcome("a", True, 0.1))
    mw.record(Outcome("a", True, 0.1))
    assert mw.failover.state("a") is CircuitState.CLOSED
    clock.advance(FailoverConfig.preset("aggressive").trip_memory_s + 1)  # long healthy: back to base
    mw.record(fail)
    mw.record(fail)
    assert mw.failover.breaker_info("a")["open_for_s"] == pytest.approx(5.0)


def test_rate_limit_cools_down_for_retry_after(clock):
    mw = failover_mw(clock)
    mw.record(Outcome("a", False, 0.05, error=RateLimitError(429, "slow down", {"retry-after": "7"})))
    assert mw.failover.state("a") is CircuitState.CLOSED
    decision = mw.select()
    assert decision.provider.id == "b"
    assert decision.excluded["a"] == "rate limited for 7.0 s more"
    clock.advance(6.9)
    assert mw.select().provider.id == "b"
    clock.advance(0.2)
    assert mw.select().provider.id == "a"
    assert mw.health("a").failures == 0 and mw.health("a").rate_limited == 1


def test_retry_after_ms_and_http_date_and_default(clock):
    mw = failover_mw(clock)
    mw.record(Outcome("a", False, 0.0, error=HTTPError(429, headers={"retry-after-ms": "1500"})))
    assert mw.failover.unavailable_reason("a") == "rate limited for 1.5 s more"
    mw.record(Outcome("b", False, 0.0, error=HTTPError(429)))  # no header: a short backoff (0.25 s)
    assert mw.failover.unavailable_reason("b") == "rate limited for 0.2 s more"


def test_auth_error_is_reported_not_a_flap(clock):
    mw = failover_mw(clock)
    for _ in range(5):
        mw.record(Outcome("a", False, 0.0, error=HTTPError(401, "invalid api key")))
    assert mw.failover.state("a") is CircuitState.CLOSED
    assert mw.failover.event_counts[EventKind.CONFIG_ERROR] == 5


def test_status_code_only_outcome_is_classified(clock):
    mw = failover_mw(clock)
    assert mw.record(Outcome("a", False, 0.0, error=HTTPError(529))) is ErrorKind.OVERLOADED
    assert mw.record(Outcome("a", False, 0.0)) is ErrorKind.UNKNOWN


async def test_aexecute_times_out_and_fails_over():
    mw = Middleware(providers=[Provider(id="slow"), Provider(id="ok")], strategy="failover")

    async def call(provider):
        if provider.id == "slow":
            await asyncio.sleep(5)
        return provider.id

    assert await mw.aexecute(call, RouteRequest(attempt_timeout_s=0.05)) == "ok"
    assert mw.health("slow").failures == 1
    assert [e.kind for e in mw.failover.events][:2] == [EventKind.FAILURE, EventKind.SWITCH]


async def test_aexecute_all_fail():
    mw = Middleware(providers=[Provider(id="x"), Provider(id="y")], strategy="failover")

    async def call(provider):
        raise HTTPError(502, "bad gateway")

    with pytest.raises(AllProvidersFailedError) as info:
        await mw.aexecute(call)
    assert [a.provider_id for a in info.value.attempts] == ["x", "y"]


def test_no_provider_when_all_open_with_fail_fast(clock):
    mw = failover_mw(clock, routing=RoutingConfig(when_all_out=AllOutMode.FAIL))
    for pid in "abc":
        for _ in range(2):
            mw.record(Outcome(pid, False, 0.0, error_kind=ErrorKind.SERVER_ERROR))
    with pytest.raises(NoProviderAvailableError) as info:
        mw.execute(lambda p: p.id)
    assert set(info.value.reasons) == {"a", "b", "c"}
    assert mw.stats()["router"]["all_out_decisions"] == 0


def test_all_open_sends_to_the_soonest_readmission_by_default(clock):
    mw = failover_mw(clock)
    for pid in "bca":  # a trips last: its ejection ends last
        for _ in range(2):
            mw.record(Outcome(pid, False, 0.0, error_kind=ErrorKind.SERVER_ERROR))
        clock.advance(1.0)
    assert mw.execute(lambda p: p.id) == "b"  # b's ejection ends first; the call is its early trial
    assert mw.failover.state("b") is CircuitState.HALF_OPEN  # one of the two trial successes it needs
    assert mw.stats()["router"]["all_out_decisions"] == 1
    last = mw.router.history[-1]
    assert last.panic and last.trial and "every candidate is out" in last.reason


def test_health_snapshot_and_export(clock):
    mw = failover_mw(clock)
    for i in range(10):
        mw.record(Outcome("a", True, 0.1 + i / 100, input_tokens=10, output_tokens=20))
    mw.record(Outcome("a", False, 0.3, error=HTTPError(500, "key sk-live-1234567890abcdef leaked in message")))
    snap = mw.health("a")
    assert snap.status is HealthStatus.UNHEALTHY  # 1 of 11 failed: availability 90.9 %
    assert snap.circuit is CircuitState.CLOSED
    assert snap.calls == 11 and snap.tokens_out == 200
    assert snap.latency_p50_ms == pytest.approx(145)
    text = json.dumps(mw.export())
    assert "sk-live" not in text
    data = json.loads(text)
    assert set(data) == {"config", "health", "monitor", "failover", "router", "decisions", "plugins"}
    assert data["health"]["a"]["status"] == "unhealthy"
    assert data["failover"]["config"]["consecutive_failures"] == 2


def test_reset_clears_state(clock):
    mw = failover_mw(clock)
    for _ in range(2):
        mw.record(Outcome("a", False, 0.0, error_kind=ErrorKind.SERVER_ERROR))
    mw.select()
    mw.reset()
    assert mw.failover.state("a") is CircuitState.CLOSED
    assert mw.health("a").calls == 0
    assert mw.router.statistics()["total_decisions"] == 0


async def test_periodic_health_checks_detect_and_recover():
    clock = ManualClock(0)
    mw = Middleware(
        providers=[Provider(id="a"), Provider(id="b")],
        clock=clock,
        failover=FailoverConfig.preset("aggressive", jitter=0.0, recovery_successes=1),
    )
    healthy = {"a": False, "b": True}
    probed = []

    async def probe(provider):
        probed.append(provider.id)
        if not healthy[provider.id]:
            raise HTTPError(503, "down")
        return True

    mw.start_health_checks(probe, interval_s=0.01)
    for _ in range(200):
        await asyncio.sleep(0.005)
        if mw.failover.state("a") is CircuitState.OPEN:
            break
    assert mw.failover.state("a") is CircuitState.OPEN
    assert mw.failover.state("b") is CircuitState.CLOSED
    healthy["a"] = True
    for _ in range(200):
        await asyncio.sleep(0.005)
        if mw.failover.state("a") is not CircuitState.OPEN:
            break
    await mw.stop_health_checks()
    assert mw.failover.state("a") is CircuitState.HALF_OPEN  # a good probe ends the ejection early
    mw.record(Outcome("a", True, 0.1))
    assert mw.failover.state("a") is CircuitState.CLOSED
    count = len(probed)
    await asyncio.sleep(0.05)
    assert len(probed) == count  # stopped cleanly
    assert any(e.kind is EventKind.PROBE for e in mw.failover.events)


async def test_health_checks_config_errors():
    mw = Middleware(providers=[Provider(id="a")])

    async def probe(provider):
        return True

    with pytest.raises(ConfigError, match="interval_s"):
        mw.start_health_checks(probe, interval_s=0)
    mw.start_health_checks(probe, interval_s=1)
    with pytest.raises(ConfigError, match="already running"):
        mw.start_health_checks(probe, interval_s=1)
    await mw.stop_health_checks()


def test_presets_have_documented_numbers():
    agg, bal, con = (FailoverConfig.preset(n) for n in ("aggressive", "balanced", "conservative"))
    assert (agg.consecutive_failures, bal.consecutive_failures, con.consecutive_failures) == (2, 5, 10)
    assert agg.base_ejection_s < bal.base_ejection_s < con.base_ejection_s
    assert FailoverConfig() == bal
    with pytest.raises(ConfigError, match="unknown preset 'wild'"):
        Middleware(failover="wild")


def test_bad_config_names_the_field():
    with pytest.raises(ConfigError) as info:
        FailoverConfig(consecutive_failures=-1)
    assert info.value.field == "FailoverConfig.consecutive_failures"
    with pytest.raises(ConfigError, match=r"Provider.cost_per_1k_input"):
        Provider(id="x", cost_per_1k_input=-0.1)
    with pytest.raises(ConfigError, match="unknown setting"):
        FailoverConfig(consecutive_failure=3)
    with pytest.raises(ConfigError, match="max_ejection_s: must be >= base_ejection_s"):
        FailoverConfig(base_ejection_s=100, max_ejection_s=10)
    with pytest.raises(ConfigError, match=r"RouteRequest\.min_availability"):
        RouteRequest(min_availability=1.5)
    with pytest.raises(ConfigError, match=r"Outcome\.latency_s"):
        Outcome("a", True, -1.0)


async def test_cancelled_trial_call_gives_its_permit_back(clock):
    mw = failover_mw(clock)
    for _ in range(2):
        mw.record(Outcome("a", False, 0.0, error_kind=ErrorKind.SERVER_ERROR))
    clock.advance(5.1)
    assert mw.failover.state("a") is CircuitState.HALF_OPEN
    started = asyncio.Event()

    async def hang(provider):
        started.set()
        await asyncio.sleep(30)

    task = asyncio.create_task(mw.aexecute(hang))
    await started.wait()
    assert "trial call" in mw.select(reserve=False).excluded["a"]  # the only permit is out
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert mw.failover.unavailable_reason("a") is None  # permit returned: the next request can probe
    assert mw.select().provider.id == "a"
