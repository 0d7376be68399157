"""Hedged ``ainvoke`` / ``astream`` through the LangChain wrappers: real chat models whose answers the test releases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableLambda
from pi_builder_middleware.adapters.langchain import HealthAwareChatModel, HealthAwareFallbacks
from pydantic import SkipValidation

from pi_builder_middleware import ConfigError, HedgePolicy, ManualClock, Middleware, Provider, RouteRequest


class Gates:
    """Calls that wait until the test opens their gate; hedge timers the test fires (moving the clock)."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.gates: dict[str, asyncio.Future[None]] = {}
        self.timers: list[tuple[float, asyncio.Future[None]]] = []
        self.started: list[str] = []
        self.cancelled: list[str] = []

    async def wait(self, key: str) -> None:
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.gates[key] = gate
        self.started.append(key)
        try:
            await gate
        except asyncio.CancelledError:
            self.cancelled.append(key)
            raise

    def open(self, key: str, after: float = 0.0) -> None:
        self.clock.advance(after)
        self.gates[key].set_result(None)

    async def async_sleep(self, seconds: float) -> None:
        timer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.timers.append((seconds, timer))
        await timer

    def fire(self) -> None:
        seconds, timer = next((s, t) for s, t in reversed(self.timers) if not t.done())
        self.clock.advance(seconds)
        timer.set_result(None)


class GatedChat(BaseChatModel):
    """Answers ``"<key> says hi"`` once its gate opens (streamed as three chunks)."""

    key: str
    gates: SkipValidation[Any]

    @property
    def _llm_type(self) -> str:
        return "gated"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self.bind(tools=tools, **kwargs)

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        raise NotImplementedError("async only")

    async def _agenerate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        await self.gates.wait(self.key)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=f"{self.key} says hi"))])

    async def _astream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        await self.gates.wait(self.key)
        for word in (self.key, " says", " hi"):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
def gates(clock: ManualClock) -> Gates:
    return Gates(clock)


def hedging_mw(clock: ManualClock, gates: Gates, policy: HedgePolicy | None = None) -> Middleware:
    return Middleware(
        [Provider(id="a"), Provider(id="b")],
        strategy="failover",
        clock=clock,
        async_sleep=gates.async_sleep,
        load_entrypoints=False,
        hedge=policy or HedgePolicy(delay_s=0.5),
    )


def chat(gates: Gates, mw: Middleware, **kwargs: Any) -> HealthAwareChatModel:
    return HealthAwareChatModel(
        {"a": GatedChat(key="a", gates=gates), "b": GatedChat(key="b", gates=gates)}, middleware=mw, **kwargs
    )


def inflight(mw: Middleware) -> dict[str, int]:
    return {pid: mw.monitor.candidate(pid).inflight for pid in mw.providers}


async def test_ainvoke_hedges_and_the_faster_provider_answers(clock, gates):
    mw = hedging_mw(clock, gates)
    model = chat(gates, mw)
    task = asyncio.ensure_future(model.ainvoke("hi"))
    await settle()
    gates.fire()
    await settle()
    assert gates.started == ["a", "b"]
    gates.open("b", after=0.1)
    message = await task
    assert message.content == "b says hi"
    assert gates.cancelled == ["a"]
    assert inflight(mw) == {"a": 0, "b": 0}
    assert mw.monitor.metrics("a")["failures"] == 0
    stats = mw.stats()["hedging"]
    assert (stats["started"], stats["won"], stats["cancelled"]) == (1, 1, 1)


async def test_astream_hedges_until_the_first_chunk_then_commits(clock, gates):
    mw = hedging_mw(clock, gates)
    model = chat(gates, mw)
    chunks: list[str] = []

    async def read() -> None:
        async for chunk in model.astream("hi"):
            chunks.append(str(chunk.content))

    task = asyncio.ensure_future(read())
    await settle()
    gates.fire()
    await settle()
    gates.open("b", after=0.2)
    await task
    assert "".join(chunks) == "b says hi"
    assert gates.cancelled == ["a"]  # the slower stream was closed before its first chunk
    assert inflight(mw) == {"a": 0, "b": 0}
    assert mw.monitor.metrics("b")["ttft_p50_ms"] == pytest.approx(200.0)
    assert mw.stats()["hedging"]["won"] == 1


async def test_astream_that_starts_before_the_delay_never_hedges(clock, gates):
    mw = hedging_mw(clock, gates)
    model = chat(gates, mw)
    task = asyncio.ensure_future(model.ainvoke("hi"))
    await settle()
    gates.open("a", after=0.1)
    assert (await task).content == "a says hi"
    assert gates.started == ["a"] and mw.stats()["hedging"]["started"] == 0


async def test_hedge_false_on_the_wrapper_or_the_route_turns_it_off(clock, gates):
    mw = hedging_mw(clock, gates)
    for model in (chat(gates, mw, hedge=False), chat(gates, mw, route=RouteRequest(hedge=False))):
        gates.started.clear()
        task = asyncio.ensure_future(model.ainvoke("hi"))
        await settle()
        assert gates.timers == [] or all(t.done() for _, t in gates.timers)
        gates.open("a", after=5.0)
        assert (await task).content == "a says hi"
        assert gates.started == ["a"]
    assert mw.stats()["hedging"]["started"] == 0


async def test_fallbacks_built_with_a_policy_hedge_and_abatch_hedges_each_input(clock, gates):
    async def slow(text: str) -> str:
        await gates.wait("a")
        return "a:" + text

    async def fast(text: str) -> str:
        return "b:" + text

    llm = HealthAwareFallbacks(
        {"a": RunnableLambda(slow), "b": RunnableLambda(fast)}, strategy="failover", hedge=HedgePolicy(delay_s=0.0)
    )
    assert llm.hedge and llm.middleware.hedger is not None
    assert await llm.abatch(["x", "y"]) == ["b:x", "b:y"]  # a never answers: each input's hedge on b wins
    assert sorted(gates.cancelled) == ["a", "a"]
    assert llm.middleware.stats()["hedging"]["won"] == 2


def test_hedge_argument_errors_say_what_to_fix(clock, gates):
    mw = hedging_mw(clock, gates)
    models = {"a": RunnableLambda(lambda x: x), "b": RunnableLambda(lambda x: x)}
    with pytest.raises(ConfigError, match="set it there"):
        HealthAwareFallbacks(models, middleware=mw, hedge=HedgePolicy())
    plain = Middleware([Provider(id="a"), Provider(id="b")], load_entrypoints=False)
    with pytest.raises(ConfigError, match="no HedgePolicy"):
        HealthAwareFallbacks(models, middleware=plain, hedge=True)
    with pytest.raises(ConfigError) as info:
        HealthAwareChatModel({"a": GatedChat(key="a", gates=gates)}, hedge=0.5)  # type: ignore[arg-type]
    assert info.value.field == "HealthAwareChatModel.hedge"
    assert HealthAwareFallbacks(models, middleware=mw).hedge
    assert not HealthAwareFallbacks(models, middleware=plain).hedge


async def test_bind_tools_keeps_hedging(clock, gates):
    mw = hedging_mw(clock, gates)
    bound = chat(gates, mw).bind_tools([])  # a RunnableBinding over the model, as LangChain's chat models return
    task = asyncio.ensure_future(bound.ainvoke("hi"))
    await settle()
    gates.fire()
    await settle()
    assert gates.started == ["a", "b"]  # the tool-bound call hedged too
    gates.open("b", after=0.1)
    assert (await task).content == "b says hi"
    assert gates.cancelled == ["a"]

    unhedged = chat(gates, mw, hedge=False).bind_tools([])
    task = asyncio.ensure_future(unhedged.ainvoke("hi"))
    await settle()
    assert not [t for _, t in gates.timers if not t.done()]  # no hedge timer for a model with hedge=False
    gates.open("a", after=0.1)
    assert (await task).content == "a says hi"
