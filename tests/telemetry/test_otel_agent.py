"""OpenTelemetry through the LangChain agent middleware: a real create_agent tool loop with ChatOpenAI
clients over HTTP to the provider simulator, the primary down (in-memory SDK exporters)."""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from opentelemetry.trace import SpanKind, StatusCode
from otel_support import Otel, chat, events
from pi_builder_middleware.adapters.langchain import HealthAwareModelMiddleware
from pi_builder_middleware.testing import Simulator

from pi_builder_middleware import FailoverConfig, Middleware, Provider


def get_weather(city: str) -> str:
    """Look up the weather in a city."""
    return f"sunny in {city}"


@pytest.mark.parametrize("use_async", [False, True])
async def test_agent_tool_loop_that_fails_over_gives_one_request_span_per_model_call(
    sim: Simulator, otel: Otel, use_async: bool
) -> None:
    mw = Middleware(
        [Provider(id="a", model="openai/sim"), Provider(id="b", model="openai/sim")],
        strategy="failover",
        failover=FailoverConfig(consecutive_failures=1, jitter=0.0),
        telemetry=otel.telemetry,
    )
    primary = chat(sim, "a")
    health = HealthAwareModelMiddleware({"a": primary, "b": chat(sim, "b")}, middleware=mw)
    agent = create_agent(primary, tools=[get_weather], middleware=[health])
    sim.down("a")
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("agent"):
        ask = {"messages": [HumanMessage("weather?")]}
        result = await agent.ainvoke(ask) if use_async else agent.invoke(ask)
    assert [str(m.content) for m in result["messages"] if isinstance(m, ToolMessage)] == ["sunny in sim"]
    assert isinstance(result["messages"][-1], AIMessage)

    parent = otel.one("agent")
    requests = otel.spans("pi_builder.request")
    assert len(requests) == 2  # the tool call, then the answer: two model calls of the agent
    attempts = otel.attempt_spans()
    # first model call: a (503) then b; the breaker opened on a's one failure, so the second call goes to b only
    assert [s.attributes["pi_builder.provider.id"] for s in attempts] == ["a", "b", "b"]  # type: ignore[index]
    assert all(s.kind is SpanKind.CLIENT for s in attempts)
    first_request = min(requests, key=lambda s: s.start_time or 0)
    assert first_request.attributes["pi_builder.failovers"] == 1  # type: ignore[index]
    assert "pi_builder.failover" in [name for name, _ in events(first_request)]
    request_ids = {r.context.span_id for r in requests}
    assert all(s.parent is not None and s.parent.span_id in request_ids for s in attempts)
    # every request span sits in the application's trace (under the agent span, possibly via LangGraph's spans)
    assert all(r.context.trace_id == parent.context.trace_id for r in requests)
    assert attempts[0].attributes["pi_builder.error.kind"] == "overloaded"  # type: ignore[index]
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert attempts[2].attributes["gen_ai.usage.output_tokens"] > 0  # type: ignore[index,operator]
    assert otel.value("pi_builder.failovers", pi_builder__provider__id="a") == 1
