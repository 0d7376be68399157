"""On LiteLLM before 1.109 the installed strategy decides which deployment is called (real HTTP simulator)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import litellm
from litellm_support import MESSAGES, async_wait_until, deployment, served_by
from pi_builder_middleware.adapters.litellm import install
from pi_builder_middleware.testing import Behaviour, Latency, SimProvider


def sim_router(sim: Any, names: list[str], **kwargs: Any) -> litellm.Router:
    settings: dict[str, Any] = {"num_retries": 0, "retry_after": 0, "disable_cooldowns": True} | kwargs
    return litellm.Router(model_list=[deployment(sim, n) for n in names], **settings)


async def test_latency_optimal_sends_most_traffic_to_the_fastest_deployment(make_sim) -> None:
    sim = make_sim(
        SimProvider(name="fast", behaviour=Behaviour(latency=Latency.fixed(2))),
        SimProvider(name="mid", behaviour=Behaviour(latency=Latency.fixed(25))),
        SimProvider(name="slow", behaviour=Behaviour(latency=Latency.fixed(50))),
    )
    router = sim_router(sim, ["fast", "mid", "slow"])
    with install(router, strategy="latency-optimal") as handle:
        # Warm-up: the first call to each deployment pays for its HTTP client and connection; forget those.
        for _ in range(6):
            await router.acompletion(model="g", messages=MESSAGES)
        await async_wait_until(lambda: handle.stats().get("recorded_ok", 0) == 6)
        handle.middleware.reset()
        sim.reset_stats()
        picks: Counter[str] = Counter()
        for i in range(60):
            picks[served_by(await router.acompletion(model="g", messages=MESSAGES))] += 1
            # LiteLLM before 1.109 reports outcomes from its logging worker, a moment after the call returns:
            # wait for each, so the next pick knows it (on a busy machine the lag let "slow", still unmeasured
            # and costed like the best, take more than its warm-up calls)
            await async_wait_until(lambda n=i: handle.stats().get("recorded_ok", 0) == 7 + n)
        # power of two choices: the fastest wins every pair it is in (about 2/3 of the calls once each
        # deployment has its 3 warm-up calls); the slowest gets its warm-up calls (costed like the best
        # until measured) and a few more
        assert picks["fast"] >= 30 and picks.most_common(1)[0][0] == "fast" and picks["slow"] <= 12, picks
        assert sim.stats("fast").total == picks["fast"]  # the pick is what was really called
        await async_wait_until(lambda: handle.stats().get("recorded_ok", 0) == 66)
        h = {n: handle.middleware.health(n) for n in ("fast", "mid", "slow")}
        assert h["fast"].latency_p50_ms < h["mid"].latency_p50_ms < h["slow"].latency_p50_ms
        assert handle.stats()["picks"] == 66


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


def test_sync_completion_is_routed_and_recorded(make_sim) -> None:
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
        from litellm_support import wait_until

        wait_until(lambda: handle.middleware.health("cheap").successes == 3)  # LiteLLM logs sync calls on a thread
    assert sim.stats("cheap").total == 3 and sim.stats("pricey").total == 0


async def test_per_request_strategy_option_is_honoured(make_sim) -> None:
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
        assert served_by(await router.acompletion(model="g", messages=MESSAGES, metadata=options)) == "cheap"
