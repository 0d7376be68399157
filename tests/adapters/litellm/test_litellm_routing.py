"""The installed strategy decides which deployment LiteLLM calls (real Router, simulated providers over HTTP)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import litellm
import pytest
from litellm.types.router import RouterRateLimitError
from litellm_support import MESSAGES, async_wait_until, deployment, mock_deployment, served_by
from pi_builder_middleware.adapters.litellm import install
from pi_builder_middleware.testing import Behaviour, Latency, SimOutcome, SimProvider

from pi_builder_middleware import (
    CircuitState,
    ConfigError,
    ErrorKind,
    FailoverConfig,
    ManualClock,
    Middleware,
    NoProviderAvailableError,
    Outcome,
    RoutingConfig,
)


def sim_router(sim: Any, names: list[str], **kwargs: Any) -> litellm.Router:
    settings: dict[str, Any] = {"num_retries": 0, "retry_after": 0, "disable_cooldowns": True} | kwargs
    return litellm.Router(model_list=[deployment(sim, n) for n in names], **settings)


async def test_latency_optimal_sends_most_traffic_to_the_fastest_provider(make_sim) -> None:
    sim = make_sim(
        SimProvider(name="fast", behaviour=Behaviour(latency=Latency.fixed(2))),
        SimProvider(name="mid", behaviour=Behaviour(latency=Latency.fixed(60))),
        SimProvider(name="slow", behaviour=Behaviour(latency=Latency.fixed(150))),
    )
    router = sim_router(sim, ["fast", "mid", "slow"])
    with install(router, strategy="latency-optimal", seed=1) as handle:
        # Warm-up: the first call to each deployment pays for its HTTP client and connection; forget those.
        for _ in range(6):
            await router.acompletion(model="g", messages=MESSAGES)
        await async_wait_until(lambda: handle.stats().get("recorded_ok", 0) == 6)
        handle.middleware.reset()
        sim.reset_stats()
        picks = Counter()
        for _ in range(30):
            picks[served_by(await router.acompletion(model="g", messages=MESSAGES))] += 1
        # Power of two choices (the better of two random candidates): the fastest takes about 2/3.
        assert picks["fast"] >= 12 and picks["fast"] > picks["mid"] and picks["fast"] > picks["slow"], picks
        assert sim.stats("fast").total == picks["fast"]  # the pick is what was really called
        await async_wait_until(lambda: handle.stats().get("recorded_ok", 0) == 36)
        h = {n: handle.middleware.health(n) for n in ("fast", "mid", "slow")}
        assert h["fast"].latency_p50_ms < h["mid"].latency_p50_ms < h["slow"].latency_p50_ms
        assert handle.middleware.stats()["router"]["preferred_provider"] == "fast"


async def test_cost_optimal_picks_the_cheapest_deployment(make_sim) -> None:
    sim = make_sim(SimProvider(name="pricey"), SimProvider(name="cheap"), SimProvider(name="middle"))
    prices = {"pricey": 1e-5, "cheap": 1e-7, "middle": 1e-6}
    router = litellm.Router(
        model_list=[deployment(sim, n, input_cost_per_token=p, output_cost_per_token=p * 4) for n, p in prices.items()],
        num_retries=0,
    )
    with install(router, strategy="cost-optimal"):
        served = {served_by(await router.acompletion(model="g", messages=MESSAGES)) for _ in range(8)}
    assert served == {"cheap"}
    assert sim.stats("cheap").total == 8 and sim.stats("pricey").total == sim.stats("middle").total == 0


async def test_cost_optimal_uses_litellms_price_map(make_sim) -> None:
    sim = make_sim(
        SimProvider(name="gpt-4o", models=("gpt-4o",)), SimProvider(name="gpt-4o-mini", models=("gpt-4o-mini",))
    )
    model_list = [
        {
            "model_name": "g",
            "model_info": {"id": n},
            "litellm_params": {"model": f"openai/{n}", "api_key": "sk-fake", "api_base": sim.base_url(n)},
        }
        for n in ("gpt-4o", "gpt-4o-mini")
    ]
    router = litellm.Router(model_list=model_list, num_retries=0)
    with install(router, strategy="cost-optimal") as handle:
        for _ in range(3):
            assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "gpt-4o-mini"
        await async_wait_until(lambda: handle.middleware.health("gpt-4o-mini").calls == 3)
        assert handle.middleware.health("gpt-4o-mini").cost_total > 0  # LiteLLM's response_cost


async def test_quality_optimal_and_per_request_strategy(make_sim) -> None:
    sim = make_sim(SimProvider(name="smart"), SimProvider(name="cheap"))
    router = litellm.Router(
        model_list=[
            deployment(sim, "smart", quality=0.95, input_cost_per_token=1e-5),
            deployment(sim, "cheap", quality=0.4, input_cost_per_token=1e-7),
        ],
        num_retries=0,
    )
    with install(router, strategy="quality-optimal"):
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "smart"
        options = {"pi_builder_middleware": {"strategy": "cost-optimal"}}
        response = await router.acompletion(model="g", messages=MESSAGES, metadata=options)
        assert served_by(response) == "cheap"


async def test_required_capabilities_are_a_hard_constraint() -> None:
    router = litellm.Router(
        model_list=[
            mock_deployment("plain", quality=0.9, capabilities=["tools"], supports_vision=False),
            mock_deployment("eyes", quality=0.3, capabilities=["vision"]),
        ],
        num_retries=0,
    )
    with install(router, strategy="quality-optimal"):
        need = {"pi_builder_middleware": {"required_capabilities": ["vision"]}}
        assert served_by(await router.acompletion(model="g", messages=MESSAGES, metadata=need)) == "eyes"
        impossible = {"pi_builder_middleware": {"required_capabilities": ["teleport"]}}
        with pytest.raises(NoProviderAvailableError, match="missing capabilities: teleport"):
            await router.acompletion(model="g", messages=MESSAGES, metadata=impossible)


async def test_when_every_candidate_is_out_the_call_goes_to_the_soonest_readmission() -> None:
    """All breakers open: the middleware's all-out decision sends the call to the deployment back soonest, as
    its trial call; its success closes that breaker and routing carries on from there."""
    router = litellm.Router(
        model_list=[mock_deployment("a", answer="from a"), mock_deployment("b", answer="from b")], num_retries=0
    )
    clock = ManualClock(0.0)
    no_jitter = FailoverConfig.preset("aggressive", jitter=0.0)
    with install(router, strategy="latency-optimal", failover=no_jitter, clock=clock) as handle:
        mw = handle.middleware
        for pid in ("b", "a"):  # b trips first, so it is re-admitted first
            for _ in range(2):  # aggressive: 2 consecutive failures trip the breaker
                mw.record(Outcome(pid, False, 0.01, error_kind=ErrorKind.SERVER_ERROR))
            assert mw.failover.unavailable_reason(pid) is not None
            clock.advance(0.5)
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "b"
        await async_wait_until(lambda: mw.failover.state("b") is CircuitState.CLOSED)
        for _ in range(5):
            assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "b"
        assert handle.stats()["panic_picks"] == 1
        assert handle.stats()["fallback_picks"] == 0
        assert mw.failover.state("a") is CircuitState.OPEN


async def test_when_the_middleware_fails_all_out_requests_go_to_the_soonest_readmission() -> None:
    """RoutingConfig(when_all_out="fail"): we still do not fail the call ourselves; it goes to the deployment
    of LiteLLM's list that the middleware re-admits soonest (not a random one)."""
    router = litellm.Router(
        model_list=[mock_deployment("a", answer="from a"), mock_deployment("b", answer="from b")], num_retries=0
    )
    clock = ManualClock()
    mw = Middleware(
        strategy="latency-optimal",
        failover=FailoverConfig.preset("aggressive", jitter=0.0),
        routing=RoutingConfig(when_all_out="fail"),
        clock=clock,
    )
    with install(router, middleware=mw) as handle:
        for pid in ("b", "a"):  # b is ejected first, so it is back first
            for _ in range(2):
                mw.record(Outcome(pid, False, 0.01, error_kind=ErrorKind.SERVER_ERROR))
            assert mw.failover.unavailable_reason(pid) is not None
            clock.advance(0.5)
        assert mw.failover.available_at("b") < mw.failover.available_at("a")
        with pytest.raises(NoProviderAvailableError):
            mw.select()
        served = Counter()
        for _ in range(5):
            response = await router.acompletion(model="g", messages=MESSAGES)
            served[served_by(response)] += 1
        assert served == {"b": 5}  # every call succeeded, at the soonest re-admission
        assert handle.stats()["fallback_picks"] >= 1 and handle.stats()["panic_picks"] == 0


async def test_a_retry_prefers_an_available_tried_deployment_to_an_untried_one_that_is_out(make_sim) -> None:
    sim = make_sim(
        SimProvider(name="flaky", behaviour=Behaviour.failing(SimOutcome.SERVER_ERROR)), SimProvider(name="out")
    )
    router = sim_router(sim, ["flaky", "out"], num_retries=1)
    with install(router, strategy="latency-optimal", failover="aggressive") as handle:
        mw = handle.middleware
        for _ in range(2):
            mw.record(Outcome("out", False, 0.01, error_kind=ErrorKind.SERVER_ERROR))
        assert mw.failover.unavailable_reason("out") is not None
        with pytest.raises(litellm.InternalServerError):
            await router.acompletion(model="g", messages=MESSAGES)
        assert sim.stats("flaky").total == 2 and sim.stats("out").total == 0
        assert handle.stats()["panic_picks"] == 0


async def test_open_breaker_is_filtered_out_but_the_rest_still_route() -> None:
    router = litellm.Router(
        model_list=[
            mock_deployment("a", quality=0.9),
            mock_deployment("b", quality=0.5),
            mock_deployment("c", quality=0.1),
        ],
        num_retries=0,
    )
    with install(router, strategy="quality-optimal", failover="aggressive") as handle:
        for _ in range(2):
            handle.middleware.record(Outcome("a", False, 0.01, error_kind=ErrorKind.SERVER_ERROR))
        for _ in range(4):
            assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "b"
        assert handle.stats()["filtered_out"] == 4 + handle.stats()["auto_checks"]  # + the pick comparing sources
        assert handle.stats().get("fallback_picks", 0) == 0


def test_sync_completion_is_routed_too(make_sim) -> None:
    sim = make_sim(SimProvider(name="cheap"), SimProvider(name="pricey"))
    router = litellm.Router(
        model_list=[
            deployment(sim, "cheap", input_cost_per_token=1e-7),
            deployment(sim, "pricey", input_cost_per_token=1e-5),
        ],
        num_retries=0,
    )
    with install(router, strategy="cost-optimal") as handle:
        for _ in range(3):
            assert served_by(router.completion(model="g", messages=MESSAGES)) == "cheap"
        assert handle.stats()["picks"] == 3
    assert sim.stats("cheap").total == 3


async def test_litellms_own_filters_still_apply_order_and_tags() -> None:
    """Default candidates are LiteLLM's healthy list: `order` priority groups and tag filtering hold."""
    primary, backup = mock_deployment("primary", quality=0.1), mock_deployment("backup", quality=0.9)
    primary["litellm_params"]["order"], backup["litellm_params"]["order"] = 1, 2
    router = litellm.Router(model_list=[primary, backup], num_retries=0)
    with install(router, strategy="quality-optimal"):
        assert {served_by(await router.acompletion(model="g", messages=MESSAGES)) for _ in range(3)} == {"primary"}

    eu, us = mock_deployment("eu", quality=0.1), mock_deployment("us", quality=0.9)
    eu["litellm_params"]["tags"], us["litellm_params"]["tags"] = ["eu"], ["us"]
    router = litellm.Router(model_list=[eu, us], num_retries=0, enable_tag_filtering=True)
    with install(router, strategy="quality-optimal"):
        tagged = {"tags": ["eu"]}
        assert {
            served_by(await router.acompletion(model="g", messages=MESSAGES, metadata=tagged)) for _ in range(3)
        } == {"eu"}
        assert served_by(await router.acompletion(model="g", messages=MESSAGES, metadata={"tags": ["us"]})) == "us"


async def test_specific_deployment_calls_go_to_that_deployment_and_are_recorded() -> None:
    named = mock_deployment("named", quality=0.1)
    named["litellm_params"]["model"] = "openai/gpt-4o"
    router = litellm.Router(model_list=[mock_deployment("best", quality=0.9), named], num_retries=0)
    with install(router, strategy="quality-optimal") as handle:
        response = await router.acompletion(model="openai/gpt-4o", messages=MESSAGES, specific_deployment=True)
        assert served_by(response) == "named"
        assert (
            served_by(router.completion(model="openai/gpt-4o", messages=MESSAGES, specific_deployment=True)) == "named"
        )
        with pytest.raises(litellm.RouterRateLimitError):
            router.completion(model="openai/no-such", messages=MESSAGES, specific_deployment=True)
        await async_wait_until(lambda: handle.middleware.health("named").calls == 2)
        assert handle.middleware.health("best").calls == 0


class SleepLog:
    """An injected async sleep that only moves ``clock`` and remembers how long it was asked to sleep."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)


def two_ejected_deployments(max_wait_s: float, gap_s: float) -> tuple[Any, Middleware, SleepLog, ManualClock]:
    """Router with deployments a and b, both tripped (b ``gap_s`` before a), installed with ``max_wait_s``."""
    clock = ManualClock(10.0)
    sleep = SleepLog(clock)
    mw = Middleware(
        strategy="failover",
        failover=FailoverConfig.preset("aggressive", base_ejection_s=5.0, jitter=0.0),
        clock=clock,
        async_sleep=sleep,
        load_entrypoints=False,
    )
    router = litellm.Router(
        model_list=[mock_deployment("a", answer="from a"), mock_deployment("b", answer="from b")], num_retries=0
    )
    handle = install(router, middleware=mw, max_wait_s=max_wait_s)
    for pid in ("b", "a"):  # b trips first: its ejection ends first
        for _ in range(2):
            mw.record(Outcome(pid, False, 0.01, error_kind=ErrorKind.SERVER_ERROR))
        clock.advance(gap_s)
    return handle, mw, sleep, clock


async def test_max_wait_s_waits_for_the_soonest_readmission_instead_of_forcing_one() -> None:
    """Every breaker open: with ``max_wait_s`` the pick sleeps until the first re-admission, then routes."""
    handle, mw, sleep, _ = two_ejected_deployments(max_wait_s=6.0, gap_s=1.0)
    with handle:
        router = handle.router
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "b"
        assert sleep.slept == pytest.approx([3.0])  # b was out until 15.0; it is 12.0
        assert handle.stats()["waits"] == 1 and handle.stats()["panic_picks"] == 0
        # LiteLLM logs the success in a background task; then b's trial has closed its breaker
        await async_wait_until(lambda: mw.failover.state("b") is CircuitState.CLOSED)
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "b"
        assert len(sleep.slept) == 1  # b is in service now: nothing more to wait for


async def test_max_wait_s_shorter_than_the_outage_sends_to_the_soonest_at_once() -> None:
    handle, _, sleep, _ = two_ejected_deployments(max_wait_s=1.0, gap_s=0.5)  # b back at 15.0, a at 15.5
    with handle:
        assert served_by(await handle.router.acompletion(model="g", messages=MESSAGES)) == "b"  # 4 s away: not waited
        assert sleep.slept == []
        assert handle.stats()["panic_picks"] == 1


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "5", True])
def test_max_wait_s_must_be_a_finite_number(bad: object) -> None:
    router = litellm.Router(model_list=[mock_deployment("a")], num_retries=0)
    with pytest.raises(ConfigError, match="max_wait_s"):
        install(router, max_wait_s=bad)  # type: ignore[arg-type]


async def test_max_wait_s_does_not_spin_on_a_deployment_that_is_already_back() -> None:
    """A deployment still listed as suspect but back in service: no sleep, however the clock ticks."""

    class Ticking(ManualClock):
        def __call__(self) -> float:  # every reading is a microsecond later, like a real clock
            return self.advance(1e-6)

    clock = Ticking(10.0)
    sleep = SleepLog(clock)

    mw = Middleware(strategy="failover", clock=clock, async_sleep=sleep, load_entrypoints=False)
    router = litellm.Router(model_list=[mock_deployment("a", answer="from a")], num_retries=0)
    with install(router, middleware=mw, max_wait_s=5.0) as handle:
        mw.record(Outcome("a", False, 0.01, error_kind=ErrorKind.RATE_LIMITED, retry_after_s=0.5))
        assert "a" in mw.failover.suspects
        clock.advance(1.0)  # the cooldown is over; "a" is still listed until a pick settles it
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "a"
        assert sleep.slept == [] and handle.stats()["waits"] == 0


async def test_a_no_limit_max_tokens_is_clamped_to_the_token_bound_not_refused() -> None:
    from pi_builder_middleware import MAX_TOKENS

    router = litellm.Router(model_list=[mock_deployment("x"), mock_deployment("y")], num_retries=0)
    with install(router) as handle:
        # 2**31 - 1 is a common "no limit" sentinel; the route request must not fail on MAX_TOKENS.
        response = await router.acompletion(model="g", messages=MESSAGES, max_tokens=2**31 - 1)
        assert response.choices[0].message.content
        assert handle.middleware.router.history[-1].provider.id in ("x", "y")
    assert MAX_TOKENS < 2**31 - 1


async def test_retries_stop_once_every_deployment_of_the_group_is_out(make_sim) -> None:
    """A request that already failed in its group is not sent again when every deployment is ejected:
    LiteLLM's retries do not multiply into a dead group (plain LiteLLM makes 1 + num_retries attempts)."""
    sim = make_sim(
        SimProvider(name="a", behaviour=Behaviour.failing(SimOutcome.SERVICE_UNAVAILABLE)),
        SimProvider(name="b", behaviour=Behaviour.failing(SimOutcome.SERVICE_UNAVAILABLE)),
    )
    router = sim_router(sim, ["a", "b"], num_retries=4)
    failover = FailoverConfig.preset("aggressive", consecutive_failures=1, base_ejection_s=30.0)
    with install(router, strategy="latency-optimal", failover=failover) as handle:
        with pytest.raises(RouterRateLimitError) as raised:  # LiteLLM's own "every deployment is cooling down"
            await router.acompletion(model="g", messages=MESSAGES)
        assert "'a'" in str(raised.value) and "'b'" in str(raised.value)
        mw = handle.middleware
        soonest = min(mw.failover.available_at(pid) for pid in ("a", "b")) - mw.clock()
        assert raised.value.cooldown_time > 0 and abs(raised.value.cooldown_time - soonest) < 1.0  # the wait for it
        assert sim.stats("a").total + sim.stats("b").total == 2  # each deployment once, then no more attempts
        assert handle.stats()["retries_declined"] >= 1
