"""The LangChain side of the routing loop: what one attempt is for invoke, ainvoke, stream and astream.

The middleware's attempt loop (:meth:`Middleware.execute` & co, one state machine for sync and async)
orders the providers, skips those whose breaker is open, counts each attempt in flight, classifies
and records failures, fails over and, with ``max_wait_s > 0``, waits for the breakers' schedule and
runs further passes while no provider can answer. This module supplies the attempt itself: the
wrapped runnable is called with a child config so LangChain tracing sees the real call, and its
tokens are read from the callbacks or the output. Streams fail over only while the caller has seen
nothing; the attempt stays in flight while the rest is delivered, and a failure after the first
chunk raises :class:`StreamInterruptedError`. With a hedging middleware, ``ainvoke`` and ``astream``
are hedged: a stream races until a provider's first chunk, then commits to that provider and closes
the others.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from typing import Any, Generic, TypeVar

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import set_config_context
from langchain_core.runnables.utils import coro_with_context

from pi_builder_middleware import (
    MAX_TOKENS,
    FirstChunkTimeoutError,
    Middleware,
    OpenAttempt,
    Provider,
    RouteRequest,
    StreamInterruptedError,
    Usage,
)

from ._chunks import HeadTimeout, aclose_quietly, apull_head, close_quietly, pull_head, pull_head_in_thread
from ._usage import UsageHandler, UsageSum, returns_usage, usage_of, with_usage_handler

__all__ = ["FirstChunkTimeoutError", "RoutingLoop"]

log = logging.getLogger("pi_builder_middleware.adapters.langchain")

T = TypeVar("T")
It = TypeVar("It")
#: Builds the config of one attempt (child callbacks of the caller's run) from the provider id.
ConfigFor = Callable[[str], RunnableConfig]
AnyRunnable = Runnable[Any, Any]


class RoutingLoop:
    """Runs one call (invoke, ainvoke, stream, astream) across ``runnables`` in the middleware's order.

    ``op(runnable, config)`` performs the call on one runnable; ``config_for(provider_id)`` gives the
    config for that attempt. ``route`` is the request template (filters, strategy, token estimates);
    its ``timeout_s`` is each call's deadline, its ``attempt_timeout_s`` bounds each ``ainvoke``
    attempt. ``max_wait_s`` > 0 runs further passes while no provider can answer, until that long
    after the call started (0: fail at once). ``hedge`` False: async calls are not hedged even when
    the middleware has a :class:`HedgePolicy`.
    """

    __slots__ = (
        "_direct_usage",
        "_request",
        "_stream_request",
        "first_chunk_timeout_s",
        "max_wait_s",
        "middleware",
        "runnables",
    )

    def __init__(
        self,
        middleware: Middleware,
        runnables: Mapping[str, AnyRunnable],
        *,
        route: RouteRequest | None = None,
        first_chunk_timeout_s: float | None = None,
        max_wait_s: float = 0.0,
        hedge: bool = True,
    ) -> None:
        self.middleware = middleware
        self.runnables = dict(runnables)
        self._direct_usage = frozenset(pid for pid, r in self.runnables.items() if returns_usage(r))
        self.first_chunk_timeout_s = first_chunk_timeout_s
        self.max_wait_s = max_wait_s
        base = route or RouteRequest()
        keys = frozenset(self.runnables)
        candidates = keys if base.candidates is None else base.candidates & keys
        hedged = base.hedge and hedge
        self._request = dataclasses.replace(base, candidates=candidates, stream=False, hedge=hedged)
        self._stream_request = dataclasses.replace(base, candidates=candidates, stream=True, hedge=hedged)

    # -- invoke --------------------------------------------------------------------------------
    def invoke(self, op: Callable[[AnyRunnable, RunnableConfig], T], config_for: ConfigFor) -> tuple[str, T]:
        """``(provider_id, output)`` of the first attempt that succeeds."""

        def attempt(provider: Provider) -> _Answer[T]:
            config, handler = self._config(provider.id, config_for)
            with set_config_context(config) as context:
                output = context.run(op, self.runnables[provider.id], config)
            return _Answer(provider.id, output, handler)

        answer = self.middleware.execute(attempt, self._request, usage=_Answer.usage, max_wait_s=self.max_wait_s)
        return answer.pid, answer.output

    async def ainvoke(
        self, op: Callable[[AnyRunnable, RunnableConfig], Awaitable[T]], config_for: ConfigFor
    ) -> tuple[str, T]:
        """Async :meth:`invoke` (hedged with a hedging middleware); ``route.attempt_timeout_s`` bounds each attempt."""

        async def attempt(provider: Provider) -> _Answer[T]:
            config, handler = self._config(provider.id, config_for)
            with set_config_context(config) as context:
                coro = context.run(op, self.runnables[provider.id], config)
                output = await coro_with_context(coro, context)
            return _Answer(provider.id, output, handler)

        answer = await self.middleware.aexecute(attempt, self._request, usage=_Answer.usage, max_wait_s=self.max_wait_s)
        return answer.pid, answer.output

    # -- stream --------------------------------------------------------------------------------
    def stream(
        self, op: Callable[[AnyRunnable, RunnableConfig], Iterator[T]], config_for: ConfigFor
    ) -> Generator[T, None, None]:
        """Chunks of the first provider that produces one; fails over only before anything was yielded."""
        timeout = self.first_chunk_timeout_s

        def attempt(provider: Provider) -> _Head[Iterator[T], T]:
            pid = provider.id
            config, handler = self._config(pid, config_for)
            iterator: Iterator[T] | None = None
            try:
                with set_config_context(config) as context:
                    iterator = context.run(op, self.runnables[pid], config)
                    if timeout is None:
                        head, ended = pull_head(iterator, context)
                    else:
                        head, ended = pull_head_in_thread(iterator, context, timeout)
            except HeadTimeout:  # the thread closes the iterator once the slow call returns
                raise FirstChunkTimeoutError(pid, timeout or 0.0) from None
            except BaseException:
                close_quietly(iterator)
                raise
            return _Head(iterator, head, ended, handler)

        opened = self.middleware.execute_open(attempt, self._stream_request, max_wait_s=self.max_wait_s)
        yield from self._deliver(opened)

    def _deliver(self, opened: OpenAttempt[_Head[Iterator[T], T]]) -> Generator[T, None, None]:
        """The rest of the stream; the attempt ends when delivery ends (finished, broken, or stopped early)."""
        iterator, head, ended = opened.value.iterator, opened.value.head, opened.value.ended
        delivery = _Delivery(opened)
        try:
            for chunk in head:
                yield delivery.took(chunk)
            while not ended:
                try:
                    chunk = next(iterator)
                except StopIteration:
                    break
                except Exception as exc:
                    raise delivery.broke(exc) from exc
                yield delivery.took(chunk)
            delivery.succeeded()
        finally:
            if not opened.ended:  # the caller stopped reading early: the provider did nothing wrong
                close_quietly(iterator)
                delivery.succeeded()

    async def astream(
        self, op: Callable[[AnyRunnable, RunnableConfig], AsyncIterator[T]], config_for: ConfigFor
    ) -> AsyncGenerator[T, None]:
        """Async :meth:`stream`; ``first_chunk_timeout_s`` cancels a provider too slow to start."""

        async def attempt(provider: Provider) -> _Head[AsyncIterator[T], T]:
            pid = provider.id
            config, handler = self._config(pid, config_for)
            iterator: AsyncIterator[T] | None = None
            try:
                with set_config_context(config) as context:
                    iterator = context.run(op, self.runnables[pid], config)
                    head, ended = await apull_head(iterator, context)
            except BaseException:  # failed, timed out (first_chunk_timeout_s) or cancelled: give the stream up
                await aclose_quietly(iterator)
                raise
            return _Head(iterator, head, ended, handler)

        opened = await self.middleware.aexecute_open(
            attempt,
            self._stream_request,
            max_wait_s=self.max_wait_s,
            timeout_s=self.first_chunk_timeout_s,
            timeout_error=FirstChunkTimeoutError,
            discard=_aclose_head,
        )
        delivery = self._adeliver(opened)
        try:
            async for chunk in delivery:
                yield chunk
        finally:  # unlike ``yield from``, ``async for`` leaves the inner generator open when this one closes
            await delivery.aclose()

    async def _adeliver(self, opened: OpenAttempt[_Head[AsyncIterator[T], T]]) -> AsyncGenerator[T, None]:
        """Async :meth:`_deliver`."""
        iterator, head, ended = opened.value.iterator, opened.value.head, opened.value.ended
        delivery = _Delivery(opened)
        try:
            for chunk in head:
                yield delivery.took(chunk)
            while not ended:
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    raise delivery.broke(exc) from exc
                yield delivery.took(chunk)
            delivery.succeeded()
        finally:
            if not opened.ended:  # stopped early or cancelled: the provider did nothing wrong
                await aclose_quietly(iterator)
                delivery.succeeded()

    # -- bookkeeping ---------------------------------------------------------------------------
    def _config(self, pid: str, config_for: ConfigFor) -> tuple[RunnableConfig, UsageHandler | None]:
        config = config_for(pid)
        if pid in self._direct_usage:
            return config, None  # its output (or chunks) carries usage_metadata
        return with_usage_handler(config)


class _Answer(Generic[T]):
    """One answered invoke: who answered, the output, and the handler that counted its tokens."""

    __slots__ = ("handler", "output", "pid")

    def __init__(self, pid: str, output: T, handler: UsageHandler | None) -> None:
        self.pid = pid
        self.output = output
        self.handler = handler

    def usage(self) -> Usage:
        return _usage(self.handler, usage_of(self.output))


@dataclasses.dataclass(frozen=True, slots=True)
class _Head(Generic[It, T]):
    """A stream that produced its first chunk (or ended): what delivering the rest needs."""

    iterator: It
    head: list[T]
    ended: bool
    handler: UsageHandler | None


class _Delivery(Generic[T]):
    """What delivering one stream counts (chunks handed on, their tokens) and how its attempt ends."""

    __slots__ = ("delivered", "handler", "opened", "summed", "ttft")

    def __init__(self, opened: OpenAttempt[_Head[Any, T]]) -> None:
        self.opened = opened
        self.handler = opened.value.handler
        self.ttft = None if opened.value.ended else opened.elapsed()
        self.summed = UsageSum()
        self.delivered = 0

    def took(self, chunk: T) -> T:
        """``chunk``, counted and summed, on its way to the caller."""
        self.summed.add(chunk)
        self.delivered += 1
        return chunk

    def broke(self, exc: BaseException) -> StreamInterruptedError:
        """Record the stream as interrupted after its first chunk; the error to raise to the caller."""
        kind = self.opened.interrupted(exc, ttft_s=self.ttft)
        log.warning(
            "stream from %r broke after its first chunk (%s: %s)",
            self.opened.provider_id,
            kind.value if kind is not None else "?",
            type(exc).__name__,
        )
        return StreamInterruptedError(self.opened.provider_id, self.delivered, exc)

    def succeeded(self) -> None:
        self.opened.succeeded(ttft_s=self.ttft, usage=_usage(self.handler, self.summed.tokens()))


async def _aclose_head(started: _Head[AsyncIterator[Any], Any]) -> None:
    """A hedged stream's loser that produced its first chunk too late: close it, nobody reads it."""
    await aclose_quietly(started.iterator)


def _usage(handler: UsageHandler | None, fallback: tuple[int, int]) -> Usage:
    """Tokens of the LLM runs the handler saw; else what the output itself carried.

    Counts come from the provider: one out of Usage's bounds is clamped, never a reason to lose the outcome
    (this runs before the attempt is ended).
    """
    tokens = (handler.input_tokens, handler.output_tokens) if handler is not None and handler.seen else fallback
    return Usage(*(min(max(n, 0), MAX_TOKENS) for n in tokens))
