"""Streaming through HealthAwareFallbacks: fail over before the first chunk, never after it."""

from __future__ import annotations

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from lc_fakes import HTTPError, ScriptedChat
from pi_builder_middleware.adapters.langchain import HealthAwareFallbacks

from pi_builder_middleware import ErrorKind, EventKind, StreamInterruptedError

PROMPT = ChatPromptTemplate.from_messages([("user", "{question}")])


async def collect(llm, text="q", use_async=False):
    if use_async:
        return [chunk async for chunk in llm.astream(text)]
    return list(llm.stream(text))


def contents(chunks):
    return "".join(chunk.content for chunk in chunks)


@pytest.mark.parametrize("use_async", [False, True])
async def test_failure_before_the_first_chunk_fails_over(make_mw, use_async):
    a, b = ScriptedChat(key="a", fail=HTTPError(503)), ScriptedChat(key="b")
    llm = HealthAwareFallbacks({"a": a, "b": b}, middleware=make_mw("a", "b"))
    assert contents(await collect(llm, use_async=use_async)) == "b says hi"
    assert (a.calls, b.calls) == (1, 1)
    health = llm.middleware.health("b")
    assert (health.successes, health.tokens_in, health.tokens_out) == (1, 7, 3)  # from the usage chunk
    assert health.ttft_avg_ms is not None
    assert llm.middleware.health("a").failures == 1


@pytest.mark.parametrize("use_async", [False, True])
async def test_failure_after_only_empty_chunks_still_fails_over(make_mw, use_async):
    """OpenAI's leading role chunk is empty: held back, so the caller has seen nothing yet."""
    a = ScriptedChat(key="a", fail=ConnectionError("reset"), cut_after=0)
    b = ScriptedChat(key="b")
    llm = HealthAwareFallbacks({"a": a, "b": b}, middleware=make_mw("a", "b"))
    chunks = await collect(llm, use_async=use_async)
    assert contents(chunks) == "b says hi"
    assert chunks[0].content == ""  # b's own empty lead chunk, delivered with its first word


@pytest.mark.parametrize("use_async", [False, True])
async def test_failure_mid_stream_raises_stream_interrupted(make_mw, use_async):
    cut = ConnectionError("peer closed connection")
    a, b = ScriptedChat(key="a", fail=cut, cut_after=1), ScriptedChat(key="b")
    llm = HealthAwareFallbacks({"a": a, "b": b}, middleware=make_mw("a", "b"))
    seen = []
    with pytest.raises(StreamInterruptedError) as info:
        if use_async:
            async for chunk in llm.astream("q"):
                seen.append(chunk.content)
        else:
            for chunk in llm.stream("q"):
                seen.append(chunk.content)
    assert seen == ["", "a"]
    assert (info.value.provider_id, info.value.chunks_delivered, info.value.error) == ("a", 2, cut)
    assert info.value.__cause__ is cut
    assert b.calls == 0  # no splicing of a second answer onto the first
    health = llm.middleware.health("a")
    assert (health.failures, health.successes) == (1, 0)


@pytest.mark.parametrize("use_async", [False, True])
async def test_first_chunk_timeout_fails_over(make_mw, use_async):
    slow = ScriptedChat(key="a", first_chunk_delay_s=0.5)
    b = ScriptedChat(key="b")
    llm = HealthAwareFallbacks({"a": slow, "b": b}, middleware=make_mw("a", "b"), first_chunk_timeout_s=0.05)
    assert contents(await collect(llm, use_async=use_async)) == "b says hi"
    failures = [e for e in llm.middleware.failover.events if e.kind is EventKind.FAILURE]
    assert [(e.provider_id, e.detail.split()[0]) for e in failures] == [("a", ErrorKind.TIMEOUT.value)]
    assert "FirstChunkTimeoutError" in failures[0].detail


def test_invoke_is_not_bounded_by_the_first_chunk_timeout(make_mw):
    slow = ScriptedChat(key="a", first_chunk_delay_s=0.2)
    llm = HealthAwareFallbacks(
        {"a": slow, "b": ScriptedChat(key="b")}, middleware=make_mw("a", "b"), first_chunk_timeout_s=0.05
    )
    assert llm.invoke("q").content == "a says hi"  # _generate does not sleep; only streams are bounded


@pytest.mark.parametrize("use_async", [False, True])
async def test_lcel_chain_streams_through_the_wrapper(make_mw, use_async):
    a, b = ScriptedChat(key="a", fail=HTTPError(502)), ScriptedChat(key="b")
    chain = PROMPT | HealthAwareFallbacks({"a": a, "b": b}, middleware=make_mw("a", "b")) | StrOutputParser()
    if use_async:
        pieces = [p async for p in chain.astream({"question": "hi"})]
    else:
        pieces = list(chain.stream({"question": "hi"}))
    assert "".join(pieces) == "b says hi"
    assert len([p for p in pieces if p]) == 3  # streamed word by word, not buffered


def test_reader_stopping_early_counts_as_success(make_mw):
    a = ScriptedChat(key="a")
    llm = HealthAwareFallbacks({"a": a, "b": ScriptedChat(key="b")}, middleware=make_mw("a", "b"))
    stream = llm.stream("q")
    assert next(stream).content == ""
    assert next(stream).content == "a"
    stream.close()
    health = llm.middleware.health("a")
    assert (health.successes, health.failures) == (1, 0)


async def test_all_failing_before_first_chunk_raises_all_failed(make_mw):
    from pi_builder_middleware import AllProvidersFailedError

    llm = HealthAwareFallbacks(
        {k: ScriptedChat(key=k, fail=HTTPError(500)) for k in "ab"}, middleware=make_mw("a", "b")
    )
    with pytest.raises(AllProvidersFailedError) as info:
        await collect(llm, use_async=True)
    assert [a.provider_id for a in info.value.attempts] == ["a", "b"]
