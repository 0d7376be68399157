"""Every attempt is recorded exactly once, with its numbers; routers in one process stay isolated."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from typing import Any

import litellm
from litellm.integrations.custom_logger import CustomLogger
from litellm_shared_callbacks import test_full_litellm_callback_lists_do_not_silence_the_logger  # noqa: F401
from litellm_support import MESSAGES, OutcomeLog, async_wait_until, deployment, mock_deployment, wait_until
from pi_builder_middleware.adapters.litellm import install
from pi_builder_middleware.testing import Behaviour, Latency, SimOutcome, SimProvider

from pi_builder_middleware import MAX_COST, MAX_LATENCY_S, MAX_TOKENS, ErrorKind, FailoverConfig, Middleware, hookimpl

NEVER_TRIP = FailoverConfig.preset("conservative", consecutive_failures=1000, minimum_calls=1000)


async def test_each_attempt_is_recorded_exactly_once_sync_async_and_streaming(make_sim) -> None:
    sim = make_sim(
        SimProvider(name="bad", behaviour=Behaviour.failing(SimOutcome.SERVER_ERROR)),
        SimProvider(name="good", behaviour=Behaviour(latency=Latency.fixed(2))),
    )
    router = litellm.Router(
        model_list=[deployment(sim, "bad", quality=0.9), deployment(sim, "good", quality=0.1)],
        num_retries=1,
        retry_after=0,
        disable_cooldowns=True,
    )
    log = OutcomeLog()
    with install(router, strategy="failover", failover=NEVER_TRIP, plugins=[log]) as handle:
        for _ in range(4):
            await router.acompletion(model="g", messages=MESSAGES)
        for _ in range(2):
            stream = await router.acompletion(model="g", messages=MESSAGES, stream=True)
            async for _chunk in stream:
                pass
        await asyncio.to_thread(lambda: [router.completion(model="g", messages=MESSAGES) for _ in range(3)])
        sync_stream = await asyncio.to_thread(router.completion, model="g", messages=MESSAGES, stream=True)
        await asyncio.to_thread(lambda: list(sync_stream))
        bad, good = sim.stats("bad").total, sim.stats("good").total
        await async_wait_until(lambda: len(log.items) >= bad + good)
        await asyncio.sleep(0.2)  # would any duplicate still arrive?

        # 10 requests, each answered once by "good"; before that, a failed attempt on "bad" whenever the
        # router tried it first (quality-optimal prefers it, but sheds it while its failures are recent)
        assert good == 10 and bad >= 1
        assert len(log.of("bad")) == bad and all(kind is ErrorKind.SERVER_ERROR for _, kind in log.of("bad"))
        assert len(log.of("good")) == 10 and all(o.ok for o, _ in log.of("good"))
        assert handle.middleware.health("bad").calls == bad and handle.middleware.health("good").calls == 10
        stats = handle.stats()
        assert stats["recorded_failure"] == bad and stats["recorded_ok"] == 10
        assert stats.get("duplicate_events", 0) == 0


async def test_recorded_numbers_latency_tokens_cost_status(make_sim) -> None:
    sim = make_sim(
        SimProvider(name="p", behaviour=Behaviour(latency=Latency.fixed(30), response_tokens=12)),
        SimProvider(name="limited", behaviour=Behaviour.failing(SimOutcome.RATE_LIMIT, retry_after_s=3)),
    )
    router = litellm.Router(
        model_list=[
            deployment(sim, "p", input_cost_per_token=1e-6, output_cost_per_token=2e-6),
            deployment(sim, "limited", group="h"),
        ],
        num_retries=0,
    )
    log = OutcomeLog()
    with install(router, plugins=[log]):
        await router.acompletion(model="g", messages=MESSAGES)
        with contextlib.suppress(litellm.RateLimitError):
            await router.acompletion(model="h", messages=MESSAGES)
        await async_wait_until(lambda: len(log.items) == 2)
    [(ok, _)] = log.of("p")
    assert 0.03 <= ok.latency_s < 2.0
    assert ok.output_tokens == 12 and ok.input_tokens > 0
    assert ok.cost is not None and ok.cost > 0  # LiteLLM's response_cost from the deployment's prices
    [(failed, kind)] = log.of("limited")
    assert kind is ErrorKind.RATE_LIMITED and failed.status_code == 429 and failed.retry_after_s == 3.0
    assert type(failed.error).__name__ == "RateLimitError"


class Capture(CustomLogger):
    """Keeps the kwargs LiteLLM passes to the failure hook (to replay them into our callback)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self.calls.append((kwargs, response_obj, start_time, end_time))


async def test_the_same_attempt_through_several_hooks_counts_once() -> None:
    router = litellm.Router(model_list=[mock_deployment("x", answer="litellm.InternalServerError")], num_retries=0)
    capture = Capture()
    litellm.callbacks.append(capture)
    try:
        with install(router) as handle:
            with contextlib.suppress(litellm.InternalServerError):
                await router.acompletion(model="g", messages=MESSAGES)
            await async_wait_until(lambda: len(capture.calls) == 1 and handle.stats().get("recorded_failure") == 1)
            event = capture.calls[0]
            # the same attempt delivered again, through the async and the sync hook
            await handle.callback.async_log_failure_event(*event)
            handle.callback.log_failure_event(*event)
            assert handle.middleware.health("x").failures == 1
            assert handle.stats()["duplicate_events"] == 2
    finally:
        litellm.callbacks.remove(capture)


async def test_two_routers_in_one_process_stay_isolated(make_sim) -> None:
    sim = make_sim(
        SimProvider(name="a1"),
        SimProvider(name="a2"),
        SimProvider(name="b1"),
        SimProvider(name="b2", behaviour=Behaviour.failing(SimOutcome.SERVER_ERROR)),
    )
    router_a = litellm.Router(model_list=[deployment(sim, "a1"), deployment(sim, "a2")], num_retries=0)
    router_b = litellm.Router(
        model_list=[deployment(sim, "b1", quality=0.1), deployment(sim, "b2", quality=0.9)],
        num_retries=1,
        retry_after=0,
        disable_cooldowns=True,
    )
    with (
        install(router_a, strategy="latency-optimal") as ha,
        install(router_b, strategy="quality-optimal", failover=NEVER_TRIP) as hb,
    ):
        await asyncio.gather(
            *(router_a.acompletion(model="g", messages=MESSAGES) for _ in range(5)),
            *(router_b.acompletion(model="g", messages=MESSAGES) for _ in range(3)),
        )
        await async_wait_until(lambda: ha.stats().get("recorded_ok", 0) == 5 and hb.stats().get("recorded_ok", 0) == 3)
        assert set(ha.middleware.providers) == {"a1", "a2"}
        assert set(hb.middleware.providers) == {"b1", "b2"}
        assert ha.stats().get("recorded_failure", 0) == 0  # b2's failures never reached router A's middleware
        assert hb.stats()["recorded_failure"] == 3
        assert sum(ha.middleware.health(p).calls for p in ("a1", "a2")) == 5
        assert hb.middleware.health("b2").failures == 3 and hb.middleware.health("b1").successes == 3


async def test_routers_with_identical_deployment_ids_stay_isolated(make_sim) -> None:
    """Same model_list (so the same deployment ids) in two routers: the router token keeps them apart."""
    sim = make_sim(SimProvider(name="x"), SimProvider(name="y"))
    model_list = [deployment(sim, "x"), deployment(sim, "y")]
    router_1 = litellm.Router(model_list=[dict(d) for d in model_list], num_retries=0)
    router_2 = litellm.Router(model_list=[dict(d) for d in model_list], num_retries=0)
    mw_1, mw_2 = Middleware(strategy="failover"), Middleware(strategy="failover")
    with install(router_1, middleware=mw_1) as h1, install(router_2, middleware=mw_2) as h2:
        for _ in range(3):
            await router_1.acompletion(model="g", messages=MESSAGES)
        await router_2.acompletion(model="g", messages=MESSAGES)
        await async_wait_until(lambda: h1.stats().get("recorded_ok") == 3 and h2.stats().get("recorded_ok") == 1)
        await asyncio.sleep(0.1)
        assert sum(mw_1.health(p).calls for p in "xy") == 3
        assert sum(mw_2.health(p).calls for p in "xy") == 1


def test_monitoring_only_install_keeps_litellms_strategy_and_matches_by_deployment_id(make_sim) -> None:
    sim = make_sim(SimProvider(name="m1"), SimProvider(name="m2"))
    router = litellm.Router(
        model_list=[deployment(sim, "m1"), deployment(sim, "m2")], num_retries=0, routing_strategy="simple-shuffle"
    )
    with install(router, route=False) as handle:
        assert handle.strategy is None and router._custom_strategy is None
        for _ in range(6):
            router.completion(model="g", messages=MESSAGES)
        wait_until(lambda: handle.stats().get("recorded_ok", 0) == 6)
        assert handle.middleware.health("m1").calls + handle.middleware.health("m2").calls == 6
        assert handle.stats().get("picks", 0) == 0


async def test_a_reused_metadata_dict_does_not_carry_one_routers_events_to_another(make_sim) -> None:
    """LiteLLM writes into the caller's metadata dict (our router token included). Reusing that dict for a
    call on another, uninstalled router with the same deployment ids must not be counted for the first."""
    sim = make_sim(SimProvider(name="x"))
    installed_router = litellm.Router(model_list=[deployment(sim, "x")], num_retries=0)
    plain_router = litellm.Router(model_list=[deployment(sim, "x")], num_retries=0)
    metadata: dict[str, Any] = {"team": "blue"}
    with install(installed_router) as handle:
        await installed_router.acompletion(model="g", messages=MESSAGES, metadata=metadata)
        await async_wait_until(lambda: handle.stats().get("recorded_ok") == 1)
        for _ in range(2):
            await plain_router.acompletion(model="g", messages=MESSAGES, metadata=metadata)
        await installed_router.acompletion(model="g", messages=MESSAGES, metadata=metadata)
        await async_wait_until(lambda: handle.stats().get("recorded_ok") == 2)
        await asyncio.sleep(0.1)
        assert handle.middleware.health("x").calls == 2
    assert sim.stats("x").total == 4


class ExplodingObserver:
    """A middleware plugin that raises on every outcome."""

    @hookimpl
    def pbm_on_outcome(self, outcome, error_kind) -> None:
        raise RuntimeError("observer bug")


async def test_a_failing_plugin_or_hook_never_breaks_the_call() -> None:
    router = litellm.Router(model_list=[mock_deployment("a")], num_retries=0)
    with install(router, plugins=[ExplodingObserver()]) as handle:
        for _ in range(3):
            response = await router.acompletion(model="g", messages=MESSAGES)
            assert response.choices[0].message.content == "ok"
        await async_wait_until(lambda: handle.middleware.health("a").calls == 3)
        assert handle.middleware.stats()["plugin_failures"]
        handle.callback._on_event({"litellm_params": "not a mapping"}, None, None, None, ok=True)  # ignored
        handle.callback._on_event(None, None, None, None, ok=False)
        assert handle.stats().get("hook_errors", 0) == 0


async def test_responses_api_is_routed_and_recorded_without_touching_the_callers_metadata() -> None:
    """On the Responses API ``metadata`` is the caller's and is sent to the provider; LiteLLM keeps its own
    in ``litellm_metadata``, which is where the router token goes."""
    router = litellm.Router(
        model_list=[mock_deployment("r1", quality=0.9), mock_deployment("r2", quality=0.1)], num_retries=0
    )
    with install(router, strategy="quality-optimal") as handle:
        sent = {"customer": "acme"}
        response = await router.aresponses(model="g", input="hi", metadata=sent, mock_response="hello")
        assert response.output
        assert sent == {"customer": "acme"}
        await async_wait_until(lambda: handle.stats().get("recorded_ok") == 1)
        assert handle.middleware.health("r1").successes == 1
        assert handle.stats()["picks"] == 1


def test_hook_parameter_names_are_exactly_litellms() -> None:
    """LiteLLM calls hooks by keyword; a renamed parameter only logs an error and loses the event."""
    import inspect

    from pi_builder_middleware.adapters.litellm import MiddlewareCallback, MiddlewareRoutingStrategy

    for name in (
        "async_log_success_event",
        "async_log_failure_event",
        "log_success_event",
        "log_failure_event",
        "async_filter_deployments",
    ):
        ours = list(inspect.signature(getattr(MiddlewareCallback, name)).parameters)
        theirs = list(inspect.signature(getattr(CustomLogger, name)).parameters)
        assert ours == theirs, name
    from litellm.router import CustomRoutingStrategyBase

    for name in ("async_get_available_deployment", "get_available_deployment"):
        ours = list(inspect.signature(getattr(MiddlewareRoutingStrategy, name)).parameters)
        assert ours == list(inspect.signature(getattr(CustomRoutingStrategyBase, name)).parameters), name


class CaptureSuccess(CustomLogger):
    """Keeps the kwargs LiteLLM passes to the success hook (to replay them, altered, into our callback)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.calls.append((kwargs, response_obj, start_time, end_time))


async def test_absurd_numbers_from_litellm_are_clamped_to_the_bounds_not_lost() -> None:
    router = litellm.Router(model_list=[mock_deployment("x")], num_retries=0)
    capture = CaptureSuccess()
    litellm.callbacks.append(capture)
    try:
        with install(router) as handle:
            await router.acompletion(model="g", messages=MESSAGES)
            await async_wait_until(lambda: len(capture.calls) == 1 and handle.stats().get("recorded_ok") == 1)
            kwargs, response, start, end = capture.calls[0]
            slo = {**kwargs["standard_logging_object"], "prompt_tokens": 10**12, "completion_tokens": 10**400}
            altered = {
                **kwargs,
                "litellm_call_id": "replayed",
                "response_cost": 1e308,
                "standard_logging_object": slo,
                "start_time": start - datetime.timedelta(days=3650),
            }
            await handle.callback.async_log_success_event(altered, response, altered["start_time"], end)
            health = handle.middleware.health("x")
            assert health.successes == 2  # recorded, at the bounds
            assert health.latency_max_ms == MAX_LATENCY_S * 1000
            assert MAX_TOKENS <= health.tokens_in < MAX_TOKENS + 1000
            assert MAX_TOKENS <= health.tokens_out < MAX_TOKENS + 1000
            assert MAX_COST <= health.cost_total < 2 * MAX_COST
    finally:
        litellm.callbacks.remove(capture)
