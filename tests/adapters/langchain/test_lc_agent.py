"""HealthAwareModelMiddleware in real ``create_agent`` graphs with real tool calls."""

from __future__ import annotations

import pytest
from agent_fakes import KeywordRouter, ToolChat
from langchain.agents import create_agent
from langchain.agents.middleware import (
    AgentMiddleware,
    HumanInTheLoopMiddleware,
    ModelChoice,
    ModelRouterMiddleware,
)
from langchain_core import exceptions as lc
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command, interrupt
from pi_builder_middleware.adapters.langchain import HealthAwareModelMiddleware

from pi_builder_middleware import CircuitState, ConfigError, ErrorKind, Middleware, Provider


def get_weather(city: str) -> str:
    """Look up the weather in a city."""
    return f"sunny in {city}"


def ask(text: str = "weather in Oslo?") -> dict:
    return {"messages": [HumanMessage(text)]}


def final(result: dict) -> AIMessage:
    message = result["messages"][-1]
    assert isinstance(message, AIMessage)
    return message


def tool_results(result: dict) -> list[str]:
    return [str(m.content) for m in result["messages"] if isinstance(m, ToolMessage)]


class Unavailable(lc.ModelAPIError):
    status_code = 503


# -- failover and health ------------------------------------------------------------------------------------
def test_a_5xx_primary_is_left_after_its_breaker_trips_and_the_tool_loop_completes_on_the_backup(make_mw):
    a, b = ToolChat(key="a", fail=Unavailable("down")), ToolChat(key="b")
    health = HealthAwareModelMiddleware({"a": a, "b": b}, middleware=make_mw("a", "b"))
    agent = create_agent(a, tools=[get_weather], middleware=[health])

    result = agent.invoke(ask())
    assert tool_results(result) == ["sunny in Oslo"]
    assert final(result).content == "b: sunny in Oslo"
    assert final(result).response_metadata["provider_id"] == "b"
    assert b.tools_seen == [["get_weather"], ["get_weather"]]  # the agent's tools reached the backup
    assert a.calls == 2  # both model calls of the run tried the primary: two failures trip the aggressive breaker
    assert health.middleware.failover.state("a") is CircuitState.OPEN

    result = agent.invoke(ask())
    assert final(result).content == "b: sunny in Oslo"
    assert a.calls == 2  # left alone while its breaker is open
    snapshot = health.middleware.health("b")
    assert (snapshot.successes, snapshot.tokens_in, snapshot.tokens_out) == (4, 4 * 11, 4 * 5)
    assert health.middleware.health("a").failures == 2


async def test_a_rate_limited_primary_is_skipped_while_it_cools_down_async(make_mw):
    a, b = ToolChat(key="a", fail=lc.ModelRateLimitError("slow down")), ToolChat(key="b")
    health = HealthAwareModelMiddleware({"a": a, "b": b}, middleware=make_mw("a", "b"))
    agent = create_agent(a, tools=[get_weather], middleware=[health])

    result = await agent.ainvoke(ask())
    assert final(result).content == "b: sunny in Oslo"
    assert a.calls == 1  # the 429 cools "a" down: the tool loop's second model call goes straight to "b"
    assert health.middleware.health("a").rate_limited == 1
    assert health.middleware.failover.unavailable_reason("a") is not None

    result = await agent.ainvoke(ask())
    assert final(result).content == "b: sunny in Oslo" and a.calls == 1
    assert health.middleware.health("b").successes == 4


@pytest.mark.parametrize("use_async", [False, True])
async def test_a_bad_request_is_raised_at_once_without_trying_the_backup(make_mw, use_async):
    a, b = ToolChat(key="a", fail=lc.ModelInvalidRequestError("bad schema")), ToolChat(key="b")
    agent = create_agent(
        a, tools=[get_weather], middleware=[HealthAwareModelMiddleware({"a": a, "b": b}, middleware=make_mw("a", "b"))]
    )
    with pytest.raises(lc.ModelInvalidRequestError):
        if use_async:
            await agent.ainvoke(ask())
        else:
            agent.invoke(ask())
    assert (a.calls, b.calls) == (1, 0)


def test_the_agents_own_model_need_not_be_one_of_ours(make_mw):
    outsider = ToolChat(key="outsider", fail=RuntimeError("never called"))
    b = ToolChat(key="b")
    agent = create_agent(
        outsider, tools=[get_weather], middleware=[HealthAwareModelMiddleware({"b": b}, middleware=make_mw("b"))]
    )
    assert final(agent.invoke(ask())).content == "b: sunny in Oslo"
    assert outsider.calls == 0


# -- LangGraph control flow ---------------------------------------------------------------------------------
def test_human_in_the_loop_interrupt_and_resume(make_mw):
    a, b = ToolChat(key="a", fail=Unavailable("down")), ToolChat(key="b")
    health = HealthAwareModelMiddleware({"a": a, "b": b}, middleware=make_mw("a", "b", consecutive_failures=100))
    agent = create_agent(
        a,
        tools=[get_weather],
        checkpointer=InMemorySaver(),
        middleware=[health, HumanInTheLoopMiddleware(interrupt_on={"get_weather": True})],
    )
    config = {"configurable": {"thread_id": "t1"}}

    paused = agent.invoke(ask(), config)
    assert "__interrupt__" in paused
    assert tool_results(paused) == []  # the tool waits for a human
    resumed = agent.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config)
    assert tool_results(resumed) == ["sunny in Oslo"]
    assert final(resumed).content == "b: sunny in Oslo"


class AskFirst(AgentMiddleware):
    """Interrupts inside the model call (inside our wrap_model_call) until a human says go."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[object] = []

    def wrap_model_call(self, request, handler):
        self.answers.append(interrupt("call the model?"))
        return handler(request)

    async def awrap_model_call(self, request, handler):
        self.answers.append(interrupt("call the model?"))
        return await handler(request)


@pytest.mark.parametrize("use_async", [False, True])
async def test_an_interrupt_inside_the_model_call_passes_through_untouched(make_mw, use_async):
    a, b = ToolChat(key="a"), ToolChat(key="b")
    health = HealthAwareModelMiddleware({"a": a, "b": b}, middleware=make_mw("a", "b"))
    asker = AskFirst()
    agent = create_agent(a, tools=[get_weather], checkpointer=InMemorySaver(), middleware=[health, asker])
    config = {"configurable": {"thread_id": "t2"}}

    run = agent.ainvoke if use_async else agent.invoke
    paused = await run(ask(), config) if use_async else run(ask(), config)
    assert paused["__interrupt__"][0].value == "call the model?"
    # an interrupt is no failure: nothing recorded, no failover, nothing left in flight
    assert health.middleware.health("a").calls == 0 and (a.calls, b.calls) == (0, 0)
    assert health.middleware.router.in_flight("a") == 0

    resume = Command(resume="yes")
    while True:
        result = await run(resume, config) if use_async else run(resume, config)
        if "__interrupt__" not in result:
            break
    assert final(result).content == "a: sunny in Oslo"
    assert set(asker.answers) == {"yes"}
    assert health.middleware.health("a").successes == 2


# -- streaming ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_async", [False, True])
async def test_stream_mode_messages_emits_each_token_once(make_mw, use_async):
    a, b = ToolChat(key="a", fail=Unavailable("down")), ToolChat(key="b")
    health = HealthAwareModelMiddleware({"a": a, "b": b}, middleware=make_mw("a", "b"))
    agent = create_agent(a, tools=[get_weather], middleware=[health])

    if use_async:
        parts = [part async for part in agent.astream(ask(), stream_mode="messages")]
    else:
        parts = list(agent.stream(ask(), stream_mode="messages"))
    tokens = [
        str(m.content) for m, meta in parts if isinstance(m, AIMessageChunk) and meta["langgraph_node"] == "model"
    ]
    assert "".join(tokens) == "b: sunny in Oslo"
    assert [t for t in tokens if t] == ["b:", " sunny", " in", " Oslo"]
    assert health.middleware.health("b").ttft_avg_ms is not None  # streamed: time to first token recorded


def test_invoke_records_no_time_to_first_token(make_mw):
    b = ToolChat(key="b")
    health = HealthAwareModelMiddleware({"b": b}, middleware=make_mw("b"))
    create_agent(b, tools=[get_weather], middleware=[health]).invoke(ask())
    assert health.middleware.health("b").ttft_avg_ms is None
    assert health.middleware.health("b").successes == 2


# -- composition with LangChain's own middleware ------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
@pytest.mark.parametrize("use_async", [False, True])
async def test_model_router_picks_the_group_and_we_pick_its_healthy_member(make_mw, use_async):
    fast_a, fast_b = ToolChat(key="fast_a", fail=Unavailable("down")), ToolChat(key="fast_b")
    big_a, big_b = ToolChat(key="big_a"), ToolChat(key="big_b")
    mw = make_mw(
        Provider(id="fast_a", group="fast"),
        Provider(id="fast_b", group="fast"),
        Provider(id="big_a", group="powerful"),
        Provider(id="big_b", group="powerful"),
    )
    router = ModelRouterMiddleware(
        choices={
            "fast": ModelChoice(model=fast_a, criteria="easy tasks"),
            "powerful": ModelChoice(model=big_a, criteria="hard tasks"),
        },
        instructions="Pick the cheapest model that can do it.",
        classifier=KeywordRouter(),
    )
    health = HealthAwareModelMiddleware(
        {"fast_a": fast_a, "fast_b": fast_b, "big_a": big_a, "big_b": big_b}, middleware=mw
    )
    agent = create_agent(fast_a, tools=[get_weather], middleware=[router, health])

    async def run(text: str) -> dict:
        return await agent.ainvoke(ask(text)) if use_async else agent.invoke(ask(text))

    easy = await run("weather in Oslo?")
    assert final(easy).content == "fast_b: sunny in Oslo"  # the fast group's healthy member, never a big model
    hard = await run("hard question: weather in Oslo?")
    assert final(hard).content == "big_a: sunny in Oslo"
    assert (big_b.calls, fast_a.calls) == (0, 2)


def test_middleware_shared_with_the_chat_model_wrapper(make_mw):
    from pi_builder_middleware.adapters.langchain import HealthAwareChatModel

    a, b = ToolChat(key="a", fail=Unavailable("down")), ToolChat(key="b")
    mw = make_mw("a", "b")
    HealthAwareChatModel({"a": a, "b": b}, middleware=mw).invoke("hi")  # one failure of "a" seen by the wrapper
    health = HealthAwareModelMiddleware({"a": a, "b": b}, middleware=mw)
    create_agent(a, tools=[get_weather], middleware=[health]).invoke(ask())
    assert mw.health("a").failures == 2 and mw.failover.state("a") is CircuitState.OPEN
    assert a.calls == 2  # the agent's second model call skipped "a": one view of health


# -- construction ------------------------------------------------------------------------------------------
def test_models_may_be_init_chat_model_strings(monkeypatch):
    from langchain_openai import ChatOpenAI

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    health = HealthAwareModelMiddleware({"mini": "openai:gpt-4o-mini", "b": ToolChat(key="b")})
    assert isinstance(health.models["mini"], ChatOpenAI) and health.models["mini"].model_name == "gpt-4o-mini"
    assert list(health.middleware.providers) == ["mini", "b"]


@pytest.mark.parametrize(
    ("models", "field"),
    [
        ({}, "HealthAwareModelMiddleware.models"),
        ({"x": 42}, "HealthAwareModelMiddleware.models['x']"),
        ({"x": "no-such-provider:model"}, "HealthAwareModelMiddleware.models['x']"),
        ([ToolChat(key="x")], "HealthAwareModelMiddleware.models"),
    ],
)
def test_bad_models_are_config_errors_naming_the_entry(models, field):
    with pytest.raises(ConfigError) as info:
        HealthAwareModelMiddleware(models)
    assert info.value.field == field


def test_a_shared_middleware_must_know_every_key():
    with pytest.raises(ConfigError, match="'b'"):
        HealthAwareModelMiddleware({"b": ToolChat(key="b")}, middleware=Middleware([Provider(id="a")]))
    with pytest.raises(ConfigError, match="first_chunk_timeout_s"):
        HealthAwareModelMiddleware({"b": ToolChat(key="b")}, first_chunk_timeout_s=0)


def test_errors_are_classified_by_their_standard_type(make_mw):
    a, b = ToolChat(key="a", fail=lc.ModelConnectionError("refused")), ToolChat(key="b")
    health = HealthAwareModelMiddleware({"a": a, "b": b}, middleware=make_mw("a", "b", consecutive_failures=100))
    create_agent(a, tools=[get_weather], middleware=[health]).invoke(ask())
    assert health.middleware.classify(a.fail, "a") is ErrorKind.CONNECTION
    assert health.middleware.health("a").failures == 2


async def test_first_chunk_timeout_fails_a_silent_stream_over(make_mw):
    a, b = ToolChat(key="a", first_token_delay_s=30.0), ToolChat(key="b")
    mw = make_mw("a", "b", consecutive_failures=100)
    health = HealthAwareModelMiddleware({"a": a, "b": b}, middleware=mw, first_chunk_timeout_s=0.05)
    agent = create_agent(a, tools=[get_weather], middleware=[health])
    parts = [p async for kind, p in agent.astream(ask(), stream_mode=["messages", "values"]) if kind == "values"]
    assert final(parts[-1]).content == "b: sunny in Oslo"
    assert mw.health("a").failures == 2  # each model call of the loop gave "a" its 0.05 s, then went to "b"
    assert mw.router.in_flight("a") == 0
    # not streamed: no first chunk to wait for, "a" answers in full
    fresh = HealthAwareModelMiddleware({"a": a, "b": b}, middleware=make_mw("a", "b"), first_chunk_timeout_s=0.05)
    result = await create_agent(a, tools=[get_weather], middleware=[fresh]).ainvoke(ask())
    assert final(result).content == "a: sunny in Oslo"


def test_alongside_summarization_whose_own_model_is_health_aware_too(make_mw):
    from langchain.agents.middleware import SummarizationMiddleware
    from pi_builder_middleware.adapters.langchain import HealthAwareChatModel

    a, b = ToolChat(key="a", fail=Unavailable("down")), ToolChat(key="b")
    mw = make_mw("a", "b", consecutive_failures=100)
    summarizer = HealthAwareChatModel({"a": a, "b": b}, middleware=mw)  # one view of health for both
    agent = create_agent(
        a,
        tools=[get_weather],
        middleware=[
            SummarizationMiddleware(model=summarizer, trigger=("messages", 5), keep=("messages", 1)),
            HealthAwareModelMiddleware({"a": a, "b": b}, middleware=mw),
        ],
    )
    history = [
        HumanMessage("hello"),
        AIMessage("hi"),
        HumanMessage("how are you?"),
        AIMessage("fine"),
        HumanMessage("weather in Oslo?"),
    ]
    result = agent.invoke({"messages": history})
    assert final(result).content == "b: sunny in Oslo"
    assert any("b says hi" in str(m.content) for m in result["messages"])  # the summary, written by "b"
    assert mw.health("b").successes == 3  # the summary and both model calls of the tool loop


def test_why_model_retry_must_not_sit_inside_ours(make_mw):
    """README: ModelRetryMiddleware's default on_failure="continue" turns the error into an answer."""
    from langchain.agents.middleware import ModelRetryMiddleware

    a, b = ToolChat(key="a", fail=Unavailable("down")), ToolChat(key="b")
    health = HealthAwareModelMiddleware({"a": a, "b": b}, middleware=make_mw("a", "b"))
    retry = ModelRetryMiddleware(max_retries=2, initial_delay=0.0, jitter=False)
    result = create_agent(a, tools=[get_weather], middleware=[health, retry]).invoke(ask())
    assert a.calls == 3 and b.calls == 0  # three requests to the dead provider, never failed over
    assert "b:" not in str(final(result).content)  # the "answer" is the error, as text
    assert health.middleware.health("a").successes == 1  # and our middleware saw a success


@pytest.mark.parametrize("use_async", [False, True])
async def test_the_chat_model_entry_point_as_the_agents_model(make_mw, use_async):
    """create_agent(model=HealthAwareChatModel(...)): the agent's bind_tools reaches the model that serves."""
    from pi_builder_middleware.adapters.langchain import HealthAwareChatModel

    a, b = ToolChat(key="a", fail=Unavailable("down")), ToolChat(key="b")
    llm = HealthAwareChatModel({"a": a, "b": b}, middleware=make_mw("a", "b", consecutive_failures=100))
    agent = create_agent(llm, tools=[get_weather])
    if use_async:
        parts = [p async for p in agent.astream(ask(), stream_mode=["messages", "values"])]
    else:
        parts = list(agent.stream(ask(), stream_mode=["messages", "values"]))
    result = next(p for kind, p in reversed(parts) if kind == "values")
    assert final(result).content == "b: sunny in Oslo" and tool_results(result) == ["sunny in Oslo"]
    assert b.tools_seen == [["get_weather"], ["get_weather"]] and a.tools_seen == [["get_weather"]] * 2
    tokens = [
        str(m.content)
        for kind, (m, meta) in ((k, p) for k, p in parts if k == "messages")
        if isinstance(m, AIMessageChunk) and meta["langgraph_node"] == "model" and m.content
    ]
    assert "".join(tokens) == "b: sunny in Oslo"  # once, although two chat-model runs are nested


def test_exported_from_the_adapter_package_and_imported_only_when_used():
    import subprocess
    import sys

    import pi_builder_middleware.adapters.langchain as package

    assert "HealthAwareModelMiddleware" in package.__all__ and package.__all__ == sorted(package.__all__)
    assert package.HealthAwareModelMiddleware is HealthAwareModelMiddleware
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = package.NoSuchThing
    code = (
        "import sys, pi_builder_middleware.adapters.langchain as p; "
        "print('langchain.agents' in sys.modules); p.HealthAwareModelMiddleware; "
        "print('langchain.agents' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]  # the wrappers work with langchain-core alone


def test_a_stream_cut_mid_answer_fails_over_and_the_state_keeps_only_the_whole_answer(make_mw):
    """README: the agent's state gets the backup's complete answer; the messages stream showed the cut part."""
    a, b = ToolChat(key="a", cut_after=2), ToolChat(key="b")
    health = HealthAwareModelMiddleware({"a": a, "b": b}, middleware=make_mw("a", "b", consecutive_failures=100))
    agent = create_agent(a, tools=[get_weather], middleware=[health])
    parts = list(agent.stream(ask(), stream_mode=["messages", "values"]))
    result = next(p for kind, p in reversed(parts) if kind == "values")
    answers = [m for m in result["messages"] if isinstance(m, AIMessage) and m.content]
    assert [m.content for m in answers] == ["b: sunny in Oslo"]
    tokens = [
        str(m.content)
        for kind, (m, meta) in ((k, p) for k, p in parts if k == "messages")
        if isinstance(m, AIMessageChunk) and meta["langgraph_node"] == "model" and m.content
    ]
    assert tokens == ["a:", " sunny", "b:", " sunny", " in", " Oslo"]
    assert health.middleware.health("a").failures == 1
