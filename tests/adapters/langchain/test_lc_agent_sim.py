"""The agent middleware with real ChatOpenAI clients (max_retries=0) over HTTP to the provider simulator.

The simulator answers a request that offers tools with a call of the first tool, and with text once
the conversation holds the tool's result: every agent run below is a real two-call tool loop.
"""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import ModelFallbackMiddleware
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from pi_builder_middleware.adapters.langchain import HealthAwareModelMiddleware
from pi_builder_middleware.testing import SimOutcome, Simulator

from pi_builder_middleware import CircuitState, Provider

RUNS = 5


def get_weather(city: str) -> str:
    """Look up the weather in a city."""
    return f"sunny in {city}"


def ask() -> dict:
    return {"messages": [HumanMessage("weather?")]}


def served_by(result: dict) -> str:
    """The simulator starts every text answer with its provider's name."""
    message = result["messages"][-1]
    assert isinstance(message, AIMessage)
    return str(message.content).split()[0]


def tool_results(result: dict) -> list[str]:
    return [str(m.content) for m in result["messages"] if isinstance(m, ToolMessage)]


def test_dead_primary_gets_no_more_requests_once_its_breaker_opens_unlike_model_fallback(
    sim: Simulator, make_chat, make_mw
):
    sim.down("a")  # 503 on every request
    sim.down("c")
    primary = make_chat("a")
    health = HealthAwareModelMiddleware({"a": primary, "b": make_chat("b")}, middleware=make_mw("a", "b"))
    ours = create_agent(primary, tools=[get_weather], middleware=[health])
    theirs = create_agent(make_chat("c"), tools=[get_weather], middleware=[ModelFallbackMiddleware(make_chat("b"))])

    for agent in (ours, theirs):
        for _ in range(RUNS):
            result = agent.invoke(ask())
            assert tool_results(result) == ["sunny in sim"]  # the tool loop ran: a real tool call from the backup
            assert served_by(result) == "b"

    assert sim.stats("b").total == 2 * 2 * RUNS  # two model calls per run, both agents
    assert sim.stats("a").total == 2  # two failures trip the aggressive breaker; then "a" is left alone
    assert sim.stats("c").total == 2 * RUNS  # ModelFallbackMiddleware starts every call at the dead primary
    assert health.middleware.failover.state("a") is CircuitState.OPEN
    health_b = health.middleware.health("b")
    assert health_b.successes == 2 * RUNS and health_b.tokens_out > 0  # usage_metadata of the real responses


async def test_async_agent_streams_messages_once_and_records_time_to_first_token(sim: Simulator, make_chat, make_mw):
    sim.down("a", SimOutcome.OVERLOADED)  # 529
    primary = make_chat("a")
    mw = make_mw(Provider(id="a"), Provider(id="b"), consecutive_failures=100)
    agent = create_agent(
        primary,
        tools=[get_weather],
        middleware=[HealthAwareModelMiddleware({"a": primary, "b": make_chat("b")}, middleware=mw)],
    )
    parts = [part async for part in agent.astream(ask(), stream_mode=["messages", "values"])]
    tokens = [
        str(m.content)
        for kind, (m, meta) in ((k, p) for k, p in parts if k == "messages")
        if isinstance(m, AIMessageChunk) and meta["langgraph_node"] == "model"
    ]
    final = next(p for k, p in reversed(parts) if k == "values")
    assert served_by(final) == "b" and tool_results(final) == ["sunny in sim"]
    assert "".join(tokens) == final["messages"][-1].content  # each token of the answer, once
    assert len([t for t in tokens if t]) == 16
    assert sim.stats("a").total == 2 and sim.stats("b").streamed == 2
    assert mw.health("b").ttft_avg_ms is not None


def test_rate_limited_primary_cools_down_for_its_retry_after(sim: Simulator, make_chat, make_mw):
    sim.down("a", SimOutcome.RATE_LIMIT)  # 429 with Retry-After
    primary = make_chat("a")
    health = HealthAwareModelMiddleware({"a": primary, "b": make_chat("b")}, middleware=make_mw("a", "b"))
    agent = create_agent(primary, tools=[get_weather], middleware=[health])
    for _ in range(3):
        assert served_by(agent.invoke(ask())) == "b"
    assert sim.stats("a").total == 1  # one 429, then skipped while it cools down
    assert health.middleware.health("a").rate_limited == 1
    assert health.middleware.failover.state("a") is CircuitState.CLOSED  # a 429 is no health failure


@pytest.mark.parametrize("kind", [SimOutcome.BAD_REQUEST, SimOutcome.AUTHENTICATION])
def test_request_and_config_errors_over_http(sim: Simulator, make_chat, make_mw, kind):
    sim.down("a", kind)
    primary = make_chat("a")
    agent = create_agent(
        primary,
        tools=[get_weather],
        middleware=[HealthAwareModelMiddleware({"a": primary, "b": make_chat("b")}, middleware=make_mw("a", "b"))],
    )
    if kind is SimOutcome.BAD_REQUEST:  # the request itself is wrong: raised at once, the backup not tried
        with pytest.raises(Exception, match="400"):
            agent.invoke(ask())
        assert sim.stats("b").total == 0
    else:  # a bad key is this provider's problem: fail over
        assert served_by(agent.invoke(ask())) == "b"


def test_the_simulators_tool_call_is_made_from_the_tools_schema():
    from pi_builder_middleware.testing.wire import tool_call_for

    tool = {
        "type": "function",
        "function": {
            "name": "book",
            "parameters": {
                "type": "object",
                "required": ["city", "nights", "budget", "breakfast"],
                "properties": {
                    "city": {"type": "string"},
                    "nights": {"type": "integer"},
                    "budget": {"type": "number"},
                    "breakfast": {"type": "boolean"},
                    "note": {"type": "string"},
                },
            },
        },
    }
    user = {"role": "user", "content": "book it"}
    call = tool_call_for({"tools": [tool], "messages": [user]}, "call_1")
    assert call == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "book", "arguments": '{"city":"sim","nights":1,"budget":1.0,"breakfast":true}'},
    }
    answered = [user, {"role": "assistant", "tool_calls": [call]}, {"role": "tool", "content": "ok"}]
    assert tool_call_for({"tools": [tool], "messages": answered}, "call_2") is None  # text once a result is in
    assert tool_call_for({"messages": [user]}, "call_3") is None  # no tools offered
    assert tool_call_for({"tools": [{"type": "web_search"}], "messages": [user]}, "call_4") is None
