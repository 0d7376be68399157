"""Real ChatOpenAI clients over HTTP to the provider simulator, wrapped by the adapter."""

from __future__ import annotations

import openai
import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from lc_fakes import Recorder
from pi_builder_middleware.adapters.langchain import HealthAwareChatModel, HealthAwareFallbacks
from pi_builder_middleware.testing import Latency, SimOutcome, Simulator

from pi_builder_middleware import (
    AllProvidersFailedError,
    CircuitState,
    ErrorKind,
    ManualClock,
    Provider,
    StreamInterruptedError,
)

PROMPT = ChatPromptTemplate.from_messages([("system", "Be brief."), ("user", "{question}")])
MINI = Provider(id="a", cost_per_1k_input=0.15, cost_per_1k_output=0.6)
BIG = Provider(id="b", cost_per_1k_input=2.5, cost_per_1k_output=10.0)


def served_by(text: str) -> str:
    """The simulator starts every answer with its provider's name."""
    return text.split()[0]


def test_outage_is_skipped_after_the_breaker_opens_and_traffic_returns_after_recovery(
    sim: Simulator, make_chat, make_mw, clock: ManualClock
):
    llm = HealthAwareFallbacks(
        {"a": make_chat("a"), "b": make_chat("b")},
        middleware=make_mw(MINI, BIG, strategy="cost-optimal", base_ejection_s=10.0),
    )
    chain = PROMPT | llm | StrOutputParser()
    assert [served_by(chain.invoke({"question": "hi"})) for _ in range(3)] == ["a"] * 3  # cheapest first

    sim.down("a")  # 503 on every request
    assert [served_by(chain.invoke({"question": "hi"})) for _ in range(6)] == ["b"] * 6
    # aggressive preset: 1 failure in 4 calls reaches its 25 % failure-rate trip; then no more requests
    assert sim.stats("a").total == 3 + 1
    assert sim.stats("b").total == 6
    assert llm.middleware.failover.state("a") is CircuitState.OPEN

    sim.up("a")
    clock.advance(10.5)  # ejection over: the next call is a's half-open trial
    assert [served_by(chain.invoke({"question": "hi"})) for _ in range(2)] == ["a", "a"]
    assert sim.stats("a").total == 6
    assert llm.middleware.failover.state("a") is CircuitState.CLOSED
    health = llm.middleware.health("b")
    assert (health.successes, health.tokens_out) == (6, 6 * 16)  # usage_metadata from the real responses
    assert health.cost_total == pytest.approx(6 * (health.tokens_in / 6 * 2.5 + 16 * 10.0) / 1000)


async def test_async_stream_fails_over_before_the_first_chunk(sim: Simulator, make_chat, make_mw):
    chain = (
        PROMPT
        | HealthAwareFallbacks({"a": make_chat("a"), "b": make_chat("b")}, middleware=make_mw("a", "b"))
        | StrOutputParser()
    )
    sim.down("a", SimOutcome.OVERLOADED)  # 529
    pieces = [piece async for piece in chain.astream({"question": "hi"})]
    assert served_by("".join(pieces)) == "b"
    assert len([p for p in pieces if p]) == 16  # streamed token by token
    assert (sim.stats("a").total, sim.stats("b").streamed) == (1, 1)
    assert await chain.ainvoke({"question": "hi"}) != ""


@pytest.mark.parametrize("use_async", [False, True])
async def test_stream_cut_mid_way_raises_stream_interrupted(sim: Simulator, make_chat, make_mw, use_async):
    llm = HealthAwareChatModel({"a": make_chat("a"), "b": make_chat("b")}, middleware=make_mw("a", "b"))
    sim.down("a", SimOutcome.STREAM_CUT)  # sends two tokens, then closes the connection without [DONE]
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        if use_async:
            async for chunk in llm.astream("hi"):
                seen.append(chunk.content)
        else:
            for chunk in llm.stream("hi"):
                seen.append(chunk.content)
    assert served_by("".join(seen)) == "a"
    assert info.value.provider_id == "a"
    assert info.value.chunks_delivered == len(seen) >= 2
    assert isinstance(info.value.error, openai.APIConnectionError)
    assert sim.stats("b").total == 0  # never spliced a second answer on
    assert llm.middleware.health("a").failures == 1


@pytest.mark.parametrize("use_async", [False, True])
async def test_provider_too_slow_to_start_streaming_is_failed_over(sim: Simulator, make_chat, make_mw, use_async):
    sim.update_behaviour("a", ttft=Latency.fixed(3000))
    llm = HealthAwareFallbacks(
        {"a": make_chat("a"), "b": make_chat("b")}, middleware=make_mw("a", "b"), first_chunk_timeout_s=0.25
    )
    if use_async:
        text = "".join([chunk.content async for chunk in llm.astream("hi")])
    else:
        text = "".join(chunk.content for chunk in llm.stream("hi"))
    assert served_by(text) == "b"
    assert sim.stats("a").total == 1
    assert llm.middleware.failover.stats()["providers"]["a"]["timeout"] == 1


def test_bad_request_propagates_without_trying_other_providers(sim: Simulator, make_chat, make_mw):
    llm = HealthAwareFallbacks({"a": make_chat("a"), "b": make_chat("b")}, middleware=make_mw("a", "b"))
    sim.down("a", SimOutcome.BAD_REQUEST)
    with pytest.raises(openai.BadRequestError):
        llm.invoke("hi")
    assert (sim.stats("a").total, sim.stats("b").total) == (1, 0)


async def test_all_providers_failing_lists_every_attempt(sim: Simulator, make_chat, make_mw):
    llm = HealthAwareFallbacks({k: make_chat(k) for k in "abc"}, middleware=make_mw("a", "b", "c"))
    sim.down("a", SimOutcome.SERVER_ERROR)
    sim.down("b", SimOutcome.RATE_LIMIT)  # 429 with Retry-After: 1
    sim.down("c", SimOutcome.CONNECTION_RESET)
    with pytest.raises(AllProvidersFailedError) as info:
        await llm.ainvoke("hi")
    attempts = info.value.attempts
    assert [(a.provider_id, a.error_kind) for a in attempts] == [
        ("a", ErrorKind.SERVER_ERROR),
        ("b", ErrorKind.RATE_LIMITED),
        ("c", ErrorKind.CONNECTION),
    ]
    assert isinstance(attempts[1].error, openai.RateLimitError)
    assert info.value.__cause__ is attempts[2].error
    assert llm.middleware.health("b").cooldown_for_s == pytest.approx(1.0)  # the provider's Retry-After


def test_callbacks_see_the_real_openai_calls(sim: Simulator, make_chat, make_mw):
    llm = HealthAwareChatModel({"a": make_chat("a"), "b": make_chat("b")}, middleware=make_mw("a", "b"))
    sim.down("a")
    recorder = Recorder()
    message = llm.invoke("hi", config={"callbacks": [recorder]})
    assert served_by(message.content) == "b"
    starts = recorder.of("chat_start")
    assert [e[1] for e in starts] == ["HealthAwareChatModel", "ChatOpenAI", "ChatOpenAI"]
    outer, call_a, call_b = (e[2] for e in starts)
    assert [e[4][-1] for e in starts[1:]] == ["pbm:provider=a", "pbm:provider=b"]
    assert ("llm_error", "ChatOpenAI", call_a, outer, []) in recorder.events
    assert ("llm_end", "ChatOpenAI", call_b, outer, []) in recorder.events
    assert recorder.of("llm_end")[-1][2] == outer


def test_batch_routes_each_input(sim: Simulator, make_chat, make_mw):
    llm = HealthAwareFallbacks({"a": make_chat("a"), "b": make_chat("b")}, middleware=make_mw("a", "b"))
    sim.down("a")
    out = llm.batch(["one", "two", "three", "four"], config={"max_concurrency": 1})
    assert [served_by(m.content) for m in out] == ["b"] * 4
    assert sim.stats("a").total == 2  # the breaker opened after two of the inputs


def test_chat_litellm_behind_the_wrapper(sim: Simulator, make_chat, make_mw):
    """ChatLiteLLM as a provider: its errors classify too, and the recommended settings mean one request per try."""
    chat_litellm = pytest.importorskip("langchain_litellm").ChatLiteLLM
    # max_retries=0 stops ChatLiteLLM's own retries; model_kwargs max_retries=0 those of the OpenAI SDK inside
    local = chat_litellm(
        model="openai/sim-model",
        api_base=sim.base_url("c"),
        api_key="sk-fake",
        max_retries=0,
        model_kwargs={"max_retries": 0},
    )
    llm = HealthAwareChatModel({"c": local, "a": make_chat("a")}, middleware=make_mw("c", "a"))
    assert served_by(llm.invoke("hi").content) == "c"
    sim.down("c")
    assert served_by(llm.invoke("hi").content) == "a"
    assert sim.stats("c").total == 2  # no hidden SDK retries before failing over
    failed = llm.middleware.failover.events[-2]
    assert (failed.provider_id, failed.detail) == ("c", "overloaded ServiceUnavailableError")
    assert llm.middleware.health("c").tokens_out == 16
