"""OpenTelemetry through the LangChain front-ends: HealthAwareFallbacks and HealthAwareChatModel with real
ChatOpenAI clients over HTTP to the provider simulator (in-memory SDK exporters)."""

from __future__ import annotations

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from otel_support import Otel, chat, events
from pi_builder_middleware.adapters.langchain import HealthAwareChatModel, HealthAwareFallbacks
from pi_builder_middleware.testing import SimOutcome, Simulator

from pi_builder_middleware import FailoverConfig, Middleware, Provider

PROMPT = ChatPromptTemplate.from_messages([("user", "{question}")])


def mw(otel: Otel) -> Middleware:
    return Middleware(
        [Provider(id="a", model="openai/sim"), Provider(id="b", model="openai/sim")],
        strategy="failover",
        failover=FailoverConfig(consecutive_failures=1, jitter=0.0),
        telemetry=otel.telemetry,
    )


def check_failed_over_tree(otel: Otel, parent_name: str) -> None:
    parent = otel.one(parent_name)
    request = otel.one("pi_builder.request")
    assert request.parent is not None and request.parent.span_id == parent.context.span_id
    first, second = otel.attempt_spans()
    assert [s.attributes["pi_builder.provider.id"] for s in (first, second)] == ["a", "b"]  # type: ignore[index]
    assert all(
        s.kind is SpanKind.CLIENT and s.parent is not None and s.parent.span_id == request.context.span_id
        for s in (first, second)
    )
    assert first.attributes["error.type"] == "OpenAIAPIError"  # type: ignore[index]  # langchain-openai wraps the 503
    assert first.attributes["pi_builder.error.kind"] == "overloaded"  # type: ignore[index]  # 503
    assert second.status.status_code is StatusCode.UNSET
    assert second.attributes["gen_ai.usage.output_tokens"] == 16  # type: ignore[index]  # the simulator's answer
    assert request.attributes["pi_builder.failovers"] == 1  # type: ignore[index]
    assert "pi_builder.failover" in [name for name, _ in events(request)]
    assert (
        otel.value("gen_ai.client.operation.duration", pi_builder__provider__id="a", error__type="OpenAIAPIError") == 1
    )
    assert otel.value("pi_builder.failovers", pi_builder__provider__id="a") == 1


def test_fallbacks_invoke_that_fails_over(sim: Simulator, otel: Otel) -> None:
    llm = HealthAwareFallbacks({"a": chat(sim, "a"), "b": chat(sim, "b")}, middleware=mw(otel))
    chain = PROMPT | llm | StrOutputParser()
    sim.down("a")
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("chain"):
        assert chain.invoke({"question": "hi"}).startswith("b")
    check_failed_over_tree(otel, "chain")


def test_the_wrapped_runnable_runs_with_the_attempt_span_current(otel: Otel) -> None:
    seen: dict[str, int] = {}

    def answer(name: str) -> RunnableLambda[str, str]:
        def run(text: str) -> str:
            seen[name] = trace.get_current_span().get_span_context().span_id
            if name == "a":
                raise ConnectionError("refused")
            return f"{name}: {text}"

        return RunnableLambda(run)

    llm = HealthAwareFallbacks({"a": answer("a"), "b": answer("b")}, middleware=mw(otel))
    assert llm.invoke("hi") == "b: hi"
    by_provider = {s.attributes["pi_builder.provider.id"]: s.context.span_id for s in otel.attempt_spans()}  # type: ignore[index]
    assert seen == by_provider  # LangChain's own run (and anything it traces) nests under the attempt's span


async def test_chat_model_ainvoke_that_fails_over(sim: Simulator, otel: Otel) -> None:
    llm = HealthAwareChatModel({"a": chat(sim, "a"), "b": chat(sim, "b")}, middleware=mw(otel))
    sim.down("a")
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("agent step"):
        message = await llm.ainvoke("hi")
    assert str(message.content).startswith("b")
    check_failed_over_tree(otel, "agent step")


@pytest.mark.parametrize("use_async", [False, True])
async def test_chat_model_stream_that_fails_over(sim: Simulator, otel: Otel, use_async: bool) -> None:
    llm = HealthAwareChatModel({"a": chat(sim, "a"), "b": chat(sim, "b")}, middleware=mw(otel))
    sim.down("a", SimOutcome.OVERLOADED)
    if use_async:
        text = "".join([str(c.content) async for c in llm.astream("hi")])
    else:
        text = "".join(str(c.content) for c in llm.stream("hi"))
    assert text.startswith("b")
    first, second = otel.attempt_spans()
    assert first.attributes["pi_builder.error.kind"] == "overloaded"  # type: ignore[index]
    assert second.attributes["gen_ai.request.stream"] is True  # type: ignore[index]
    assert second.attributes["pi_builder.ttft_s"] > 0  # type: ignore[index, operator]
    request = otel.one("pi_builder.request")
    assert second.end_time is not None and request.end_time is not None and request.end_time >= second.end_time
    assert otel.value("gen_ai.client.operation.time_to_first_chunk", pi_builder__provider__id="b") == 1
    assert otel.value("pi_builder.requests", pi_builder__outcome="answered", pi_builder__failed_over=True) == 1
