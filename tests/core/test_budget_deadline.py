"""The retry budget (gRPC retry throttling) and the request deadline, on a manual clock."""

from __future__ import annotations

import asyncio

import pytest
from core_support import HTTPError, Sleeper

from pi_builder_middleware import (
    AllProvidersFailedError,
    ConfigError,
    DeadlineExceededError,
    FailoverConfig,
    HedgePolicy,
    ManualClock,
    Middleware,
    Outcome,
    Provider,
    RetryBudget,
    RouteRequest,
)


def make(
    clock: ManualClock, hedge: HedgePolicy | None = None, ids: tuple[str, ...] = ("a", "b", "c"), **failover: object
) -> tuple[Middleware, Sleeper]:
    sleeper = Sleeper(clock)
    config = FailoverConfig.preset("balanced", jitter=0.0, **failover)  # type: ignore[arg-type]
    mw = Middleware(
        [Provider(id=pid) for pid in ids],
        strategy="failover",
        failover=config,
        clock=clock,
        sleep=sleeper.sleep,
        async_sleep=sleeper.async_sleep,
        load_entrypoints=False,
        hedge=hedge,
    )
    return mw, sleeper


# -- the bucket ----------------------------------------------------------------------------------


def test_the_bucket_starts_full_failures_drain_it_and_successes_refill_it():
    budget = RetryBudget(ratio=0.5, max_tokens=4)
    assert budget.tokens == 4 and budget.allows()
    budget.failed()
    budget.failed()
    assert budget.tokens == 2 and not budget.allows()  # at half: no retry (gRPC: only above half)
    assert budget.deny_retry() and budget.throttled_retries == 1
    budget.succeeded()
    assert budget.tokens == 2.5 and budget.allows() and not budget.deny_retry()
    for _ in range(10):
        budget.succeeded()
    assert budget.tokens == 4  # never above its size
    for _ in range(10):
        budget.failed()
    assert budget.tokens == 0  # never below empty


def test_a_hedge_takes_a_token_and_is_refused_at_half():
    budget = RetryBudget(ratio=0.1, max_tokens=4)
    assert budget.spend_hedge() and budget.spend_hedge()
    assert budget.tokens == 2
    assert not budget.spend_hedge() and budget.throttled_hedges == 1 and budget.tokens == 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"budget_ratio": 0}, "HedgePolicy.budget_ratio"),
        ({"budget_ratio": 1.5}, "HedgePolicy.budget_ratio"),
        ({"budget_tokens": 0}, "HedgePolicy.budget_tokens"),
        ({"max_hedges": -1}, "HedgePolicy.max_hedges"),
        ({"max_hedges": True}, "HedgePolicy.max_hedges"),
        ({"delay_s": float("nan")}, "HedgePolicy.delay_s"),
        ({"quantile": 1.0}, "HedgePolicy.quantile"),
        ({"stream_quantile": 0.2}, "HedgePolicy.stream_quantile"),
        ({"min_samples": 0}, "HedgePolicy.min_samples"),
    ],
)
def test_bad_policies_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as info:
        HedgePolicy(**kwargs)
    assert info.value.field == field


def test_bad_hedge_argument_and_request_fields_are_config_errors():
    with pytest.raises(ConfigError, match="HedgePolicy"):
        Middleware([Provider(id="a")], hedge=0.1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as info:
        RouteRequest(hedge="no")  # type: ignore[arg-type]
    assert info.value.field == "RouteRequest.hedge"
    with pytest.raises(ConfigError) as info:
        RouteRequest(attempt_timeout_s=0)
    assert info.value.field == "RouteRequest.attempt_timeout_s"


# -- the budget in the attempt loop ---------------------------------------------------------------


def test_failover_stops_when_failures_drained_the_budget_and_resumes_after_successes(clock):
    # Large breaker thresholds: only the budget can stop the failover here.
    mw, _ = make(
        clock,
        HedgePolicy(max_hedges=0, budget_ratio=0.5, budget_tokens=4),
        consecutive_failures=100,
        failure_rate_threshold=1.0,
    )
    calls: list[str] = []

    def down(provider: Provider) -> str:
        calls.append(provider.id)
        raise HTTPError(503)

    with pytest.raises(AllProvidersFailedError):
        mw.execute(down)
    assert calls == ["a", "b"]  # a (4 -> 3), b (3 -> 2: at half), no c
    assert mw.stats()["hedging"]["budget"]["throttled_retries"] == 1
    decision = mw.router.history[-1]
    assert "retry budget low" in decision.reason and "no failover" in decision.reason

    calls.clear()
    with pytest.raises(AllProvidersFailedError):
        mw.execute(down)
    assert calls == ["a"]  # still low: one attempt per request, no multiplying of load

    def c_only(provider: Provider) -> str:
        calls.append(provider.id)
        if provider.id != "c":
            raise HTTPError(503)
        return provider.id

    for _ in range(6):  # successes refill it
        mw.execute(lambda p: p.id, RouteRequest(candidates=frozenset({"b"})))
    assert mw.stats()["hedging"]["budget"]["allows"]
    calls.clear()
    assert mw.execute(c_only, RouteRequest(candidates=frozenset({"b", "c"}))) == "c"
    assert calls == ["b", "c"]  # failover is back


def test_without_a_hedge_policy_there_is_no_budget_and_failover_runs_the_whole_chain(clock):
    mw, _ = make(clock, None, consecutive_failures=100, failure_rate_threshold=1.0)
    calls: list[str] = []

    def down(provider: Provider) -> str:
        calls.append(provider.id)
        raise HTTPError(503)

    for _ in range(5):
        with pytest.raises(AllProvidersFailedError):
            mw.execute(down)
    assert calls == ["a", "b", "c"] * 5
    assert mw.retry_budget is None and mw.stats()["hedging"] is None


def test_a_bad_request_does_not_drain_the_budget(clock):
    mw, _ = make(clock, HedgePolicy(max_hedges=0))

    def bad(provider: Provider) -> str:
        raise HTTPError(400)

    for _ in range(20):
        with pytest.raises(HTTPError):
            mw.execute(bad)
    assert mw.retry_budget is not None and mw.retry_budget.tokens == 10


# -- the deadline ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_timeout_s_is_a_deadline_across_attempts(clock, mode):
    mw, _ = make(clock)
    calls: list[str] = []

    def slow_failure(provider: Provider) -> str:
        calls.append(provider.id)
        clock.advance(0.6)
        raise HTTPError(503)

    request = RouteRequest(timeout_s=1.0)
    with pytest.raises(DeadlineExceededError) as info:
        if mode == "sync":
            mw.execute(slow_failure, request)
        else:

            async def afn(provider: Provider) -> str:
                return slow_failure(provider)

            asyncio.run(mw.aexecute(afn, request))
    assert calls == ["a", "b"]  # 1.2 s spent: c is not started
    error = info.value
    assert isinstance(error, AllProvidersFailedError) and isinstance(error, TimeoutError)
    assert [a.provider_id for a in error.attempts] == ["a", "b"]
    assert error.timeout_s == 1.0 and "timeout_s of 1 s" in str(error)


def test_the_deadline_bounds_the_waits_between_passes(clock):
    mw, sleeper = make(clock, base_ejection_s=30.0)

    def down(provider: Provider) -> str:
        raise HTTPError(503)

    with pytest.raises(DeadlineExceededError):
        mw.execute(down, RouteRequest(timeout_s=2.0), max_wait_s=60.0)
    assert sum(sleeper.slept) <= 2.0 + 1e-9  # max_wait_s 60 s, but the deadline is 2 s


async def test_an_async_attempt_gets_only_what_is_left_of_the_deadline():
    mw = Middleware([Provider(id="a"), Provider(id="b")], strategy="failover", load_entrypoints=False)
    started: list[str] = []

    async def hang(provider: Provider) -> str:
        started.append(provider.id)
        await asyncio.sleep(30)
        return provider.id

    with pytest.raises(DeadlineExceededError) as info:
        await mw.aexecute(hang, RouteRequest(timeout_s=0.05))
    assert started == ["a"]  # the first attempt used the whole deadline; no failover after it
    assert [a.provider_id for a in info.value.attempts] == ["a"]
    assert mw.monitor.candidate("a").inflight == 0


async def test_attempt_timeout_s_still_fails_over_within_the_deadline():
    mw = Middleware([Provider(id="a"), Provider(id="b")], strategy="failover", load_entrypoints=False)

    async def call(provider: Provider) -> str:
        if provider.id == "a":
            await asyncio.sleep(30)
        return provider.id

    assert await mw.aexecute(call, RouteRequest(attempt_timeout_s=0.02, timeout_s=20.0)) == "b"
    assert mw.failover.stats()["providers"]["a"]["timeout"] == 1


def test_reset_refills_the_budget_and_forgets_latencies(clock):
    mw, _ = make(clock, HedgePolicy(min_samples=1))
    for _ in range(8):
        mw.record(Outcome("a", False, 0.1, error=HTTPError(503)))
    for latency in (0.2, 0.2, 0.2, 2.0):  # one slow answer: a tail a hedge can cut
        mw.record(Outcome("b", True, latency))
    assert mw.retry_budget is not None and mw.retry_budget.tokens < 5
    assert mw.hedger is not None and mw.hedger.delay("b", stream=False) == 0.2
    mw.reset("b")
    assert mw.hedger.delay("b", stream=False) is None and mw.retry_budget.tokens < 5
    mw.reset()
    assert mw.retry_budget.tokens == 10 and mw.stats()["hedging"]["budget"]["throttled_retries"] == 0


def test_export_is_json_safe_with_hedging(clock):
    import json

    mw, _ = make(clock, HedgePolicy())
    mw.record(Outcome("a", True, 0.1))
    exported = json.loads(json.dumps(mw.export()))
    assert exported["hedging"]["budget"]["max_tokens"] == 10 and exported["hedging"]["started"] == 0
