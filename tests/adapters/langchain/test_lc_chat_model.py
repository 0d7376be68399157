"""HealthAwareChatModel as a BaseChatModel; callbacks and tools on both front-ends."""

from __future__ import annotations

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import ConfigurableField, RunnableBinding, RunnableConfig, RunnableLambda
from lc_fakes import HTTPError, Recorder, ScriptedChat
from pi_builder_middleware.adapters.langchain import HealthAwareChatModel, HealthAwareFallbacks
from pydantic import BaseModel

from pi_builder_middleware import StreamInterruptedError


class Weather(BaseModel):
    """Weather in a city."""

    city: str
    celsius: float


def get_weather(city: str) -> str:
    """Look up the weather."""
    return f"sunny in {city}"


def test_is_a_chat_model_that_fails_over(make_mw):
    a, b = ScriptedChat(key="a", fail=HTTPError(503)), ScriptedChat(key="b")
    llm = HealthAwareChatModel({"a": a, "b": b}, middleware=make_mw("a", "b"))
    assert isinstance(llm, BaseChatModel)
    message = llm.invoke("q")
    assert isinstance(message, AIMessage)
    assert message.content == "b says hi"
    assert message.response_metadata["provider_id"] == "b"
    assert message.usage_metadata["output_tokens"] == 3
    assert llm._llm_type == "pi-builder-middleware"
    assert llm._identifying_params["models"]["a"]["type"] == "ScriptedChat"
    assert llm._identifying_params["strategy"] == "failover"


async def test_async_and_streaming(make_mw):
    a, b = ScriptedChat(key="a", fail=HTTPError(500)), ScriptedChat(key="b")
    llm = HealthAwareChatModel({"a": a, "b": b}, middleware=make_mw("a", "b", consecutive_failures=100))
    assert (await llm.ainvoke("q")).content == "b says hi"
    assert "".join(c.content for c in llm.stream("q")) == "b says hi"
    assert "".join([c.content async for c in llm.astream("q")]) == "b says hi"
    # two failures close together make "a" suspect: the third request goes straight to "b" (no probe
    # is due on the manual clock)
    assert (a.calls, b.calls) == (2, 3)


async def test_mid_stream_cut_raises_stream_interrupted(make_mw):
    a = ScriptedChat(key="a", fail=ConnectionError("cut"), cut_after=2)
    llm = HealthAwareChatModel({"a": a, "b": ScriptedChat(key="b")}, middleware=make_mw("a", "b"))
    with pytest.raises(StreamInterruptedError) as info:
        _ = [c async for c in llm.astream("q")]
    assert info.value.provider_id == "a"


def test_works_with_langchains_own_fake_chat_models():
    llm = HealthAwareChatModel(
        {
            "list": FakeListChatModel(responses=["from the list"]),
            "generic": GenericFakeChatModel(messages=iter(["unused"])),
        }
    )
    assert llm.invoke("q").content == "from the list"
    assert [m.content for m in llm.batch(["q", "q"])] == ["from the list", "from the list"]


@pytest.mark.parametrize("front_end", [HealthAwareFallbacks, HealthAwareChatModel])
def test_callbacks_see_the_inner_call_of_the_provider_that_served(make_mw, front_end):
    a, b = ScriptedChat(key="a", fail=HTTPError(503)), ScriptedChat(key="b")
    llm = front_end({"a": a, "b": b}, middleware=make_mw("a", "b"))
    recorder = Recorder()
    llm.invoke("q", config={"callbacks": [recorder], "tags": ["mine"]})

    inner_starts = [e for e in recorder.of("chat_start") if e[1] == "ScriptedChat"]
    assert [tag for e in inner_starts for tag in e[4] if tag.startswith("pbm:")] == ["pbm:provider=a", "pbm:provider=b"]
    assert all("mine" in e[4] for e in inner_starts)  # inherited tags reach the real calls
    outer_run = next(e[2] for e in recorder.events if e[1] == llm.get_name() and e[0] in ("chat_start", "chain_start"))
    assert {e[3] for e in inner_starts} == {outer_run}  # child runs of the wrapper's run
    run_a, run_b = inner_starts[0][2], inner_starts[1][2]
    assert ("llm_error", "ScriptedChat", run_a, outer_run, []) in recorder.events
    assert ("llm_end", "ScriptedChat", run_b, outer_run, []) in recorder.events


@pytest.mark.parametrize("front_end", [HealthAwareFallbacks, HealthAwareChatModel])
def test_bind_tools_binds_every_model_and_shares_the_middleware(make_mw, front_end):
    a = ScriptedChat(key="a", fail=HTTPError(503))
    b = ScriptedChat(key="b", tool_args={"city": "Oslo"})
    llm = front_end({"a": a, "b": b}, middleware=make_mw("a", "b"))
    with_tools = llm.bind_tools([get_weather], tool_choice="any")
    if front_end is HealthAwareChatModel:  # LangChain's convention for chat models: the model, bound to the tools
        assert isinstance(with_tools, RunnableBinding) and with_tools.bound is llm
        assert with_tools.kwargs["tools"][0]["function"]["name"] == "get_weather"
    else:
        assert type(with_tools) is front_end
    assert with_tools.middleware is llm.middleware

    message = with_tools.invoke("weather in Oslo?")
    assert message.tool_calls[0]["name"] == "get_weather"
    assert message.tool_calls[0]["args"] == {"city": "Oslo"}
    assert a.last_kwargs["tools"][0]["function"]["name"] == "get_weather"  # a got the tools too
    assert b.last_kwargs["tool_choice"] == "any"
    assert llm.middleware.health("a").failures == 1  # one view of health for both wrappers


@pytest.mark.parametrize("front_end", [HealthAwareFallbacks, HealthAwareChatModel])
async def test_with_structured_output_parses_the_serving_models_answer(make_mw, front_end):
    a = ScriptedChat(key="a", fail=HTTPError(500))
    b = ScriptedChat(key="b", tool_args={"city": "Oslo", "celsius": 21.5})
    llm = front_end({"a": a, "b": b}, middleware=make_mw("a", "b"))
    structured = llm.with_structured_output(Weather)
    assert isinstance(structured, HealthAwareFallbacks)
    assert structured.invoke("weather?") == Weather(city="Oslo", celsius=21.5)
    assert await structured.ainvoke("weather?") == Weather(city="Oslo", celsius=21.5)

    raw = llm.with_structured_output(Weather, include_raw=True).invoke("weather?")
    assert raw["parsed"] == Weather(city="Oslo", celsius=21.5)
    # tokens are recorded although the parsed outputs carry none: they come from the inner LLM runs
    assert (llm.middleware.health("b").tokens_in, llm.middleware.health("b").tokens_out) == (3 * 7, 3 * 3)


@pytest.mark.parametrize("front_end", [HealthAwareFallbacks, HealthAwareChatModel])
def test_bind_tools_names_the_model_that_cannot(front_end):
    llm = front_end({"ok": ScriptedChat(key="ok"), "plain": FakeListChatModel(responses=["x"])})
    with pytest.raises(NotImplementedError, match="'plain'"):
        llm.bind_tools([get_weather])


@pytest.mark.parametrize("use_async", [False, True])
async def test_streamed_calls_are_child_runs_too(make_mw, use_async):
    """LangChain calls _stream without the run manager; the wrapper still parents the real calls."""
    llm = HealthAwareChatModel(
        {"a": ScriptedChat(key="a", fail=HTTPError(503)), "b": ScriptedChat(key="b")}, middleware=make_mw("a", "b")
    )
    recorder = Recorder()
    config = {"callbacks": [recorder]}
    if use_async:
        text = "".join([c.content async for c in llm.astream("q", config=config)])
    else:
        text = "".join(c.content for c in llm.stream("q", config=config))
    assert text == "b says hi"
    outer, *inner = recorder.of("chat_start")
    assert outer[1] == "HealthAwareChatModel"
    assert [(e[1], e[3]) for e in inner] == [("ScriptedChat", outer[2])] * 2
    assert all("nostream" in e[4] for e in inner)  # the wrapper emits the tokens; LangGraph shows them once
    assert recorder.of("llm_end")[-1][2] == outer[2]


async def test_stream_events_show_the_real_calls(make_mw):
    llm = HealthAwareChatModel(
        {"a": ScriptedChat(key="a", fail=HTTPError(503)), "b": ScriptedChat(key="b")}, middleware=make_mw("a", "b")
    )
    events = [e async for e in llm.astream_events("q", version="v2")]
    outer_id = next(e["run_id"] for e in events if e["event"] == "on_chat_model_start")
    inner = [e for e in events if e["event"] == "on_chat_model_start" and e["name"] == "ScriptedChat"]
    assert [e["parent_ids"][-1] for e in inner] == [outer_id, outer_id]
    streamed = [
        e["data"]["chunk"].content
        for e in events
        if e["event"] == "on_chat_model_stream" and e["name"] == "HealthAwareChatModel"
    ]
    assert "".join(streamed) == "b says hi"


async def test_invoke_under_a_streaming_handler_lets_the_real_model_stream(make_mw):
    """invoke() inside astream_events (as in LangGraph nodes): tokens come from the serving model's run."""
    llm = HealthAwareChatModel(
        {"a": ScriptedChat(key="a", fail=HTTPError(503)), "b": ScriptedChat(key="b")}, middleware=make_mw("a", "b")
    )
    node = RunnableLambda(lambda text, config: llm.invoke(text, config=config))
    events = [e async for e in node.astream_events("q", version="v2")]
    tokens = [
        (e["name"], e["tags"][-1], e["data"]["chunk"].content) for e in events if e["event"] == "on_chat_model_stream"
    ]
    assert "".join(t[2] for t in tokens) == "b says hi"
    assert {t[:2] for t in tokens} == {("ScriptedChat", "pbm:provider=b")}


def _configurable_answers() -> HealthAwareChatModel:
    model = FakeListChatModel(responses=["default"]).configurable_fields(responses=ConfigurableField(id="answers"))
    return HealthAwareChatModel({"a": model})


def _configurable_alternatives() -> HealthAwareChatModel:
    model = FakeListChatModel(responses=["default"]).configurable_alternatives(
        ConfigurableField(id="which"),
        default_key="default",
        other=GenericFakeChatModel(messages=iter(["from the other", "from the other"])),
    )
    return HealthAwareChatModel({"a": model})


async def test_configurable_values_reach_the_wrapped_model():
    llm = _configurable_answers()
    chosen = {"configurable": {"answers": ["chosen"]}}
    assert llm.invoke("q", chosen).content == "chosen"
    assert (await llm.ainvoke("q", chosen)).content == "chosen"
    assert "".join(str(c.content) for c in llm.stream("q", chosen)) == "chosen"
    assert "".join([str(c.content) async for c in llm.astream("q", chosen)]) == "chosen"
    assert llm.with_config(chosen).invoke("q").content == "chosen"
    assert [spec.id for spec in llm.config_specs] == ["answers"]


async def test_configurable_alternatives_pick_the_wrapped_model():
    llm = _configurable_alternatives()
    other = {"configurable": {"which": "other"}}
    assert llm.invoke("q", other).content == "from the other"
    assert (await llm.ainvoke("q", other)).content == "from the other"
    llm = _configurable_alternatives()
    assert "".join(str(c.content) for c in llm.stream("q", other)) == "from the other"


async def test_batches_pass_each_inputs_own_config():
    llm = _configurable_answers()
    configs: list[RunnableConfig] = [{"configurable": {"answers": ["one"]}}, {"configurable": {"answers": ["two"]}}]
    assert [m.content for m in llm.batch(["q", "q"], configs)] == ["one", "two"]
    assert [m.content for m in await llm.abatch(["q", "q"], configs)] == ["one", "two"]


async def test_without_configurable_the_default_is_used():
    for llm in (_configurable_answers(), _configurable_alternatives()):
        assert llm.invoke("q").content == "default"
        assert (await llm.ainvoke("q")).content == "default"
        assert "".join(str(c.content) for c in llm.stream("q")) == "default"
        assert llm.invoke("q", {"configurable": {"unrelated": 1}}).content == "default"


@pytest.mark.parametrize("streaming", [False, True])
def test_configurable_values_keep_the_child_runs(streaming):
    llm = _configurable_answers()
    recorder = Recorder()
    config: RunnableConfig = {"configurable": {"answers": ["chosen"]}, "callbacks": [recorder], "tags": ["mine"]}
    if streaming:
        assert "".join(str(c.content) for c in llm.stream("q", config)) == "chosen"
    else:
        assert llm.invoke("q", config).content == "chosen"
    starts = recorder.of("chat_start")
    outer = next(e for e in starts if e[1] == llm.get_name())
    inner = [e for e in starts if "pbm:provider=a" in e[4]]
    assert len(inner) == 1 and inner[0][3] == outer[2]  # still a child run of the wrapper's run
    assert "mine" in inner[0][4]
    assert ("nostream" in inner[0][4]) == streaming


class AbsurdUsageChat(ScriptedChat):
    """Answers, but reports token counts no Usage accepts (as a buggy provider might)."""

    def _answer(self, **kwargs):
        message = super()._answer(**kwargs)
        message.usage_metadata = {"input_tokens": -3, "output_tokens": 10**12, "total_tokens": 10**12}
        return message


def test_absurd_token_counts_from_a_provider_are_clamped_and_the_answer_recorded(make_mw):
    from pi_builder_middleware import MAX_TOKENS

    mw = make_mw("a")
    llm = HealthAwareChatModel({"a": AbsurdUsageChat(key="a")}, middleware=mw)
    assert llm.invoke("q").content == "a says hi"
    health = mw.health("a")
    assert (health.successes, health.tokens_in, health.tokens_out) == (1, 0, MAX_TOKENS)
    assert mw.router.in_flight("a") == 0
