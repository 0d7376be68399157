"""Concurrency limit and cold start, over real HTTP: who gets 429, who pays the set-up time."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest
from pi_builder_middleware.testing import (
    Behaviour,
    ColdStart,
    FaultWindow,
    Latency,
    ManualClock,
    SimOutcome,
    SimProvider,
    Simulator,
    SimulatorConfigError,
    load_scenario,
)

from .conftest import MESSAGES, MakeSim, chat

OK, LIMITED = SimOutcome.SUCCESS, SimOutcome.RATE_LIMIT
BODY = {"model": "sim-model", "messages": MESSAGES}


async def _post(client: httpx.AsyncClient, url: str, **extra: object) -> httpx.Response:
    return await client.post(f"{url}/chat/completions", json={**BODY, **extra})


async def _until_in_flight(sim: Simulator, name: str, count: int) -> None:
    deadline = time.monotonic() + 5.0
    while sim.provider(name).in_flight != count:
        assert time.monotonic() < deadline, f"{name} never had {count} requests in flight"
        await asyncio.sleep(0.005)


def _limited(name: str, limit: int, latency_ms: float = 400) -> SimProvider:
    return SimProvider(name=name, behaviour=Behaviour(latency=Latency.fixed(latency_ms), max_concurrent=limit))


async def test_requests_over_the_limit_get_429_at_once_and_take_no_slot(make_sim: MakeSim) -> None:
    sim = make_sim(_limited("a", 2))
    url = sim.base_url("a")
    async with httpx.AsyncClient(timeout=5.0) as client:
        first = [asyncio.create_task(_post(client, url)) for _ in range(2)]
        await _until_in_flight(sim, "a", 2)
        began = time.monotonic()
        over = await asyncio.gather(_post(client, url), _post(client, url, stream=True))
        turned_away_s = time.monotonic() - began
        admitted = await asyncio.gather(*first)
        assert sim.provider("a").in_flight == 0
        after = await _post(client, url)

    assert [r.status_code for r in admitted] == [200, 200]
    assert [r.status_code for r in over] == [429, 429]
    assert turned_away_s < 0.3  # answered without the provider's 400 ms latency
    for resp in over:
        assert "retry-after" not in resp.headers and "retry-after-ms" not in resp.headers
        assert resp.headers["content-type"].startswith("application/json")
        error = resp.json()["error"]
        assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
        assert "concurrent requests: Limit 2" in error["message"]
    assert sorted(int(r.headers["x-sim-request"]) for r in over) == [2, 3]
    assert after.status_code == 200 and after.headers["x-sim-request"] == "4"
    assert sim.stats("a").outcomes == (OK, OK, LIMITED, LIMITED, OK)
    assert sim.stats("a").count(LIMITED) == 2


async def test_each_provider_has_its_own_limit(make_sim: MakeSim) -> None:
    sim = make_sim(_limited("a", 1), _limited("b", 3))
    async with httpx.AsyncClient(timeout=5.0) as client:
        held = [asyncio.create_task(_post(client, sim.base_url("a")))]
        await _until_in_flight(sim, "a", 1)
        at_a, *at_b = await asyncio.gather(
            _post(client, sim.base_url("a")), *[_post(client, sim.base_url("b")) for _ in range(3)]
        )
        await asyncio.gather(*held)
    assert [r.status_code for r in at_b] == [200, 200, 200]
    assert at_a.status_code == 429
    assert sim.stats("a").outcomes == (OK, LIMITED) and sim.stats("b").outcomes == (OK, OK, OK)


async def test_a_client_that_gives_up_frees_its_slot(make_sim: MakeSim) -> None:
    sim = make_sim(_limited("a", 1, latency_ms=3000))
    async with httpx.AsyncClient(timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await _post(client, sim.base_url("a"))
    await _until_in_flight(sim, "a", 0)


async def test_limit_from_a_fault_window_applies_only_while_active(make_sim: MakeSim) -> None:
    clock = ManualClock()
    window = FaultWindow(start_s=10, end_s=20, max_concurrent=1)
    sim = make_sim(
        SimProvider(name="a", behaviour=Behaviour(latency=Latency.fixed(300)), faults=(window,)), clock=clock
    )
    url = sim.base_url("a")
    async with httpx.AsyncClient(timeout=5.0) as client:
        before = await asyncio.gather(*[_post(client, url) for _ in range(3)])
        clock.set(10)
        held = asyncio.create_task(_post(client, url))
        await _until_in_flight(sim, "a", 1)
        during = await _post(client, url)
        await held
    assert [r.status_code for r in before] == [200, 200, 200]
    assert during.status_code == 429
    assert sim.stats("a").outcomes == (OK, OK, OK, OK, LIMITED)


def test_forced_outcomes_bypass_the_limit(make_sim: MakeSim) -> None:
    sim = make_sim(_limited("a", 1, latency_ms=0))
    with httpx.Client(timeout=5.0) as http:
        resp = chat(http, sim.base_url("a"), stream=False)
        forced = http.post(
            f"{sim.base_url('a')}/chat/completions", json=BODY, headers={"x-sim-outcome": "server_error"}
        )
    assert resp.status_code == 200 and forced.status_code == 500
    assert sim.provider("a").in_flight == 0


def _processing_ms(responses: list[httpx.Response]) -> list[int]:
    return [int(r.headers["openai-processing-ms"]) for r in responses]


def test_cold_start_slows_only_the_first_requests(make_sim: MakeSim, http: httpx.Client) -> None:
    cold = ColdStart(requests=2, extra_ms=200)
    sim = make_sim(SimProvider(name="a", behaviour=Behaviour(latency=Latency.fixed(20), cold_start=cold)))
    elapsed, responses = [], []
    for stream in (False, True, False, True):
        began = time.monotonic()
        resp = chat(http, sim.base_url("a"), stream=stream)
        elapsed.append(time.monotonic() - began)
        responses.append(resp)
    assert [r.status_code for r in responses] == [200, 200, 200, 200]
    assert _processing_ms(responses) == [220, 220, 20, 20]
    assert min(elapsed[:2]) >= 0.22
    assert max(elapsed[2:]) < 0.2


def test_cold_start_is_not_scaled_and_returns_after_a_stats_reset(make_sim: MakeSim, http: httpx.Client) -> None:
    cold = ColdStart(requests=1, extra_ms=100)
    behaviour = Behaviour(latency=Latency.fixed(10), cold_start=cold, latency_multiplier=3)
    sim = make_sim(SimProvider(name="a", behaviour=behaviour))
    first = [chat(http, sim.base_url("a")) for _ in range(2)]
    sim.reset_stats("a")
    again = chat(http, sim.base_url("a"))
    assert _processing_ms([*first, again]) == [130, 30, 130]


@pytest.mark.parametrize(
    ("behaviour", "path", "message"),
    [
        ({"max_concurrent": 0}, "providers[0].behaviour.max_concurrent", "must be >= 1"),
        ({"cold_start": {"requests": 0, "extra_ms": 10}}, "providers[0].behaviour.cold_start.requests", ">= 1"),
        ({"cold_start": {"requests": 2, "extra_ms": -5}}, "providers[0].behaviour.cold_start.extra_ms", ">= 0"),
        ({"cold_start": {"requests": 2, "setup_ms": 5}}, "providers[0].behaviour.cold_start.setup_ms", "unknown"),
    ],
)
def test_bad_limits_name_the_field(behaviour: dict[str, object], path: str, message: str) -> None:
    with pytest.raises(SimulatorConfigError) as info:
        load_scenario({"providers": [{"name": "a", "behaviour": behaviour}]})
    ((where, what),) = info.value.problems
    assert where == path and message in what


def test_bad_window_limit_names_the_field() -> None:
    with pytest.raises(SimulatorConfigError) as info:
        load_scenario({"providers": [{"name": "a", "faults": [{"start_s": 1, "max_concurrent": -1}]}]})
    assert info.value.problems == (("providers[0].faults[0].max_concurrent", "must be >= 1"),)


def test_limits_load_from_plain_data() -> None:
    scenario = load_scenario(
        {
            "providers": [
                {"name": "a", "behaviour": {"max_concurrent": 4, "cold_start": {"requests": 2, "extra_ms": 190}}}
            ]
        }
    )
    behaviour = scenario.providers[0].behaviour
    assert behaviour.max_concurrent == 4 and behaviour.cold_start == ColdStart(requests=2, extra_ms=190)


async def test_openai_sdk_maps_the_limit_to_rate_limit_error(make_sim: MakeSim) -> None:
    sim = make_sim(_limited("a", 1, latency_ms=1000))
    async with (
        httpx.AsyncClient(timeout=5.0) as client,
        openai.AsyncOpenAI(base_url=sim.base_url("a"), api_key="sk-fake", max_retries=0, timeout=5.0) as sdk,
    ):
        held = asyncio.create_task(_post(client, sim.base_url("a")))
        await _until_in_flight(sim, "a", 1)
        with pytest.raises(openai.RateLimitError) as info:
            await sdk.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        assert (await held).status_code == 200
    assert info.value.status_code == 429 and "retry-after" not in info.value.response.headers
