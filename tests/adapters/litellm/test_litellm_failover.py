"""Failing providers leave rotation and come back; 429 Retry-After; LiteLLM's retries/fallbacks/cooldowns."""

from __future__ import annotations

import asyncio
from typing import Any

import litellm
import pytest
from litellm_support import MESSAGES, async_wait_until, deployment, served_by
from pi_builder_middleware.adapters.litellm import install
from pi_builder_middleware.testing import Behaviour, Latency, SimOutcome, SimProvider

from pi_builder_middleware import CircuitState, ErrorKind, EventKind, FailoverConfig, ManualClock, RoutingConfig
from pi_builder_middleware import Outcome as CallOutcome

# Trips on 2 consecutive failures (the failure-rate trip is kept out of the way), ejects for 0.3 s.
FAST_BREAKER = FailoverConfig.preset(
    "aggressive", base_ejection_s=0.3, jitter=0.0, recovery_successes=1, minimum_calls=50
)


@pytest.fixture(params=["auto", "healthy", "group"])
def candidates(request: pytest.FixtureRequest) -> str:
    """Every way the strategy can get its candidates: auto (default), LiteLLM's healthy list, the group minus
    cooldowns."""
    return str(request.param)


def ranked_router(sim: Any, qualities: dict[str, float], **kwargs: Any) -> litellm.Router:
    """Deployments with fixed qualities, so quality-optimal gives a fixed preference order."""
    settings: dict[str, Any] = {"num_retries": 1, "retry_after": 0, "disable_cooldowns": True} | kwargs
    return litellm.Router(model_list=[deployment(sim, n, quality=q) for n, q in qualities.items()], **settings)


async def test_failing_provider_leaves_rotation_within_threshold_and_returns_after_recovery(
    make_sim, candidates: str
) -> None:
    sim = make_sim(SimProvider(name="primary"), SimProvider(name="backup"), SimProvider(name="spare"))
    router = ranked_router(sim, {"primary": 0.9, "backup": 0.6, "spare": 0.3})
    clock = ManualClock(100.0)
    with install(
        router, strategy="quality-optimal", failover=FAST_BREAKER, clock=clock, candidates=candidates
    ) as handle:
        mw = handle.middleware
        for _ in range(3):
            assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "primary"

        sim.down("primary", SimOutcome.SERVER_ERROR)
        sim.reset_stats()
        # After a failure "primary" is shed part of the time (recent failures), so its second failure may
        # take a few requests; each one still succeeds (retry → next deployment).
        served = []
        while len(served) < 30 and mw.failover.state("primary") is not CircuitState.OPEN:
            served.append(served_by(await router.acompletion(model="g", messages=MESSAGES)))
        served += [served_by(await router.acompletion(model="g", messages=MESSAGES)) for _ in range(3)]
        assert served == ["backup"] * len(served)
        assert sim.stats("primary").total == FAST_BREAKER.consecutive_failures  # out after exactly 2 failures
        assert mw.failover.state("primary") is CircuitState.OPEN
        assert mw.health("primary").consecutive_failures == 2

        sim.up("primary")
        clock.advance(FAST_BREAKER.base_ejection_s + 0.01)
        assert mw.failover.state("primary") is CircuitState.HALF_OPEN
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "primary"  # the trial call
        # LiteLLM logs successes in a background task; until it lands the trial counts as in flight.
        await async_wait_until(lambda: mw.failover.state("primary") is CircuitState.CLOSED)
        clock.advance(10 * RoutingConfig().failure_half_life_s)  # its recent failures fade: no more shedding
        served = [served_by(await router.acompletion(model="g", messages=MESSAGES)) for _ in range(3)]
        assert served == ["primary"] * 3  # back in rotation
        kinds = [e.kind for e in mw.failover.events if e.provider_id == "primary"]
        assert kinds.index(EventKind.BLACKLIST) < kinds.index(EventKind.HALF_OPEN) < kinds.index(EventKind.RECOVERY)


async def test_half_open_lets_one_trial_through_and_reopens_if_it_fails(make_sim) -> None:
    sim = make_sim(SimProvider(name="primary"), SimProvider(name="backup"))
    router = ranked_router(sim, {"primary": 0.9, "backup": 0.5})
    clock = ManualClock(0.0)
    with install(router, strategy="quality-optimal", failover=FAST_BREAKER, clock=clock) as handle:
        sim.down("primary", SimOutcome.SERVICE_UNAVAILABLE)
        for _ in range(30):  # shed part of the time after its first failure: may take a few requests
            await router.acompletion(model="g", messages=MESSAGES)
            if handle.middleware.failover.state("primary") is CircuitState.OPEN:
                break
        assert handle.middleware.failover.state("primary") is CircuitState.OPEN
        clock.advance(0.31)
        sim.reset_stats()
        for _ in range(3):
            assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "backup"
        assert sim.stats("primary").total == 1  # exactly one trial call, which failed
        assert handle.middleware.failover.state("primary") is CircuitState.OPEN
        assert handle.middleware.health("primary").trips == 2


@pytest.mark.parametrize("retry_after", [2, 7])
async def test_429_keeps_the_provider_out_for_its_retry_after(make_sim, retry_after: int, candidates: str) -> None:
    sim = make_sim(
        SimProvider(name="limited", behaviour=Behaviour.failing(SimOutcome.RATE_LIMIT, retry_after_s=retry_after)),
        SimProvider(name="other"),
    )
    router = ranked_router(sim, {"limited": 0.9, "other": 0.5})
    clock = ManualClock(50.0)
    with install(router, strategy="quality-optimal", clock=clock, candidates=candidates) as handle:
        mw = handle.middleware
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "other"  # retried elsewhere
        assert mw.failover.unavailable_reason("limited") == f"rate limited for {retry_after:.1f} s more"
        assert mw.failover.state("limited") is CircuitState.CLOSED  # a 429 is not a health failure
        snapshot = mw.health("limited")
        assert snapshot.rate_limited == 1 and snapshot.consecutive_failures == 0
        assert snapshot.cooldown_for_s == pytest.approx(retry_after)

        sim.set_behaviour("limited", Behaviour())  # it would answer now, but asked us to wait
        clock.advance(retry_after - 0.1)
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "other"
        assert sim.stats("limited").total == 1
        clock.advance(0.2)
        assert mw.failover.unavailable_reason("limited") is None
        clock.advance(10 * RoutingConfig().rate_limit_half_life_s)  # its share of 429s fades
        served = [served_by(await router.acompletion(model="g", messages=MESSAGES)) for _ in range(10)]
        assert served.count("limited") >= 5, served  # the preferred deployment is back in rotation


async def test_litellm_cross_group_fallbacks_still_work(make_sim) -> None:
    sim = make_sim(SimProvider(name="p1"), SimProvider(name="p2"), SimProvider(name="b1"))
    model_list = [
        deployment(sim, "p1", group="primary"),
        deployment(sim, "p2", group="primary"),
        deployment(sim, "b1", group="backup"),
    ]
    router = litellm.Router(
        model_list=model_list, fallbacks=[{"primary": ["backup"]}], num_retries=0, disable_cooldowns=True
    )
    sim.down("p1", SimOutcome.SERVER_ERROR)
    sim.down("p2", SimOutcome.SERVER_ERROR)
    with install(router, strategy="latency-optimal") as handle:
        response = await router.acompletion(model="primary", messages=MESSAGES)
        assert served_by(response) == "b1"
        await async_wait_until(lambda: handle.stats().get("recorded_ok", 0) == 1)
        assert handle.stats()["recorded_failure"] == 1
        failed = [pid for pid in ("p1", "p2") if handle.middleware.health(pid).failures == 1]
        assert len(failed) == 1
        assert handle.middleware.health("b1").successes == 1


async def test_retries_inside_the_group_try_each_deployment_once(make_sim, candidates: str) -> None:
    sim = make_sim(
        *(SimProvider(name=n, behaviour=Behaviour.failing(SimOutcome.SERVER_ERROR)) for n in "abc"),
        SimProvider(name="d", behaviour=Behaviour(latency=Latency.fixed(1))),
    )
    router = ranked_router(sim, {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.1}, num_retries=3)
    with install(router, strategy="quality-optimal", failover="conservative", candidates=candidates):
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "d"
    assert [sim.stats(n).total for n in "abcd"] == [1, 1, 1, 1]  # no deployment was retried twice


async def test_litellm_cooldowns_are_respected(make_sim, candidates: str) -> None:
    """A deployment LiteLLM cooled down is not a candidate, even if the middleware would rank it first."""
    sim = make_sim(SimProvider(name="favourite"), SimProvider(name="other"))
    model_list = [deployment(sim, "favourite", quality=0.9), deployment(sim, "other", quality=0.1)]
    router = litellm.Router(model_list=model_list, num_retries=0, cooldown_time=60)
    with install(router, strategy="quality-optimal", candidates=candidates) as handle:
        error = litellm.RateLimitError(message="slow down", llm_provider="openai", model="sim-model")
        router.health().record_failure("favourite", error, 429)
        for _ in range(3):
            assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "other"
        assert handle.middleware.failover.unavailable_reason("favourite") is None  # it was LiteLLM's cooldown
    assert sim.stats("favourite").total == 0


async def test_all_cooling_down_is_litellms_own_error(make_sim, candidates: str) -> None:
    sim = make_sim(SimProvider(name="one"), SimProvider(name="two"))
    router = litellm.Router(
        model_list=[deployment(sim, "one"), deployment(sim, "two")], num_retries=0, cooldown_time=60
    )
    with install(router, candidates=candidates):
        for pid in ("one", "two"):
            error = litellm.RateLimitError(message="x", llm_provider="openai", model="sim-model")
            assert router.health().record_failure(pid, error, 429)
        with pytest.raises(litellm.RouterRateLimitError):
            await router.acompletion(model="g", messages=MESSAGES)
    assert sim.stats("one").total == sim.stats("two").total == 0


def test_sync_calls_fail_over_and_trip_the_breaker(make_sim) -> None:
    """router.completion: failure events arrive inline, so the breaker opens and retries go elsewhere."""
    sim = make_sim(
        SimProvider(name="primary", behaviour=Behaviour.failing(SimOutcome.SERVER_ERROR)), SimProvider(name="backup")
    )
    router = ranked_router(sim, {"primary": 0.9, "backup": 0.5})
    with install(router, strategy="quality-optimal", failover=FAST_BREAKER, clock=ManualClock(0.0)) as handle:
        # after its first failure "primary" is shed half the time (recent failures), so it may take a few calls
        served = [served_by(router.completion(model="g", messages=MESSAGES)) for _ in range(20)]
        assert served == ["backup"] * 20
        assert sim.stats("primary").total == 2
        assert handle.middleware.failover.state("primary") is CircuitState.OPEN


async def test_a_cancelled_trial_call_gives_its_half_open_permit_back(make_sim) -> None:
    """LiteLLM reports nothing for a cancelled call; the trial permit must not stay taken until its timeout."""
    sim = make_sim(
        SimProvider(name="slow", behaviour=Behaviour(latency=Latency(median_ms=3000))), SimProvider(name="ok")
    )
    clock = ManualClock()
    router = ranked_router(sim, {"slow": 0.9, "ok": 0.1}, num_retries=0)
    with install(router, strategy="quality-optimal", failover=FAST_BREAKER, clock=clock) as handle:
        mw = handle.middleware
        for _ in range(2):
            mw.record(CallOutcome("slow", False, 0.01, error_kind=ErrorKind.SERVER_ERROR))
        clock.advance(1.0)  # past the ejection: the next pick is slow's half-open trial
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(router.acompletion(model="g", messages=MESSAGES), 0.3)
        assert handle.stats()["trials_released"] == 1
        assert mw.failover.unavailable_reason("slow") is None  # a new trial may go out at once
        assert mw.select().provider.id == "slow"


async def test_a_completed_trial_call_is_recorded_not_released(make_sim) -> None:
    sim = make_sim(SimProvider(name="a"), SimProvider(name="b"))
    clock = ManualClock()
    router = ranked_router(sim, {"a": 0.9, "b": 0.1}, num_retries=0)
    with install(router, strategy="quality-optimal", failover=FAST_BREAKER, clock=clock) as handle:
        for _ in range(2):
            handle.middleware.record(CallOutcome("a", False, 0.01, error_kind=ErrorKind.SERVER_ERROR))
        clock.advance(1.0)
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "a"  # the trial
        await async_wait_until(lambda: handle.stats()["recorded_ok"] == 1)
        assert handle.middleware.failover.state("a") is CircuitState.CLOSED  # recovery_successes=1
        assert handle.stats()["trials_released"] == 0
