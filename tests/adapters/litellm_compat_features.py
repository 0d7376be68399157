"""Compatibility: LiteLLM's routing features behave the same on a plain Router and an installed one.

Each scenario runs on a real ``litellm.Router``, once plain and once with the middleware installed
(``mode``), against the provider simulator over HTTP on 127.0.0.1 (failures, retries, fallbacks, cooldowns,
streams) or ``mock_response`` deployments where LiteLLM's own offline router tests use them (tags, ``order``,
rpm limits, context-window pre-call checks, provider budgets). The installed router must honour what the plain one does.

Shared by both LiteLLM suites: ``NARROWING_CASES`` run on LiteLLM >= 1.110 only (on 1.80-1.108 the custom
strategy replaces the pick that applies tags, ``order``, pre-call checks and usage limits; README, *LiteLLM
versions*), ``FAILURE_CASES`` on every supported version.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import litellm
import pytest
from litellm.types.router import RetryPolicy
from litellm_support import MESSAGES, deployment, mock_deployment, served_by
from pi_builder_middleware.adapters.litellm import install, installed
from pi_builder_middleware.testing import Behaviour, SimOutcome, SimProvider

NARROWING_CASES = [
    "test_a_provider_over_its_budget_gets_no_more_traffic",
    "test_tag_filtering_sends_a_tagged_request_to_its_tag",
    "test_order_groups_use_the_first_order_while_it_is_healthy",
    "test_rpm_limits_with_pre_call_checks_keep_a_full_deployment_out",
    "test_usage_based_routing_v2_limits_keep_a_full_deployment_out",
    "test_usage_based_routing_v2_with_every_deployment_full_answers_its_rate_limit_error",
    "test_pre_call_checks_leave_out_a_deployment_whose_context_window_is_too_small",
]
FAILURE_CASES = [
    "test_num_retries_retries_a_failing_group",
    "test_a_retry_policy_overrides_num_retries_per_error",
    "test_fallbacks_answer_from_the_fallback_group",
    "test_context_window_and_content_policy_fallbacks",
    "test_a_fallback_kind_does_not_handle_other_errors",
    "test_cooldowns_take_a_failing_deployment_out",
    "test_a_stream_falls_back_when_the_group_fails_before_the_first_chunk",
]
__all__ = ["build", *NARROWING_CASES, *FAILURE_CASES]


@pytest.fixture(params=["plain", "installed"])
def build(request: pytest.FixtureRequest, room_for_router_callbacks: None) -> Iterator[Any]:
    handles: list[Any] = []
    routers: list[litellm.Router] = []

    def factory(*deployments: dict[str, Any], **settings: Any) -> litellm.Router:
        settings.setdefault("num_retries", 0)
        router = litellm.Router(model_list=list(deployments), **settings)
        routers.append(router)
        if request.param == "installed":
            handles.append(install(router, strategy="latency-optimal", seed=7))
        return router

    yield factory
    for handle in handles:
        handle.uninstall()
    for router in routers:
        # LiteLLM keeps a router's strategy selectors (usage-based-routing-v2's counters and pre-call check) in
        # its process-wide callbacks, where they would check later tests' deployments of the same ids.
        retire = getattr(router, "retire", None) or getattr(router, "discard", None)
        if callable(retire):
            retire()


async def _served(router: litellm.Router, n: int, **kwargs: Any) -> Counter[str]:
    """Who answered ``n`` calls to group ``g`` (an error counts under its type)."""
    kwargs.setdefault("messages", MESSAGES)
    served: Counter[str] = Counter()
    for _ in range(n):
        try:
            served[served_by(await router.acompletion(model="g", **kwargs))] += 1
        except Exception as exc:
            served[f"error {type(exc).__name__}"] += 1
    return served


def _served_sync(router: litellm.Router, n: int) -> Counter[str]:
    """:func:`_served` through the sync ``Router.completion``."""
    served: Counter[str] = Counter()
    for _ in range(n):
        try:
            served[served_by(router.completion(model="g", messages=MESSAGES))] += 1
        except Exception as exc:
            served[f"error {type(exc).__name__}"] += 1
    return served


async def _in_one_minute() -> None:
    """Wait for the next UTC minute if this one is nearly over: LiteLLM's rpm/tpm counters start again with
    each minute (``<id>:<model>:rpm:<HH-MM>``), so a case that fills one must run within a single minute."""
    left = 60.0 - time.time() % 60.0
    if left < 5.0:
        await asyncio.sleep(left + 0.1)


def _release() -> tuple[int, int]:
    major, minor = version("litellm").split(".")[:2]
    return int(major), int(minor)


def _with(d: dict[str, Any], **params: Any) -> dict[str, Any]:
    d["litellm_params"].update(params)
    return d


# -- candidates LiteLLM narrows ------------------------------------------------------------------------


async def test_tag_filtering_sends_a_tagged_request_to_its_tag(build) -> None:
    router = build(
        _with(mock_deployment("free"), tags=["free"]),
        _with(mock_deployment("paid"), tags=["paid"]),
        enable_tag_filtering=True,
    )
    assert await _served(router, 6, metadata={"tags": ["paid"]}) == {"paid": 6}
    assert await _served(router, 6, metadata={"tags": ["free"]}) == {"free": 6}


async def test_order_groups_use_the_first_order_while_it_is_healthy(build) -> None:
    router = build(_with(mock_deployment("first"), order=1), _with(mock_deployment("second"), order=2))
    assert await _served(router, 8) == {"first": 8}


async def test_rpm_limits_with_pre_call_checks_keep_a_full_deployment_out(build) -> None:
    router = build(
        _with(mock_deployment("limited"), rpm=1),
        _with(mock_deployment("roomy"), rpm=1000),
        enable_pre_call_checks=True,
        routing_strategy="usage-based-routing-v2",
    )
    await _in_one_minute()
    served = await _served(router, 8)
    assert served["limited"] <= 1 and served["roomy"] >= 7 and sum(served.values()) == 8


LONG = [{"role": "user", "content": "word " * 40}]  # some 45 tokens as LiteLLM counts them


@pytest.mark.parametrize("limit", ["rpm", "rpm in model_info", "tpm", "rpm, sync calls"])
async def test_usage_based_routing_v2_limits_keep_a_full_deployment_out(build, limit: str) -> None:
    """The pick honours v2's rpm/tpm counters: on the healthy list (rpm/tpm in ``litellm_params`` narrow it),
    on the group (rpm in ``model_info`` does not), on the sync path; v2 enforces no tpm on its own there."""
    limited, roomy = mock_deployment("limited"), mock_deployment("roomy")
    if limit == "rpm in model_info":
        limited["model_info"]["rpm"] = 1
    elif limit == "tpm":  # full for any request of LONG's size, whatever the minute's counters say
        _with(limited, tpm=10)
        _with(roomy, tpm=1_000_000)
    else:
        _with(limited, rpm=1)
        _with(roomy, rpm=1000)
    router = build(limited, roomy, routing_strategy="usage-based-routing-v2")
    await _in_one_minute()
    if limit == "tpm":
        assert await _served(router, 8, messages=LONG) == {"roomy": 8}
        return
    served = _served_sync(router, 8) if limit.endswith("sync calls") else await _served(router, 8)
    assert served["limited"] <= 1 and served["roomy"] >= 7 and sum(served.values()) == 8
    handle = installed(router)
    if handle is not None and handle.strategy is not None and limit == "rpm in model_info":
        assert handle.strategy.auto_status()["g"]["fast"]  # picked from the group, not LiteLLM's healthy list


async def test_usage_based_routing_v2_with_every_deployment_full_answers_its_rate_limit_error(build) -> None:
    router = build(
        _with(mock_deployment("a"), rpm=1),
        _with(mock_deployment("b"), rpm=1),
        routing_strategy="usage-based-routing-v2",
    )
    await _in_one_minute()
    # each serves its one request of the minute, then v2's own "no deployments available" RateLimitError
    # (not a pick into a full deployment, whose pre-call check would fail it and cool it down)
    assert await _served(router, 6) == {"a": 1, "b": 1, "error RateLimitError": 4}


async def test_pre_call_checks_leave_out_a_deployment_whose_context_window_is_too_small(build) -> None:
    small = _with(mock_deployment("small", max_input_tokens=5), model="openai/gpt-3.5-turbo")
    big = mock_deployment("big", max_input_tokens=100_000)
    router = build(small, big, enable_pre_call_checks=True)
    long = [{"role": "user", "content": "word " * 200}]
    assert await _served(router, 5, messages=long) == {"big": 5}


async def test_a_provider_over_its_budget_gets_no_more_traffic(build) -> None:
    cheap = _with(
        mock_deployment("oa"), model="openai/gpt-4o-mini", input_cost_per_token=1e-9, output_cost_per_token=1e-9
    )
    pricey = _with(
        mock_deployment("an"),
        model="anthropic/claude-3-haiku-20240307",
        input_cost_per_token=1e-6,
        output_cost_per_token=1e-6,
    )
    router = build(cheap, pricey, provider_budget_config={"openai": {"budget_limit": 1e-12, "time_period": "1d"}})
    limiter = router.registry().plugins("budget_limiter")
    try:
        assert served_by(await router.acompletion(model="oa", messages=MESSAGES)) == "oa"  # spends openai's budget
        # LiteLLM books the spend in a background task: wait (bounded) until its budget filter sees it
        deadline = asyncio.get_running_loop().time() + 10.0
        while [
            d["model_info"]["id"]
            for d in await limiter.async_filter_deployments(
                model="g", healthy_deployments=list(router.registry().deployments("g")), messages=MESSAGES
            )
        ] != ["an"]:
            assert asyncio.get_running_loop().time() < deadline, "the spend was never booked"
            await asyncio.sleep(0.05)
        assert await _served(router, 6) == {"an": 6}  # the cheaper openai deployment is over budget
    finally:  # LiteLLM leaves the limiter in its process-wide callbacks, where it would filter other routers
        litellm.logging_callback_manager.remove_callback_from_all_lists(limiter)


# -- failures: retries, retry policies, fallbacks, cooldowns (real HTTP) -----------------------------


def _sim_deployment(sim: Any, name: str, group: str = "g") -> dict[str, Any]:
    return deployment(sim, name, group)


async def test_num_retries_retries_a_failing_group(build, make_sim) -> None:
    sim = make_sim(SimProvider(name="bad", behaviour=Behaviour.failing(SimOutcome.SERVER_ERROR)))
    router = build(_sim_deployment(sim, "bad"), num_retries=2, retry_after=0)
    with pytest.raises(litellm.InternalServerError):
        await router.acompletion(model="g", messages=MESSAGES)
    assert sim.stats("bad").total == 3  # the first attempt and two retries, on both


async def test_a_retry_policy_overrides_num_retries_per_error(build, make_sim) -> None:
    sim = make_sim(SimProvider(name="bad", behaviour=Behaviour.failing(SimOutcome.SERVER_ERROR)))
    settings: dict[str, Any] = {
        "num_retries": 3,
        "retry_after": 0,
        "retry_policy": RetryPolicy(InternalServerErrorRetries=1),
    }
    reference = litellm.Router(model_list=[_sim_deployment(sim, "bad")], **settings)  # plain, for comparison
    with pytest.raises(litellm.InternalServerError):
        await reference.acompletion(model="g", messages=MESSAGES)
    expected = sim.stats("bad").total
    if _release() >= (1, 108):
        assert expected == 2  # the policy's one retry, not num_retries' three (1.80 applies num_retries here)
    sim.provider("bad").reset_stats()
    router = build(_sim_deployment(sim, "bad"), **settings)
    with pytest.raises(litellm.InternalServerError):
        await router.acompletion(model="g", messages=MESSAGES)
    assert sim.stats("bad").total == expected


async def test_fallbacks_answer_from_the_fallback_group(build, make_sim) -> None:
    sim = make_sim(
        SimProvider(name="down", behaviour=Behaviour.failing(SimOutcome.SERVICE_UNAVAILABLE)),
        SimProvider(name="backup"),
    )
    router = build(
        _sim_deployment(sim, "down"), _sim_deployment(sim, "backup", "backup"), fallbacks=[{"g": ["backup"]}]
    )
    assert await _served(router, 3) == {"backup": 3}


@pytest.mark.parametrize(
    ("outcome", "setting"),
    [(SimOutcome.CONTEXT_LENGTH, "context_window_fallbacks"), (SimOutcome.CONTENT_POLICY, "content_policy_fallbacks")],
)
async def test_context_window_and_content_policy_fallbacks(build, make_sim, outcome: SimOutcome, setting: str) -> None:
    sim = make_sim(SimProvider(name="picky", behaviour=Behaviour.failing(outcome)), SimProvider(name="other"))
    router = build(
        _sim_deployment(sim, "picky"), _sim_deployment(sim, "other", "other"), **{setting: [{"g": ["other"]}]}
    )
    assert await _served(router, 3) == {"other": 3}


async def test_a_fallback_kind_does_not_handle_other_errors(build, make_sim) -> None:
    sim = make_sim(
        SimProvider(name="picky", behaviour=Behaviour.failing(SimOutcome.CONTENT_POLICY)), SimProvider(name="other")
    )
    router = build(
        _sim_deployment(sim, "picky"),
        _sim_deployment(sim, "other", "other"),
        context_window_fallbacks=[{"g": ["other"]}],
    )
    served = await _served(router, 2)
    assert "other" not in served and sum(served.values()) == 2


async def test_cooldowns_take_a_failing_deployment_out(build, make_sim) -> None:
    sim = make_sim(
        SimProvider(name="bad", behaviour=Behaviour.failing(SimOutcome.SERVER_ERROR)), SimProvider(name="good")
    )
    router = build(_sim_deployment(sim, "bad"), _sim_deployment(sim, "good"), allowed_fails=0, cooldown_time=60)
    served = await _served(router, 10)
    assert served["good"] >= 9 and sim.stats("bad").total <= 1


async def test_a_stream_falls_back_when_the_group_fails_before_the_first_chunk(build, make_sim) -> None:
    sim = make_sim(
        SimProvider(name="down", behaviour=Behaviour.failing(SimOutcome.SERVICE_UNAVAILABLE)),
        SimProvider(name="backup"),
    )
    router = build(
        _sim_deployment(sim, "down"), _sim_deployment(sim, "backup", "backup"), fallbacks=[{"g": ["backup"]}]
    )
    for _ in range(3):
        stream = await router.acompletion(model="g", messages=MESSAGES, stream=True)
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
        assert text
    assert sim.stats("backup").total == 3
