"""On LiteLLM before 1.109: every attempt is recorded with its numbers; routers in one process stay isolated."""

from __future__ import annotations

import asyncio

import litellm
from legacy_support import NEVER_TRIP
from litellm_support import MESSAGES, OutcomeLog, async_wait_until, deployment, served_by, wait_until
from pi_builder_middleware.adapters.litellm import install
from pi_builder_middleware.testing import Behaviour, Latency, SimOutcome, SimProvider

from pi_builder_middleware import ErrorKind, Middleware


async def test_successes_and_failures_are_recorded_with_latency(make_sim) -> None:
    sim = make_sim(
        SimProvider(name="bad", behaviour=Behaviour.failing(SimOutcome.SERVER_ERROR)),
        SimProvider(name="good", behaviour=Behaviour(latency=Latency.fixed(40))),
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
            assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "good"
        assert served_by(router.completion(model="g", messages=MESSAGES)) == "good"
        await async_wait_until(lambda: handle.stats().get("recorded_ok", 0) == 5)
        # the first calls try "bad" first; after two failures close together it is passed over as suspect
        # (a probe at most every 0.5 s), so 2 to 5 calls met it — each recorded once, with its numbers
        failed = handle.stats()["recorded_failure"]
        assert 2 <= failed <= 5
        good, bad = log.of("good"), log.of("bad")
        assert len(good) == 5 and all(o.ok for o, _ in good)
        assert all(o.latency_s >= 0.035 for o, _ in good)  # the simulator's 40 ms
        assert len(bad) == failed and {kind for _, kind in bad} == {ErrorKind.SERVER_ERROR}
        assert all(o.status_code == 500 for o, _ in bad)
        health = handle.middleware.health("good")
        assert health.successes == 5 and health.latency_p50_ms >= 35
        assert handle.middleware.health("bad").failures == failed


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


def test_routers_with_identical_deployment_ids_stay_isolated(make_sim) -> None:
    """Same model_list (so the same deployment ids) in two routers: the router token keeps them apart."""
    sim = make_sim(SimProvider(name="x"), SimProvider(name="y"))
    model_list = [deployment(sim, "x"), deployment(sim, "y")]
    router_1 = litellm.Router(model_list=[dict(d) for d in model_list], num_retries=0)
    router_2 = litellm.Router(model_list=[dict(d) for d in model_list], num_retries=0)
    mw_1, mw_2 = Middleware(strategy="failover"), Middleware(strategy="failover")
    with install(router_1, middleware=mw_1) as h1, install(router_2, middleware=mw_2) as h2:
        for _ in range(3):
            router_1.completion(model="g", messages=MESSAGES)
        wait_until(lambda: h1.stats().get("recorded_ok", 0) == 3)
        assert h2.stats().get("recorded_ok", 0) == 0
        assert mw_2.health("x").calls == mw_2.health("y").calls == 0
        assert h1.stats()["picks"] == 3 and h2.stats().get("picks", 0) == 0
