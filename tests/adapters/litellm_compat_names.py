"""LiteLLM's routing strategy names, at router level and per request, map onto the middleware's strategies.

Shared by both LiteLLM suites (each has a test module importing these)."""

from __future__ import annotations

import logging
from collections import Counter
from importlib.metadata import version
from typing import Any

import litellm
import pytest
from litellm_support import MESSAGES, async_wait_until, mock_deployment, served_by
from pi_builder_middleware.adapters.litellm import install
from pi_builder_middleware.adapters.litellm._names import LITELLM_STRATEGIES, mapped_strategy

from pi_builder_middleware import ErrorKind, Middleware, Outcome, RouteRequest

__all__ = [
    "test_a_per_request_cost_based_routing_picks_the_cheapest",
    "test_a_per_request_simple_shuffle_uses_health_shuffle",
    "test_a_strategy_without_equivalent_stays_litellms_and_is_logged_once",
    "test_a_users_own_middleware_gets_health_shuffle_too",
    "test_an_explicit_strategy_wins_over_the_routers",
    "test_health_shuffle_weighs_like_simple_shuffle_and_sheds_a_failing_deployment",
    "test_litellms_default_simple_shuffle_maps_to_the_health_aware_shuffle",
    "test_route_true_with_an_unmapped_router_strategy_routes_with_the_middleware",
    "test_router_level_cost_based_routing_picks_the_cheapest",
    "test_router_level_latency_based_routing_maps_to_latency_optimal",
    "test_the_mapping_table",
]


def _release() -> tuple[int, int]:
    major, minor = version("litellm").split(".")[:2]
    return int(major), int(minor)


PRICES = {"pricey": 1e-5, "cheap": 1e-7, "middle": 1e-6}


def priced(pid: str) -> dict[str, Any]:
    d = mock_deployment(pid, answer=f"from {pid}")
    d["litellm_params"].update(input_cost_per_token=PRICES[pid], output_cost_per_token=PRICES[pid])
    return d


def priced_router(**settings: Any) -> litellm.Router:
    return litellm.Router(model_list=[priced(p) for p in PRICES], num_retries=0, **settings)


def test_the_mapping_table() -> None:
    assert mapped_strategy("cost-based-routing") == "cost-optimal"
    assert mapped_strategy("latency-based-routing") == "latency-optimal"
    assert mapped_strategy("simple-shuffle") == "health-shuffle"
    for name in ("usage-based-routing", "usage-based-routing-v2", "least-busy"):
        assert mapped_strategy(name) is None
    assert set(LITELLM_STRATEGIES) == {"simple-shuffle", "cost-based-routing", "latency-based-routing"}


@pytest.mark.parametrize("mode", ["plain", "installed"])
async def test_router_level_cost_based_routing_picks_the_cheapest(mode: str) -> None:
    router = priced_router(routing_strategy="cost-based-routing")
    handle = install(router, seed=1) if mode == "installed" else None
    try:
        served = Counter([served_by(await router.acompletion(model="g", messages=MESSAGES)) for _ in range(8)])
        assert served == {"cheap": 8}
        if handle is not None:
            assert handle.middleware.router.strategy.name == "cost-optimal"
            assert handle.stats()["picks"] == 8
    finally:
        if handle is not None:
            handle.uninstall()


async def test_router_level_latency_based_routing_maps_to_latency_optimal() -> None:
    router = priced_router(routing_strategy="latency-based-routing")
    with install(router) as handle:
        assert handle.middleware.router.strategy.name == "latency-optimal"
        assert handle.strategy is not None


async def test_litellms_default_simple_shuffle_maps_to_the_health_aware_shuffle() -> None:
    router = priced_router()  # routing_strategy left at LiteLLM's default, simple-shuffle
    with install(router) as handle:
        assert handle.middleware.router.strategy.name == "health-shuffle"
        served = Counter([served_by(await router.acompletion(model="g", messages=MESSAGES)) for _ in range(40)])
        assert sum(served.values()) == 40 and len(served) >= 2, served  # a shuffle, as on a plain router


async def test_an_explicit_strategy_wins_over_the_routers() -> None:
    with install(priced_router(routing_strategy="cost-based-routing"), strategy="quality-optimal") as handle:
        assert handle.middleware.router.strategy.name == "quality-optimal"


@pytest.mark.parametrize("name", ["usage-based-routing-v2", "least-busy"])
async def test_a_strategy_without_equivalent_stays_litellms_and_is_logged_once(name: str, caplog) -> None:
    from pi_builder_middleware.adapters.litellm import _names

    _names._reported.discard(name)
    caplog.set_level(logging.WARNING, logger="pi_builder_middleware.adapters.litellm")
    for _ in range(2):
        with install(priced_router(routing_strategy=name)) as handle:
            assert handle.strategy is None  # LiteLLM keeps picking
    logged = [r for r in caplog.records if name in r.getMessage() and "no equivalent" in r.getMessage()]
    assert len(logged) == 1
    if _release() < (1, 109):
        # route=False on 1.80-1.108 only monitors (README, LiteLLM versions): LiteLLM's own pick there calls no
        # callback filter, and 1.80's usage-based and least-busy handlers need more than a mock call
        return
    router = priced_router(routing_strategy=name)
    with install(router) as handle:
        for _ in range(4):
            await router.acompletion(model="g", messages=MESSAGES)
        await async_wait_until(lambda: handle.stats()["recorded_ok"] == 4)  # every outcome is recorded
        assert handle.stats()["picks"] == 0
        # a deployment whose breaker is open is filtered out of LiteLLM's pick
        for _ in range(5):
            handle.middleware.record(Outcome("cheap", False, 0.01, error_kind=ErrorKind.SERVER_ERROR))
        assert handle.middleware.failover.unavailable_reason("cheap") is not None
        served = Counter([served_by(await router.acompletion(model="g", messages=MESSAGES)) for _ in range(8)])
        assert "cheap" not in served and sum(served.values()) == 8


async def test_route_true_with_an_unmapped_router_strategy_routes_with_the_middleware() -> None:
    with install(priced_router(routing_strategy="least-busy"), route=True) as handle:
        assert handle.strategy is not None


# A plain Router honours a per-request routing_strategy from about 1.81 on (1.80 ignores it: its pick is
# the router's strategy); installed, the mapping applies on every supported LiteLLM.
PER_REQUEST_MODES = ["plain", "installed"] if _release() >= (1, 81) else ["installed"]


@pytest.mark.parametrize("mode", PER_REQUEST_MODES)
async def test_a_per_request_cost_based_routing_picks_the_cheapest(mode: str) -> None:
    router = priced_router()
    handle = install(router, strategy="latency-optimal", seed=1) if mode == "installed" else None
    try:
        served = Counter(
            [
                served_by(await router.acompletion(model="g", messages=MESSAGES, routing_strategy="cost-based-routing"))
                for _ in range(8)
            ]
        )
        assert served == {"cheap": 8}
        if handle is not None:
            per = handle.middleware.stats()["router"]["per_strategy"]
            assert per.get("cost-optimal") == 8
    finally:
        if handle is not None:
            handle.uninstall()


async def test_a_per_request_simple_shuffle_uses_health_shuffle() -> None:
    router = priced_router(routing_strategy="cost-based-routing")
    with install(router, seed=4) as handle:
        served = Counter(
            [
                served_by(await router.acompletion(model="g", messages=MESSAGES, routing_strategy="simple-shuffle"))
                for _ in range(30)
            ]
        )
        assert len(served) == 3  # spread, not the cost-optimal pick
        assert handle.middleware.stats()["router"]["per_strategy"].get("health-shuffle") == 30


async def test_health_shuffle_weighs_like_simple_shuffle_and_sheds_a_failing_deployment() -> None:
    heavy = mock_deployment("heavy", answer="h")
    heavy["litellm_params"]["weight"] = 9
    light = mock_deployment("light", answer="l")
    light["litellm_params"]["weight"] = 1
    router = litellm.Router(model_list=[heavy, light], num_retries=0)
    with install(router, strategy="health-shuffle", seed=5) as handle:
        served = Counter([served_by(await router.acompletion(model="g", messages=MESSAGES)) for _ in range(60)])
        assert served["heavy"] > 3 * served["light"] > 0, served
        mw = handle.middleware
        before = mw.select(RouteRequest(strategy="health-shuffle"), reserve=False).scores
        assert before["light"] == pytest.approx(1 / 9)  # LiteLLM's weights
        mw.record(Outcome("heavy", False, 0.01, error_kind=ErrorKind.SERVER_ERROR))
        assert mw.failover.unavailable_reason("heavy") is None  # not ejected, only shedding
        after = mw.select(RouteRequest(strategy="health-shuffle"), reserve=False).scores
        assert after["light"] > 1.5 * before["light"]  # the failure costs heavy part of its share


async def test_a_users_own_middleware_gets_health_shuffle_too() -> None:
    mw = Middleware(strategy="cost-optimal")
    with install(priced_router(), middleware=mw):
        assert "health-shuffle" in mw.registries.strategies
