"""On LiteLLM before 1.109: failing deployments leave rotation; LiteLLM's cooldowns and pauses still hold."""

from __future__ import annotations

from typing import Any

import litellm
import pytest
from legacy_support import FAST_BREAKER
from litellm_support import MESSAGES, async_wait_until, deployment, mock_deployment, served_by
from pi_builder_middleware.adapters.litellm import install
from pi_builder_middleware.testing import Behaviour, SimOutcome, SimProvider

from pi_builder_middleware import CircuitState, ManualClock


def ranked_router(sim: Any, qualities: dict[str, float], **kwargs: Any) -> litellm.Router:
    """Deployments with fixed qualities, so quality-optimal gives a fixed preference order."""
    settings: dict[str, Any] = {"num_retries": 1, "retry_after": 0, "disable_cooldowns": True} | kwargs
    return litellm.Router(model_list=[deployment(sim, n, quality=q) for n, q in qualities.items()], **settings)


def cool_down(router: litellm.Router, pid: str, seconds: float = 60.0) -> None:
    """Put ``pid`` into LiteLLM's own cooldown cache, as its failure handling does after a 429."""
    error = litellm.RateLimitError(message="slow down", llm_provider="openai", model="sim-model")
    router.cooldown_cache.add_deployment_to_cooldown(
        model_id=pid, original_exception=error, exception_status=429, cooldown_time=seconds
    )


async def test_failing_deployment_is_taken_out_and_comes_back(make_sim) -> None:
    sim = make_sim(SimProvider(name="primary"), SimProvider(name="backup"), SimProvider(name="spare"))
    router = ranked_router(sim, {"primary": 0.9, "backup": 0.6, "spare": 0.3})
    clock = ManualClock(100.0)
    with install(router, strategy="failover", failover=FAST_BREAKER, clock=clock) as handle:
        mw = handle.middleware
        for _ in range(3):
            assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "primary"

        sim.down("primary", SimOutcome.SERVER_ERROR)
        sim.reset_stats()
        served = [served_by(await router.acompletion(model="g", messages=MESSAGES)) for _ in range(8)]
        assert served == ["backup"] * 8  # every caller request succeeded (num_retries → the next deployment)
        assert sim.stats("primary").total == FAST_BREAKER.consecutive_failures  # out after exactly 2 failures
        assert mw.failover.state("primary") is CircuitState.OPEN
        assert handle.stats()["filtered_out"] >= 6  # later picks did not even consider it

        sim.up("primary")
        clock.advance(FAST_BREAKER.base_ejection_s + 0.01)
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "primary"  # half-open trial
        await async_wait_until(lambda: mw.failover.state("primary") is CircuitState.CLOSED)
        assert [served_by(await router.acompletion(model="g", messages=MESSAGES)) for _ in range(3)] == ["primary"] * 3


def test_sync_calls_fail_over_and_trip_the_breaker(make_sim) -> None:
    sim = make_sim(
        SimProvider(name="primary", behaviour=Behaviour.failing(SimOutcome.SERVER_ERROR)), SimProvider(name="backup")
    )
    router = ranked_router(sim, {"primary": 0.9, "backup": 0.5})
    with install(router, strategy="failover", failover=FAST_BREAKER, clock=ManualClock(0.0)) as handle:
        served = [served_by(router.completion(model="g", messages=MESSAGES)) for _ in range(5)]
        assert served == ["backup"] * 5
        assert sim.stats("primary").total == 2
        assert handle.middleware.failover.state("primary") is CircuitState.OPEN


async def test_retries_inside_the_group_try_each_deployment_once(make_sim) -> None:
    sim = make_sim(
        *(SimProvider(name=n, behaviour=Behaviour.failing(SimOutcome.SERVER_ERROR)) for n in "abc"),
        SimProvider(name="d"),
    )
    router = ranked_router(sim, {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.1}, num_retries=3)
    with install(router, strategy="quality-optimal", failover="conservative"):
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "d"
    assert [sim.stats(n).total for n in "abcd"] == [1, 1, 1, 1]  # no deployment was tried twice


@pytest.mark.parametrize("sync", [False, True])
async def test_litellm_cooldowns_are_respected(make_sim, sync: bool) -> None:
    """A deployment LiteLLM cooled down is not a candidate, even if the middleware would rank it first."""
    sim = make_sim(SimProvider(name="favourite"), SimProvider(name="other"))
    model_list = [deployment(sim, "favourite", quality=0.9), deployment(sim, "other", quality=0.1)]
    router = litellm.Router(model_list=model_list, num_retries=0, cooldown_time=60)
    with install(router, strategy="quality-optimal") as handle:
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "favourite"
        cool_down(router, "favourite")
        for _ in range(3):
            response = (
                router.completion(model="g", messages=MESSAGES)
                if sync
                else await router.acompletion(model="g", messages=MESSAGES)
            )
            assert served_by(response) == "other"
        assert handle.middleware.failover.unavailable_reason("favourite") is None  # it was LiteLLM's cooldown
    assert sim.stats("favourite").total == 1


@pytest.mark.parametrize("sync", [False, True])
async def test_all_cooling_down_is_litellms_own_error(sync: bool) -> None:
    router = litellm.Router(model_list=[mock_deployment("one"), mock_deployment("two")], num_retries=0)
    with install(router) as handle:
        for pid in ("one", "two"):
            cool_down(router, pid)
        with pytest.raises(litellm.RouterRateLimitError) as info:
            if sync:
                router.completion(model="g", messages=MESSAGES)
            else:
                await router.acompletion(model="g", messages=MESSAGES)
        assert sorted(info.value.cooldown_list) == ["one", "two"]
        assert handle.stats().get("picks", 0) == 0


async def test_paused_deployments_are_not_candidates() -> None:
    router = litellm.Router(
        model_list=[mock_deployment("paused", quality=0.9, blocked=True), mock_deployment("live", quality=0.1)],
        num_retries=0,
    )
    with install(router, strategy="quality-optimal"):
        assert {served_by(await router.acompletion(model="g", messages=MESSAGES)) for _ in range(3)} == {"live"}
        assert served_by(router.completion(model="g", messages=MESSAGES)) == "live"
