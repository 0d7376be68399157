"""One attempt of an agent's model call: the handler run with the chosen model, timed, its usage read.

The attempt loop (:func:`~pi_builder_middleware.attempts.run_attempts` & co) treats every ``Exception``
an attempt raises as that provider failing. LangGraph's control flow (``GraphBubbleUp``: interrupts,
``Command`` hand-offs) is no failure: :class:`ControlFlow`, a ``BaseException``, carries it through the
loop the way cancellation goes (no outcome recorded, a half-open trial permit given back), and the
middleware re-raises the original exception untouched.

When the call is streamed (a streaming callback handler such as LangGraph's ``stream_mode="messages"``
is attached), a :class:`TokenClock` rides on the attempt's callbacks to time its first token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import (
    ensure_config,
    patch_config,
    set_config_context,
    var_child_runnable_config,
)
from langchain_core.runnables.utils import coro_with_context
from langchain_core.tracers._streaming import _StreamingCallbackHandler
from langgraph.errors import GraphBubbleUp

from pi_builder_middleware import MAX_TOKENS, Usage

__all__ = [
    "ControlFlow",
    "Served",
    "TokenClock",
    "call_async",
    "call_sync",
    "is_streaming",
    "response_messages",
    "usage_of_response",
]

T = TypeVar("T")


class ControlFlow(BaseException):
    """LangGraph control flow raised inside an attempt, carried through the attempt loop untouched."""

    def __init__(self, error: GraphBubbleUp) -> None:
        super().__init__()
        self.error = error


class Served:
    """What an attempt returned, and when (middleware clock) its first token arrived, if it streamed."""

    __slots__ = ("first_token_at", "response")

    def __init__(self, response: Any, first_token_at: float | None) -> None:
        self.response = response
        self.first_token_at = first_token_at


class TokenClock(BaseCallbackHandler):
    """Notes the time of the first token streamed inside one attempt (and wakes a waiter, if any)."""

    run_inline = True  # called on the caller's thread / event loop: no executor hop per token

    def __init__(self, clock: Callable[[], float], on_first: Callable[[], None] | None = None) -> None:
        self._clock = clock
        self._on_first = on_first
        self.first_token_at: float | None = None

    def on_llm_new_token(
        self, token: str | list[str | dict[str, Any]], *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        if self.first_token_at is None:
            self.first_token_at = self._clock()
            if self._on_first is not None:
                self._on_first()


def _handlers(config: RunnableConfig) -> Iterable[Any]:
    callbacks = config.get("callbacks")
    if callbacks is None:
        return ()
    if isinstance(callbacks, list):
        return callbacks
    return getattr(callbacks, "handlers", ())


def is_streaming(config: RunnableConfig | None = None) -> bool:
    """Whether chat models called under ``config`` (default: the current one) stream: a streaming handler
    listens, as LangChain decides."""
    if config is None:
        config = var_child_runnable_config.get() or RunnableConfig()
    return any(isinstance(handler, _StreamingCallbackHandler) for handler in _handlers(config))


def _with_clock(config: RunnableConfig, clock: TokenClock) -> RunnableConfig:
    callbacks = config.get("callbacks")
    if callbacks is None or isinstance(callbacks, list):
        patched = config.copy()
        patched["callbacks"] = [*(callbacks or ()), clock]
        return patched
    manager = callbacks.copy()
    manager.add_handler(clock, inherit=True)
    return patch_config(config, callbacks=manager)


def call_sync(run: Callable[[], T], clock: Callable[[], float] | None) -> Served:
    """``run()`` (timing its first token when ``clock`` is given); control flow becomes :class:`ControlFlow`."""
    try:
        if clock is None:
            return Served(run(), None)
        timer = TokenClock(clock)
        with set_config_context(_with_clock(ensure_config(), timer)) as context:
            response = context.run(run)
        return Served(response, timer.first_token_at)
    except GraphBubbleUp as flow:
        raise ControlFlow(flow) from None


async def call_async(
    run: Callable[[], Awaitable[T]],
    clock: Callable[[], float] | None,
    first_token_timeout_s: float | None,
    on_timeout: Callable[[], BaseException],
) -> Served:
    """Async :func:`call_sync`; with ``first_token_timeout_s`` (streamed calls only) a call that streams no
    token in time is cancelled and ``on_timeout()`` raised."""
    try:
        if clock is None:
            return Served(await run(), None)
        first = asyncio.Event()
        timer = TokenClock(clock, first.set)
        with set_config_context(_with_clock(ensure_config(), timer)) as context:
            if first_token_timeout_s is None:
                response = await coro_with_context(_awaited(run), context)
            else:
                task = asyncio.ensure_future(coro_with_context(_awaited(run), context))
                await _first_token_or_answer(task, first, first_token_timeout_s, on_timeout)
                response = await task
        return Served(response, timer.first_token_at)
    except GraphBubbleUp as flow:
        raise ControlFlow(flow) from None


async def _awaited(run: Callable[[], Awaitable[T]]) -> T:
    return await run()


async def _first_token_or_answer(
    task: asyncio.Future[Any], first: asyncio.Event, timeout_s: float, on_timeout: Callable[[], BaseException]
) -> None:
    waiter = asyncio.ensure_future(first.wait())
    try:
        done, _ = await asyncio.wait({task, waiter}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled from outside: take the call down with us
        task.cancel()
        raise
    finally:
        waiter.cancel()
    if not done:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise on_timeout()


def response_messages(response: Any) -> list[BaseMessage]:
    """The messages of a handler's result (``ModelResponse``, ``ExtendedModelResponse`` or an ``AIMessage``)."""
    if isinstance(response, AIMessage):
        return [response]
    inner = getattr(response, "model_response", response)
    result = getattr(inner, "result", None)
    return [m for m in result if isinstance(m, BaseMessage)] if isinstance(result, list) else []


def usage_of_response(response: Any) -> Usage:
    """Tokens of the AI messages in a handler's result (``usage_metadata``, clamped to Usage's bounds)."""
    tokens_in = tokens_out = 0
    for message in response_messages(response):
        usage = getattr(message, "usage_metadata", None) if isinstance(message, AIMessage) else None
        if usage:
            tokens_in += int(usage.get("input_tokens", 0) or 0)
            tokens_out += int(usage.get("output_tokens", 0) or 0)
    return Usage(min(max(tokens_in, 0), MAX_TOKENS), min(max(tokens_out, 0), MAX_TOKENS))
