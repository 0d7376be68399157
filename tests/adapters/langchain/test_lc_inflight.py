"""In-flight accounting through the LangChain wrappers: counted while an attempt runs (a stream: until its
delivery ends), back to zero whatever happened."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.runnables import RunnableLambda
from lc_fakes import HTTPError, ScriptedChat, call
from pi_builder_middleware.adapters.langchain import HealthAwareChatModel, HealthAwareFallbacks
from pydantic import Field

from pi_builder_middleware import AllProvidersFailedError, Middleware, RouteRequest, StreamInterruptedError

MODES = ["invoke", "ainvoke", "stream", "astream"]
FRONT_ENDS = [HealthAwareFallbacks, HealthAwareChatModel]


class WatchedChat(ScriptedChat):
    """A scripted model that notes the middleware's in-flight counts each time it is called."""

    mw: Any = None
    seen: list[dict[str, int]] = Field(default_factory=list)

    def _note(self) -> None:
        self.seen.append(inflight(self.mw))

    def _answer(self, **kwargs: Any) -> AIMessage:
        self._note()
        return super()._answer(**kwargs)

    def _chunks(self) -> Iterator[AIMessageChunk | Exception]:
        self._note()
        return super()._chunks()


def inflight(mw: Middleware) -> dict[str, int]:
    return {pid: mw.monitor.candidate(pid).inflight for pid in mw.providers}


def watched(mw: Middleware, **scripts: dict[str, Any]) -> dict[str, WatchedChat]:
    return {key: WatchedChat(key=key, mw=mw, **script) for key, script in scripts.items()}


@pytest.mark.parametrize("front_end", FRONT_ENDS)
@pytest.mark.parametrize("mode", MODES)
def test_each_attempt_is_in_flight_while_it_runs_and_none_is_after_the_call(make_mw, front_end, mode):
    mw = make_mw("a", "b")
    models = watched(mw, a={"fail": HTTPError(503)}, b={})
    llm = front_end(models, middleware=mw)

    assert call(llm, mode) == "b says hi"

    assert models["a"].seen == [{"a": 1, "b": 0}]
    assert models["b"].seen == [{"a": 0, "b": 1}]
    assert inflight(mw) == {"a": 0, "b": 0}


@pytest.mark.parametrize("mode", MODES)
def test_an_error_that_does_not_fail_over_ends_its_attempt(make_mw, mode):
    mw = make_mw("a", "b")
    llm = HealthAwareFallbacks(watched(mw, a={"fail": HTTPError(400)}, b={}), middleware=mw)
    with pytest.raises(HTTPError):
        call(llm, mode)
    assert inflight(mw) == {"a": 0, "b": 0}


@pytest.mark.parametrize("mode", MODES)
def test_every_provider_failing_ends_every_attempt(make_mw, mode):
    mw = make_mw("a", "b")
    llm = HealthAwareFallbacks(watched(mw, a={"fail": HTTPError(503)}, b={"fail": HTTPError(500)}), middleware=mw)
    with pytest.raises(AllProvidersFailedError):
        call(llm, mode)
    assert inflight(mw) == {"a": 0, "b": 0}


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_a_stream_stays_in_flight_until_the_reader_stops_early(make_mw, front_end):
    mw = make_mw("a", "b")
    llm = front_end(watched(mw, a={}, b={}), middleware=mw)
    chunks = llm.stream("q")
    assert next(chunks).content in ("", "a")
    assert inflight(mw) == {"a": 1, "b": 0}  # the first chunk arrived; delivery goes on
    chunks.close()
    assert inflight(mw) == {"a": 0, "b": 0}
    assert mw.monitor.metrics("a")["successes"] == 1  # stopping early is not the provider's fault


@pytest.mark.parametrize("front_end", FRONT_ENDS)
async def test_an_async_stream_stays_in_flight_until_the_reader_stops_early(make_mw, front_end):
    mw = make_mw("a", "b")
    llm = front_end(watched(mw, a={}, b={}), middleware=mw)
    chunks = llm.astream("q")
    await anext(chunks)
    assert inflight(mw) == {"a": 1, "b": 0}
    await chunks.aclose()
    assert inflight(mw) == {"a": 0, "b": 0}


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_stream_broken_after_its_first_chunk_ends_its_attempt(make_mw, mode):
    mw = make_mw("a", "b")
    llm = HealthAwareFallbacks(watched(mw, a={"fail": HTTPError(503), "cut_after": 1}, b={}), middleware=mw)
    with pytest.raises(StreamInterruptedError):
        call(llm, mode)
    assert inflight(mw) == {"a": 0, "b": 0}
    assert mw.monitor.metrics("a")["failures"] == 1


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_stream_too_slow_to_start_ends_its_attempt_and_fails_over(make_mw, mode):
    mw = make_mw("a", "b")
    models = watched(mw, a={"first_chunk_delay_s": 0.3}, b={})
    llm = HealthAwareFallbacks(models, middleware=mw, first_chunk_timeout_s=0.05)
    assert call(llm, mode) == "b says hi"
    assert models["b"].seen == [{"a": 0, "b": 1}]
    assert inflight(mw) == {"a": 0, "b": 0}


async def test_a_cancelled_ainvoke_ends_its_attempt(make_mw):
    mw = make_mw("a", "b")
    started = asyncio.Event()

    async def hang(_input: Any) -> str:
        started.set()
        await asyncio.sleep(30)
        return "late"

    llm = HealthAwareFallbacks({"a": RunnableLambda(hang), "b": RunnableLambda(lambda _: "b")}, middleware=mw)
    task = asyncio.create_task(llm.ainvoke("q"))
    await started.wait()
    assert inflight(mw) == {"a": 1, "b": 0}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert inflight(mw) == {"a": 0, "b": 0}


async def test_an_ainvoke_that_times_out_ends_its_attempt_and_fails_over(make_mw):
    mw = make_mw("a", "b")

    async def hang(_input: Any) -> str:
        await asyncio.sleep(30)
        return "late"

    llm = HealthAwareFallbacks(
        {"a": RunnableLambda(hang), "b": RunnableLambda(lambda _: "b")},
        middleware=mw,
        route=RouteRequest(attempt_timeout_s=0.05),
    )
    assert await llm.ainvoke("q") == "b"
    assert inflight(mw) == {"a": 0, "b": 0}


def test_an_interrupted_invoke_ends_its_attempt(make_mw):
    mw = make_mw("a", "b")

    def interrupt(_input: Any) -> str:
        raise KeyboardInterrupt

    llm = HealthAwareFallbacks({"a": RunnableLambda(interrupt), "b": RunnableLambda(lambda _: "b")}, middleware=mw)
    with pytest.raises(KeyboardInterrupt):
        llm.invoke("q")
    assert inflight(mw) == {"a": 0, "b": 0}
