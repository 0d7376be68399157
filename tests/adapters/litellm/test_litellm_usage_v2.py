"""The middleware's pick on a ``usage-based-routing-v2`` router honours v2's rpm/tpm counters (``_usage``).

The plain-vs-installed comparisons are in ``tests/adapters/litellm_compat_features.py``; these cases pin what
the filter reads and when. ``strategy="quality-optimal"`` always prefers ``best``, so a pick that did not
know v2's counters would keep landing on it once it is full (and fail in v2's pre-call check).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import litellm
import pytest
from litellm.router_strategy.lowest_tpm_rpm_v2 import LowestTPMLoggingHandler_v2
from litellm_support import MESSAGES, mock_deployment, served_by
from pi_builder_middleware.adapters.litellm import install

V2 = "usage-based-routing-v2"


@pytest.fixture
def routers(room_for_router_callbacks: None) -> Iterator[list[litellm.Router]]:
    """Routers built by the case, retired afterwards (their v2 selectors leave LiteLLM's callbacks)."""
    built: list[litellm.Router] = []
    yield built
    for router in built:
        router.retire()


def _router(routers: list[litellm.Router], *deployments: dict[str, Any], **settings: Any) -> litellm.Router:
    router = litellm.Router(model_list=list(deployments), num_retries=0, **settings)
    routers.append(router)
    return router


def _rpm(deployment: dict[str, Any], rpm: int) -> dict[str, Any]:
    deployment["litellm_params"]["rpm"] = rpm
    return deployment


async def _in_one_minute() -> None:
    """v2's counters start again each UTC minute: run a case that fills one inside a single minute."""
    left = 60.0 - time.time() % 60.0
    if left < 5.0:
        await asyncio.sleep(left + 0.1)


async def test_only_a_usage_based_routing_v2_router_has_its_limits_applied(routers) -> None:
    plain = _router(routers, mock_deployment("a"), mock_deployment("b"))
    v2 = _router(routers, mock_deployment("a"), mock_deployment("b"), routing_strategy=V2)
    with install(plain, strategy="latency-optimal") as on_plain, install(v2, strategy="latency-optimal") as on_v2:
        assert on_plain.strategy is not None and on_v2.strategy is not None
        assert on_plain.strategy._usage.selector() is None
        selector = on_v2.strategy._usage.selector()
        assert isinstance(selector, LowestTPMLoggingHandler_v2) and selector is v2.lowesttpm_logger_v2


async def test_candidates_without_limits_are_passed_through_unread(routers) -> None:
    router = _router(routers, mock_deployment("a"), mock_deployment("b"), routing_strategy=V2)
    with install(router, strategy="latency-optimal") as handle:
        assert handle.strategy is not None
        candidates = list(router.registry().deployments("g"))
        assert await handle.strategy._usage.async_within("g", candidates, MESSAGES, None) is candidates
        assert handle.strategy._usage.within("g", candidates, MESSAGES, None) is candidates


@pytest.mark.parametrize("junk", ["lots", b"\xff", -5, float("nan"), {"n": 1}, [3], True])
async def test_junk_usage_counters_in_the_cache_count_as_zero(routers, junk: object) -> None:
    # The counters come from the router's cache (Redis for a shared one): read like user input, never a crash.
    router = _router(routers, _rpm(mock_deployment("a"), 2), _rpm(mock_deployment("b"), 2), routing_strategy=V2)
    with install(router, strategy="latency-optimal") as handle:
        assert handle.strategy is not None
        candidates = list(router.registry().deployments("g"))
        selector = router.lowesttpm_logger_v2
        tpm_keys, rpm_keys = selector.usage_counter_keys([dict(d) for d in candidates])
        for key in tpm_keys + rpm_keys:
            await selector.router_cache.async_set_cache(key=key, value=junk)
        assert await handle.strategy._usage.async_within("g", candidates, MESSAGES, None) == candidates
        assert handle.strategy._usage.within("g", candidates, MESSAGES, None) == candidates
        full = 2  # a real count at the limit still keeps "a" out
        await selector.router_cache.async_set_cache(key=rpm_keys[0], value=full)
        kept = await handle.strategy._usage.async_within("g", candidates, MESSAGES, None)
        assert [d["model_info"]["id"] for d in kept] == ["b"]


async def _outcome(router: litellm.Router, sync: bool) -> str:
    """Who answered one call to group ``g``, or the error's type and the start of its message."""
    try:
        if sync:
            response = router.completion(model="g", messages=MESSAGES)
        else:
            response = await router.acompletion(model="g", messages=MESSAGES)
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).removeprefix('litellm.RateLimitError: ')[:40]}"
    return served_by(response)


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_the_preferred_deployment_serves_its_rpm_then_the_pick_moves_on(routers, sync: bool) -> None:
    best = _rpm(mock_deployment("best", quality=0.9), 3)
    other = _rpm(mock_deployment("other", quality=0.1), 1000)
    router = _router(routers, best, other, routing_strategy=V2)
    with install(router, strategy="quality-optimal"):
        await _in_one_minute()
        served = Counter([await _outcome(router, sync) for _ in range(8)])
    # v2 keeps a deployment out once one more call would reach its rpm: best serves rpm - 1 calls, and no
    # call fails in v2's pre-call check
    assert served == {"best": 2, "other": 6}


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_every_deployment_full_gets_v2s_own_error(routers, sync: bool) -> None:
    # Another model on the plain router: v2's selectors are process-wide callbacks that count every router's
    # calls by deployment id and model, so the plain router's calls must not fill the installed one's "a".
    other_model = mock_deployment("a")
    other_model["litellm_params"]["model"] = "openai/gpt-4o"
    plain = _router(routers, _rpm(other_model, 1), routing_strategy=V2)
    router = _router(routers, _rpm(mock_deployment("a"), 1), routing_strategy=V2)
    with install(router, strategy="latency-optimal") as handle:
        await _in_one_minute()
        expected = [await _outcome(plain, sync) for _ in range(3)]
        assert expected[0] == "a" and expected[1].startswith(("RateLimitError", "ValueError"))
        plain.retire()  # its v2 selector would check the other router's "a" too (LiteLLM's callbacks are global)
        assert [await _outcome(router, sync) for _ in range(3)] == expected  # async: RateLimitError, sync: ValueError
        assert handle.stats()["picks"] == 1  # the middleware never picked a full deployment
