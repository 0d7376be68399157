"""A scripted tool-calling chat model and a keyword decision model for the agent-middleware tests.

``ToolChat`` is a real ``BaseChatModel``: given tools it calls the first one, and once the conversation
holds a tool result it answers ``"<key>: <result>"``; when streamed (LangGraph's ``stream_mode="messages"``)
it sends that answer word by word. It records the tool names of every call it receives.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.decisions import BaseDecisionModel, ChoiceAnswer, ClassifierResponse
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool

USAGE = {"input_tokens": 11, "output_tokens": 5, "total_tokens": 16}


class ToolChat(BaseChatModel):
    """Calls the first bound tool with ``tool_args``, then answers with the tool's result; or fails with ``fail``."""

    key: str
    fail: Exception | None = None
    tool_args: dict[str, Any] = {"city": "Oslo"}  # noqa: RUF012
    cut_after: int | None = None  # streaming only: raise ``cut_error`` after this many words of a text answer
    cut_error: Exception = ConnectionError("stream cut")
    first_token_delay_s: float = 0.0  # async streaming only: wait this long before the first chunk
    answer_delay_s: float = 0.0  # async, not streamed: wait this long before answering
    calls: int = 0
    tools_seen: list[list[str]] = []  # noqa: RUF012

    @property
    def _llm_type(self) -> str:
        return "tool-chat"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        self.calls += 1
        tools = kwargs.get("tools") or []
        self.tools_seen = [*self.tools_seen, [t["function"]["name"] for t in tools]]
        if self.fail is not None:
            raise self.fail
        last = messages[-1]
        if isinstance(last, ToolMessage):
            return AIMessage(content=f"{self.key}: {last.content}", usage_metadata=dict(USAGE))  # type: ignore[arg-type]
        if tools:
            call = {"name": tools[0]["function"]["name"], "args": dict(self.tool_args), "id": f"call_{self.calls}"}
            return AIMessage(content="", tool_calls=[call], usage_metadata=dict(USAGE))  # type: ignore[arg-type]
        return AIMessage(content=f"{self.key} says hi", usage_metadata=dict(USAGE))  # type: ignore[arg-type]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages, kwargs))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.answer_delay_s:
            await asyncio.sleep(self.answer_delay_s)
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages, kwargs))])

    def _chunks(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> Iterator[AIMessageChunk]:
        answer = self._reply(messages, kwargs)
        if answer.tool_calls:
            call = answer.tool_calls[0]
            yield AIMessageChunk(
                content="",
                tool_call_chunks=[
                    {"name": call["name"], "args": json.dumps(call["args"]), "id": call["id"], "index": 0}
                ],
            )
        else:
            words = str(answer.content).split(" ")
            for index, word in enumerate(words):
                if index == self.cut_after:
                    raise self.cut_error
                yield AIMessageChunk(content=word if index == 0 else f" {word}")
        yield AIMessageChunk(content="", usage_metadata=dict(USAGE))  # type: ignore[arg-type]

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages, kwargs):  # LangChain emits each token to the callbacks
            yield ChatGenerationChunk(message=chunk)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if self.first_token_delay_s:
            await asyncio.sleep(self.first_token_delay_s)
        for chunk in self._chunks(messages, kwargs):
            yield ChatGenerationChunk(message=chunk)


class KeywordRouter(BaseDecisionModel):
    """Chooses ``"powerful"`` when the latest human message says "hard", else ``"fast"``."""

    model: str = "keywords"

    @property
    def _provider(self) -> str:
        return "tests"

    def _classify(self, state: Any, questions: dict[str, Any]) -> ClassifierResponse:
        text = str(state.content if isinstance(state, HumanMessage) else state)
        label = "powerful" if "hard" in text else "fast"
        answers = {
            qid: ChoiceAnswer(type="choice", choice=label, probabilities={label: 1.0}, confidence=1.0)
            for qid in questions
        }
        return ClassifierResponse(model=self.model, answers=answers)
