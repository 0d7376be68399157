"""LangChain's standard unit tests for chat-model integrations, run on ``HealthAwareChatModel``.

The same ``langchain_tests.unit_tests.ChatModelUnitTests`` every LangChain integration package runs.
Serialisation is not supported (``is_lc_serializable`` is False, like ``ChatOpenAI``), for which the
suite's own ``test_serdes`` skips itself; ``test_init_from_env`` skips itself because the model reads
no environment variables (it wraps models that do).
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableBinding, RunnableLambda
from langchain_openai import ChatOpenAI
from langchain_tests.unit_tests import ChatModelUnitTests
from lc_fakes import HTTPError, ScriptedChat
from pi_builder_middleware.adapters.langchain import HealthAwareChatModel

from pi_builder_middleware import CircuitState, Outcome


class TestHealthAwareChatModelStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return HealthAwareChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "models": {
                "openai/primary": ChatOpenAI(model="gpt-4o-mini", api_key="sk-test", max_retries=0),
                "openai/backup": ChatOpenAI(model="gpt-4.1-mini", api_key="sk-test", max_retries=0),
            }
        }


# -- what the standard tests only touch: tools reach the chosen model, params name the model in use -------------
def get_weather(city: str) -> str:
    """Look up the weather."""
    return f"sunny in {city}"


def test_tools_bound_the_standard_way_reach_the_model_that_serves(make_mw):
    a = ScriptedChat(key="a", fail=HTTPError(503))
    b = ScriptedChat(key="b", tool_args={"city": "Oslo"})
    llm = HealthAwareChatModel({"a": a, "b": b}, middleware=make_mw("a", "b"))
    bound = llm.bind_tools([get_weather], tool_choice="any", parallel_tool_calls=False)
    assert isinstance(bound, RunnableBinding)
    message = bound.invoke("weather in Oslo?")
    assert message.tool_calls[0]["args"] == {"city": "Oslo"}
    assert message.response_metadata["provider_id"] == "b"
    for model in (a, b):  # each through its own bind_tools: OpenAI format, tool_choice and options passed on
        assert [t["function"]["name"] for t in model.last_kwargs["tools"]] == ["get_weather"]
        assert model.last_kwargs["tool_choice"] == "any"
        assert model.last_kwargs["parallel_tool_calls"] is False
        assert "pbm_tool_options" not in model.last_kwargs
    assert llm.invoke("plain").content == "b says hi"  # the unbound model: no tools
    assert "tools" not in b.last_kwargs


async def test_tools_bound_with_plain_bind_also_reach_each_model(make_mw):
    b = ScriptedChat(key="b", tool_args={"city": "Rome"})
    llm = HealthAwareChatModel({"b": b}, middleware=make_mw("b"))
    bound = llm.bind(tools=[get_weather], tool_choice="auto")  # not through bind_tools: bound at call time
    message = await bound.ainvoke("weather?")
    assert message.tool_calls[0]["args"] == {"city": "Rome"}
    assert b.last_kwargs["tools"][0]["function"]["name"] == "get_weather"
    chunks = [c async for c in bound.astream("weather?")]
    assert chunks and b.last_kwargs["tool_choice"] == "auto"


def test_standard_params_follow_the_provider_a_call_would_start_with(make_mw, clock):
    primary = ChatOpenAI(model="gpt-4o-mini", api_key="sk-test", max_retries=0, temperature=0.2, max_tokens=50)
    backup = ChatOpenAI(model="gpt-4.1-mini", api_key="sk-test", max_retries=0)
    llm = HealthAwareChatModel({"p": primary, "b": backup}, middleware=make_mw("p", "b"))
    params = llm._get_ls_params(stop=["END"])
    assert params == {
        "ls_provider": "openai",
        "ls_model_name": "gpt-4o-mini",
        "ls_model_type": "chat",
        "ls_temperature": 0.2,
        "ls_max_tokens": 50,
        "ls_stop": ["END"],
    }
    assert llm._get_ls_params(model="gpt-5")["ls_model_name"] == "gpt-5"
    for _ in range(2):  # the aggressive preset trips after two failures
        llm.middleware.record(Outcome("p", False, 0.1, error=HTTPError(503)))
    assert llm.middleware.failover.state("p") is not CircuitState.CLOSED
    assert llm._get_ls_params()["ls_model_name"] == "gpt-4.1-mini"  # the primary is out: the backup is in use


def test_standard_params_of_runnables_that_are_no_chat_models():
    llm = HealthAwareChatModel({"echo": RunnableLambda(lambda _: AIMessage(content="hi"))})
    assert llm._get_ls_params() == {
        "ls_provider": "pi_builder_middleware",
        "ls_model_name": "echo",
        "ls_model_type": "chat",
    }


def test_each_model_is_bound_once_per_bind_tools_not_per_call(make_mw, monkeypatch):
    from pi_builder_middleware.adapters.langchain import _standard

    derived: list[object] = []
    original = _standard.ToolBindings.derive
    monkeypatch.setattr(
        _standard.ToolBindings,
        "derive",
        lambda self, models, spec: derived.append(spec) or original(self, models, spec),
    )
    llm = HealthAwareChatModel({"b": ScriptedChat(key="b", tool_args={"city": "Oslo"})}, middleware=make_mw("b"))
    bound = llm.bind_tools([get_weather])
    for _ in range(3):
        assert bound.invoke("q").tool_calls[0]["args"] == {"city": "Oslo"}
    assert list(bound.stream("q"))
    assert len(derived) == 1
