"""Streaming: time to first token, stream-aware routing, failover before the first chunk, mid-stream cuts."""

from __future__ import annotations

from typing import Any

import litellm
import pytest
from litellm_support import MESSAGES, OutcomeLog, async_wait_until, deployment, mock_deployment, served_by
from pi_builder_middleware.adapters.litellm import install
from pi_builder_middleware.testing import Behaviour, Latency, SimOutcome, SimProvider

from pi_builder_middleware import ErrorKind, Outcome


async def consume(stream: Any) -> tuple[str, str]:
    """Read a stream to the end; returns (text, deployment id that served it)."""
    text = ""
    async for chunk in stream:
        text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    return text, str(stream._hidden_params.get("model_id"))


async def test_ttft_is_recorded_for_streams(make_sim) -> None:
    sim = make_sim(
        SimProvider(
            name="s",
            behaviour=Behaviour(
                latency=Latency.fixed(5), ttft=Latency.fixed(40), tokens_per_second=200, response_tokens=10
            ),
        )
    )
    router = litellm.Router(model_list=[deployment(sim, "s")], num_retries=0)
    with install(router) as handle:
        for _ in range(2):  # the first also pays for the connection
            text, _ = await consume(await router.acompletion(model="g", messages=MESSAGES, stream=True))
            assert text
        await async_wait_until(lambda: handle.middleware.health("s").successes == 2)
        health = handle.middleware.health("s")
        assert health.ttft_p50_ms is not None and health.ttft_p50_ms >= 40
        assert health.latency_p50_ms is not None and health.latency_p50_ms >= health.ttft_p50_ms + 30  # 10 tokens
        assert health.tokens_out > 0
        await router.acompletion(model="g", messages=MESSAGES)  # non-streaming calls carry no TTFT
        await async_wait_until(lambda: handle.middleware.health("s").successes == 3)
        assert handle.middleware.health("s").ttft_p50_ms == health.ttft_p50_ms


async def test_streaming_requests_are_ranked_by_time_to_first_token() -> None:
    """RouteRequest(stream=True): a deployment that starts fast wins streams, one that finishes fast wins calls."""
    router = litellm.Router(model_list=[mock_deployment("starts-fast"), mock_deployment("ends-fast")], num_retries=0)
    with install(router, strategy="latency-optimal") as handle:
        mw = handle.middleware
        for _ in range(6):
            mw.record(Outcome("starts-fast", True, latency_s=0.80, ttft_s=0.05))
            mw.record(Outcome("ends-fast", True, latency_s=0.30, ttft_s=0.25))
        stream = await router.acompletion(model="g", messages=MESSAGES, stream=True)
        _, served = await consume(stream)
        assert served == "starts-fast"
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "ends-fast"


async def test_failure_before_the_first_chunk_fails_over_through_litellm_retries(make_sim) -> None:
    sim = make_sim(
        SimProvider(name="broken", behaviour=Behaviour.failing(SimOutcome.SERVER_ERROR)),
        SimProvider(name="good", behaviour=Behaviour(ttft=Latency.fixed(10))),
    )
    router = litellm.Router(
        model_list=[deployment(sim, "broken", quality=0.9), deployment(sim, "good", quality=0.2)],
        num_retries=1,
        retry_after=0,
        disable_cooldowns=True,
    )
    log = OutcomeLog()
    with install(router, strategy="quality-optimal", plugins=[log]) as handle:
        text, served = await consume(await router.acompletion(model="g", messages=MESSAGES, stream=True))
        assert text and served == "good"
        await async_wait_until(lambda: len(log.items) == 2)
        [(failed, kind)] = log.of("broken")
        assert not failed.ok and kind is ErrorKind.SERVER_ERROR and failed.status_code == 500
        [(ok, _)] = log.of("good")
        assert ok.ok and ok.ttft_s is not None and ok.ttft_s >= 0.01
        assert handle.stats()["picks"] == 2


async def test_failure_before_the_first_chunk_falls_back_to_another_group(make_sim) -> None:
    sim = make_sim(
        SimProvider(name="main", behaviour=Behaviour.failing(SimOutcome.OVERLOADED)), SimProvider(name="reserve")
    )
    router = litellm.Router(
        model_list=[deployment(sim, "main", group="primary"), deployment(sim, "reserve", group="backup")],
        fallbacks=[{"primary": ["backup"]}],
        num_retries=0,
        disable_cooldowns=True,
    )
    log = OutcomeLog()
    with install(router, plugins=[log]):
        text, served = await consume(await router.acompletion(model="primary", messages=MESSAGES, stream=True))
        assert text and served == "reserve"
        await async_wait_until(lambda: len(log.items) == 2)
        assert [kind for _, kind in log.of("main")] == [ErrorKind.OVERLOADED]  # 529


async def test_cut_mid_stream_is_recorded_as_a_failure_and_reaches_the_caller(make_sim) -> None:
    """LiteLLM cannot fail over once chunks were delivered; the cut is still counted against the deployment."""
    sim = make_sim(
        SimProvider(name="flaky", behaviour=Behaviour.failing(SimOutcome.STREAM_CUT, stream_cut_after_chunks=2)),
        SimProvider(name="other"),
    )
    router = litellm.Router(
        model_list=[deployment(sim, "flaky", quality=0.9), deployment(sim, "other", quality=0.1)],
        num_retries=1,
        retry_after=0,
        disable_cooldowns=True,
    )
    log = OutcomeLog()
    with install(router, strategy="quality-optimal", plugins=[log]):
        stream = await router.acompletion(model="g", messages=MESSAGES, stream=True)
        with pytest.raises(litellm.APIConnectionError):
            await consume(stream)
        await async_wait_until(lambda: len(log.items) == 1)
        [(outcome, kind)] = log.of("flaky")
        assert not outcome.ok and kind is ErrorKind.CONNECTION
    assert sim.stats("other").total == 0
