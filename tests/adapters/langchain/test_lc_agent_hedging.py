"""Hedging inside a create_agent graph: the agent's async model calls race a second provider when the first is
slow; streamed calls are never hedged (their tokens reach the agent's stream as they come)."""

from __future__ import annotations

import pytest
from agent_fakes import ToolChat
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from pi_builder_middleware.adapters.langchain import HealthAwareModelMiddleware

from pi_builder_middleware import ConfigError, HedgePolicy, Middleware, Provider


def get_weather(city: str) -> str:
    """Look up the weather in a city."""
    return f"sunny in {city}"


def ask() -> dict:
    return {"messages": [HumanMessage("weather in Oslo?")]}


def hedging(delay_s: float = 0.05) -> Middleware:
    return Middleware(
        [Provider(id="a"), Provider(id="b")],
        strategy="failover",
        load_entrypoints=False,
        hedge=HedgePolicy(delay_s=delay_s),
    )


async def test_a_slow_primary_is_hedged_and_the_backup_answers_each_model_call():
    slow, quick = ToolChat(key="a", answer_delay_s=10.0), ToolChat(key="b")
    mw = hedging()
    agent = create_agent(
        slow, tools=[get_weather], middleware=[HealthAwareModelMiddleware({"a": slow, "b": quick}, middleware=mw)]
    )
    result = await agent.ainvoke(ask())
    assert [str(m.content) for m in result["messages"] if isinstance(m, ToolMessage)] == ["sunny in Oslo"]
    last = result["messages"][-1]
    assert isinstance(last, AIMessage) and last.content == "b: sunny in Oslo"
    assert last.response_metadata["provider_id"] == "b"
    stats = mw.stats()["hedging"]
    assert isinstance(stats, dict)
    assert stats["started"] == 2 and stats["won"] == 2 and stats["cancelled"] == 2  # both model calls of the run
    assert slow.calls == 0 and quick.calls == 2  # the slow primary never answered: cancelled while it waited
    assert {pid: mw.monitor.candidate(pid).inflight for pid in ("a", "b")} == {"a": 0, "b": 0}
    assert mw.health("a").failures == 0  # a lost race is no failure


async def test_hedge_false_turns_hedging_off_for_the_agent():
    slow, quick = ToolChat(key="a", answer_delay_s=0.2), ToolChat(key="b")
    mw = hedging(delay_s=0.01)
    health = HealthAwareModelMiddleware({"a": slow, "b": quick}, middleware=mw, hedge=False)
    result = await create_agent(slow, tools=[get_weather], middleware=[health]).ainvoke(ask())
    assert result["messages"][-1].content == "a: sunny in Oslo"
    assert quick.calls == 0 and mw.stats()["hedging"]["started"] == 0  # type: ignore[index]


async def test_a_streamed_agent_is_not_hedged_and_shows_each_token_once():
    slow, quick = ToolChat(key="a", first_token_delay_s=0.2), ToolChat(key="b")
    mw = hedging(delay_s=0.01)
    agent = create_agent(
        slow, tools=[get_weather], middleware=[HealthAwareModelMiddleware({"a": slow, "b": quick}, middleware=mw)]
    )
    tokens = [
        chunk.content
        async for chunk, _ in agent.astream(ask(), stream_mode="messages")
        if isinstance(chunk, AIMessageChunk) and chunk.content
    ]
    assert "".join(str(t) for t in tokens) == "a: sunny in Oslo"  # the primary's answer, once, no racing tokens
    assert quick.calls == 0 and mw.stats()["hedging"]["started"] == 0  # type: ignore[index]


def test_hedge_is_checked_like_the_other_entry_points():
    with pytest.raises(ConfigError, match="hedge"):
        HealthAwareModelMiddleware({"a": ToolChat(key="a")}, hedge="yes")  # type: ignore[arg-type]
    plain = Middleware([Provider(id="a")], load_entrypoints=False)
    with pytest.raises(ConfigError, match="HedgePolicy"):
        HealthAwareModelMiddleware({"a": ToolChat(key="a")}, middleware=plain, hedge=True)
    own = HealthAwareModelMiddleware({"a": ToolChat(key="a"), "b": ToolChat(key="b")}, hedge=True)
    assert own.hedge and own.middleware.hedger is not None
