"""In-flight accounting: every LiteLLM attempt on a deployment counts as in flight from ``log_pre_api_call``
until its outcome is recorded, its caller's task is cancelled, or it times out; load-aware routing reads it."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import litellm
import pytest
from litellm_support import MESSAGES, async_wait_until, deployment, served_by
from pi_builder_middleware.adapters.litellm import LiteLLMHandle, install
from pi_builder_middleware.testing import Behaviour, Latency, SimOutcome, SimProvider

from pi_builder_middleware import ManualClock


def slow(name: str, ms: float = 300) -> SimProvider:
    return SimProvider(name=name, behaviour=Behaviour(latency=Latency.fixed(ms)))


class Peak:
    """Samples ``in_flight`` of some deployments from a concurrent task; keeps the highest values seen."""

    def __init__(self, handle: LiteLLMHandle, *pids: str) -> None:
        self.in_flight: Callable[[str], int] = handle.middleware.router.in_flight
        self.pids = pids
        self.peak: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], self.in_flight(pid))
            await asyncio.sleep(0.005)

    async def __aenter__(self) -> Peak:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def all_ended(handle: LiteLLMHandle, *pids: str) -> None:
    """Wait until no attempt is counted in flight (LiteLLM logs successes after returning)."""
    in_flight = handle.middleware.router.in_flight
    await async_wait_until(lambda: all(in_flight(pid) == 0 for pid in pids))
    stats = handle.stats()
    assert stats["attempts_begun"] == stats["attempts_ended"] + stats["attempts_cancelled"] + stats["attempts_expired"]


async def test_a_slow_call_is_in_flight_while_it_runs_and_not_after(make_sim) -> None:
    sim = make_sim(slow("s"))
    router = litellm.Router(model_list=[deployment(sim, "s")], num_retries=0)
    with install(router) as handle:
        async with Peak(handle, "s") as seen:
            await router.acompletion(model="g", messages=MESSAGES)
        assert seen.peak["s"] == 1
        await all_ended(handle, "s")
        assert handle.stats()["attempts_begun"] == handle.stats()["attempts_ended"] == 1


async def test_the_outcome_is_recorded_while_the_attempt_still_counts(make_sim) -> None:
    """Middleware.record reads the in-flight count (a 429 under load is a concurrency ceiling): record first."""
    sim = make_sim(slow("s", 20))
    router = litellm.Router(model_list=[deployment(sim, "s")], num_retries=0)
    with install(router) as handle:
        mw = handle.middleware
        seen: list[int] = []
        real_record = mw.record

        def record(outcome: Any) -> Any:
            seen.append(mw.router.in_flight(outcome.provider_id))
            return real_record(outcome)

        mw.record = record  # type: ignore[method-assign]
        await router.acompletion(model="g", messages=MESSAGES)
        await all_ended(handle, "s")
        assert seen == [1]


async def test_a_failed_attempt_and_its_fallback_both_end(make_sim) -> None:
    sim = make_sim(
        SimProvider(name="bad", behaviour=Behaviour.failing(SimOutcome.SERVER_ERROR, latency=Latency.fixed(150))),
        slow("reserve", 150),
    )
    router = litellm.Router(
        model_list=[deployment(sim, "bad", group="primary"), deployment(sim, "reserve", group="backup")],
        fallbacks=[{"primary": ["backup"]}],
        num_retries=0,
        disable_cooldowns=True,
    )
    with install(router) as handle:
        async with Peak(handle, "bad", "reserve") as seen:
            response = await router.acompletion(model="primary", messages=MESSAGES)
        assert served_by(response) == "reserve"
        assert seen.peak == {"bad": 1, "reserve": 1}
        await all_ended(handle, "bad", "reserve")
        assert handle.stats()["attempts_begun"] == 2 and handle.stats()["attempts_ended"] == 2


async def test_a_stream_is_in_flight_until_it_is_read_to_the_end(make_sim) -> None:
    sim = make_sim(
        SimProvider(name="s", behaviour=Behaviour(ttft=Latency.fixed(10), tokens_per_second=50, response_tokens=10))
    )
    router = litellm.Router(model_list=[deployment(sim, "s")], num_retries=0)
    with install(router) as handle:
        in_flight = handle.middleware.router.in_flight
        stream = await router.acompletion(model="g", messages=MESSAGES, stream=True)
        assert in_flight("s") == 1  # the call returned, the response is still coming
        chunks = 0
        async for _chunk in stream:
            chunks += 1
            if chunks == 2:
                assert in_flight("s") == 1
        await all_ended(handle, "s")
        assert handle.stats()["recorded_ok"] == 1


def test_sync_calls_and_sync_streams_end_too(make_sim) -> None:
    sim = make_sim(slow("s", 20))
    router = litellm.Router(model_list=[deployment(sim, "s")], num_retries=0)
    with install(router) as handle:
        router.completion(model="g", messages=MESSAGES)
        list(router.completion(model="g", messages=MESSAGES, stream=True))
        asyncio.run(all_ended(handle, "s"))
        assert handle.stats()["attempts_ended"] == 2


async def test_a_cancelled_call_stops_counting_at_once(make_sim) -> None:
    sim = make_sim(slow("s", 500))
    router = litellm.Router(model_list=[deployment(sim, "s")], num_retries=0)
    with install(router) as handle:
        in_flight = handle.middleware.router.in_flight
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(router.acompletion(model="g", messages=MESSAGES), 0.2)
        assert in_flight("s") == 0  # no event will come: the cancellation itself ended the attempt
        assert handle.stats()["attempts_cancelled"] == 1
        await asyncio.sleep(0.5)  # nothing arrives later to count twice
        assert in_flight("s") == 0
        assert handle.stats()["attempts_ended"] == 0 and handle.stats()["recorded_ok"] == 0


async def test_concurrent_calls_are_counted_and_all_end(make_sim) -> None:
    sim = make_sim(slow("a", 200), slow("b", 200))
    router = litellm.Router(model_list=[deployment(sim, "a"), deployment(sim, "b")], num_retries=0)
    with install(router) as handle:
        async with Peak(handle, "a", "b") as seen:
            await asyncio.gather(*(router.acompletion(model="g", messages=MESSAGES) for _ in range(8)))
        assert seen.peak["a"] + seen.peak["b"] >= 4  # several at once, on both
        await all_ended(handle, "a", "b")
        assert handle.stats()["attempts_begun"] == handle.stats()["attempts_ended"] == 8


async def test_an_attempt_whose_end_is_never_seen_expires(make_sim) -> None:
    """A stream nobody reads to the end produces no event: it stops counting after attempt_timeout_s."""
    sim = make_sim(SimProvider(name="s", behaviour=Behaviour(tokens_per_second=20, response_tokens=20)))
    router = litellm.Router(model_list=[deployment(sim, "s")], num_retries=0)
    clock = ManualClock(10.0)
    with install(router, clock=clock) as handle:
        in_flight = handle.middleware.router.in_flight
        stream = await router.acompletion(model="g", messages=MESSAGES, stream=True)
        async for _chunk in stream:
            break  # abandoned
        await asyncio.sleep(0.2)
        assert in_flight("s") == 1
        clock.advance(handle.callback._binding.attempt_timeout_s + 1)
        await router.acompletion(model="g", messages=MESSAGES)  # the next attempt sweeps stale ones
        assert handle.stats()["attempts_expired"] == 1
        await all_ended(handle, "s")


async def test_latency_optimal_spreads_concurrent_calls_over_equal_deployments(make_sim) -> None:
    names = ("d1", "d2", "d3")
    sim = make_sim(*(slow(n, 100) for n in names))
    router = litellm.Router(model_list=[deployment(sim, n) for n in names], num_retries=0)
    with install(router, strategy="latency-optimal", seed=7) as handle:
        for _ in range(2):  # every deployment known to be equally fast
            await asyncio.gather(*(router.acompletion(model="g", messages=MESSAGES) for _ in names))
        await all_ended(handle, *names)
        served: Counter[str] = Counter()
        for _ in range(3):
            responses = await asyncio.gather(*(router.acompletion(model="g", messages=MESSAGES) for _ in range(10)))
            served.update(served_by(r) for r in responses)
        assert sum(served.values()) == 30
        assert max(served.values()) <= 24, served  # no deployment takes more than 80 %
        await all_ended(handle, *names)
