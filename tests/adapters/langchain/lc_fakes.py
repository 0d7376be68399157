"""Scripted LangChain chat models and errors for the adapter's unit tests.

``ScriptedChat`` is a real ``BaseChatModel`` (LangChain runs its callbacks, caching and streaming
machinery around it) whose behaviour the test sets: fail with an error, cut a stream after some
chunks, wait before the first chunk, call tools. It counts the calls it receives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, BaseCallbackHandler, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.utils.function_calling import convert_to_openai_tool


class HTTPError(Exception):
    """An error carrying an HTTP status, as provider SDK errors do (the classifier reads ``status_code``)."""

    def __init__(self, status_code: int, message: str = "") -> None:
        super().__init__(message or f"HTTP {status_code}")
        self.status_code = status_code


class ScriptedChat(BaseChatModel):
    """A chat model that answers ``"<key> says hi"`` (as words, when streamed) unless told to fail.

    ``fail``: raise it on every call (before the first chunk when streaming, or after ``cut_after``
    chunks if that is set). ``first_chunk_delay_s``: wait before streaming. ``tool_args``: when tools
    are bound, answer with a call of the first tool with these arguments. ``reported_usage``: the
    ``usage_metadata`` of the answer (of the last chunk when streaming).
    """

    key: str
    fail: Exception | None = None
    cut_after: int | None = None
    first_chunk_delay_s: float = 0.0
    tool_args: dict[str, Any] | None = None
    reported_usage: dict[str, int] = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}  # noqa: RUF012
    calls: int = 0
    last_kwargs: dict[str, Any] | None = None

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _answer(self, **kwargs: Any) -> AIMessage:
        self.calls += 1
        self.last_kwargs = kwargs
        if self.fail is not None:
            raise self.fail
        usage: Any = dict(self.reported_usage)
        tools = kwargs.get("tools")
        if tools and self.tool_args is not None:
            name = tools[0]["function"]["name"]
            return AIMessage(
                content="", tool_calls=[{"name": name, "args": self.tool_args, "id": "call_1"}], usage_metadata=usage
            )
        return AIMessage(content=f"{self.key} says hi", usage_metadata=usage)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._answer(**kwargs))])

    def _chunks(self) -> Iterator[AIMessageChunk | Exception]:
        self.calls += 1
        if self.fail is not None and self.cut_after is None:
            yield self.fail
            return
        yield AIMessageChunk(content="")  # like OpenAI's leading role chunk
        for index, word in enumerate([self.key, " says", " hi"]):
            if self.fail is not None and index == self.cut_after:
                yield self.fail
                return
            yield AIMessageChunk(content=word)
        yield AIMessageChunk(content="", usage_metadata=dict(self.reported_usage))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if self.first_chunk_delay_s:
            time.sleep(self.first_chunk_delay_s)
        for item in self._chunks():
            if isinstance(item, Exception):
                raise item
            yield ChatGenerationChunk(message=item)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if self.first_chunk_delay_s:
            await asyncio.sleep(self.first_chunk_delay_s)
        for item in self._chunks():
            if isinstance(item, Exception):
                raise item
            yield ChatGenerationChunk(message=item)

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any) -> Any:
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)


class Recorder(BaseCallbackHandler):
    """Keeps every chat-model/chain callback as ``(event, run name, run_id, parent_run_id, tags)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any, Any, list[str]]] = []
        self._names: dict[Any, str] = {}

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: Any,
        *,
        run_id: Any,
        parent_run_id: Any = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        name = kwargs.get("name") or (serialized or {}).get("name", "?")
        self._names[run_id] = name
        self.events.append(("chat_start", name, run_id, parent_run_id, list(tags or [])))

    def on_llm_end(self, response: LLMResult, *, run_id: Any, parent_run_id: Any = None, **kwargs: Any) -> None:
        self.events.append(("llm_end", self._names.get(run_id, "?"), run_id, parent_run_id, []))

    def on_llm_error(self, error: BaseException, *, run_id: Any, parent_run_id: Any = None, **kwargs: Any) -> None:
        self.events.append(("llm_error", self._names.get(run_id, "?"), run_id, parent_run_id, []))

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: Any,
        parent_run_id: Any = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        name = kwargs.get("name") or (serialized or {}).get("name", "?")
        self._names[run_id] = name
        self.events.append(("chain_start", name, run_id, parent_run_id, list(tags or [])))

    def of(self, kind: str) -> list[tuple[str, str, Any, Any, list[str]]]:
        """Events of one kind."""
        return [e for e in self.events if e[0] == kind]


def call(llm: Any, mode: str) -> str:
    """The answer's text through one of the four entry points (invoke, ainvoke, stream, astream)."""
    if mode == "invoke":
        return str(llm.invoke("q").content)
    if mode == "ainvoke":
        return str(asyncio.run(llm.ainvoke("q")).content)
    if mode == "stream":
        return "".join(str(chunk.content) for chunk in llm.stream("q"))

    async def collect() -> str:
        return "".join([str(chunk.content) async for chunk in llm.astream("q")])

    return asyncio.run(collect())
