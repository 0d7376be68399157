"""The routing loop both front-ends share: order, skip, call, classify, record, fail over.

Per call: the middleware decides the order (providers whose breaker is open or that are cooling
down after a 429 are already left out); each attempt runs the wrapped runnable with a child config
so LangChain tracing sees the real call; every attempt is recorded (latency, TTFT, tokens, error);
errors the classifier says not to fail over on (bad request) propagate at once; when every
provider failed, :class:`AllProvidersFailedError` lists each attempt. Streams fail over only while
the caller has seen nothing; a failure after that raises :class:`StreamInterruptedError`.

With ``max_wait_s > 0`` a pass that ends without an answer (nobody available, or everyone tried
failed over) is followed by another after a wait for the breakers' schedule (see ``_wait.py``), until
``max_wait_s`` after the call started; the final error then lists the attempts of every pass.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from typing import Any, Generic, TypeVar

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import set_config_context
from langchain_core.runnables.utils import coro_with_context

from pi_builder_middleware import (
    Attempt,
    ErrorKind,
    Middleware,
    NoProviderAvailableError,
    Outcome,
    PiBuilderError,
    RouteRequest,
    RoutingDecision,
    StreamInterruptedError,
    chain_exhausted,
)

from ._chunks import HeadTimeout, aclose_quietly, apull_head, close_quietly, pull_head, pull_head_in_thread
from ._usage import UsageHandler, UsageSum, returns_usage, usage_of, with_usage_handler
from ._wait import RecoveryWait

__all__ = ["FirstChunkTimeoutError", "RoutingLoop"]

log = logging.getLogger("pi_builder_middleware.adapters.langchain")

T = TypeVar("T")
It = TypeVar("It")
#: Builds the config of one attempt (child callbacks of the caller's run) from the provider id.
ConfigFor = Callable[[str], RunnableConfig]
AnyRunnable = Runnable[Any, Any]


class FirstChunkTimeoutError(PiBuilderError, TimeoutError):
    """A provider sent no chunk within ``first_chunk_timeout_s``; the stream failed over to the next one."""

    def __init__(self, provider_id: str, timeout_s: float) -> None:
        self.provider_id = provider_id
        self.timeout_s = timeout_s
        super().__init__(f"{provider_id!r} sent no chunk within {timeout_s} s (first_chunk_timeout_s)")


class RoutingLoop:
    """Runs one call (invoke, ainvoke, stream, astream) across ``runnables`` in the middleware's order.

    ``op(runnable, config)`` performs the call on one runnable; ``config_for(provider_id)`` gives the
    config for that attempt. ``route`` is the request template (filters, strategy, token estimates);
    its ``timeout_s`` bounds each ``ainvoke`` attempt. ``max_wait_s`` > 0 runs further passes while
    no provider can answer, until that long after the call started (0: fail at once).
    """

    __slots__ = ("_direct_usage", "_request", "_stream_request", "_waitable", "first_chunk_timeout_s",
                 "max_wait_s", "middleware", "runnables")

    def __init__(self, middleware: Middleware, runnables: Mapping[str, AnyRunnable], *,
                 route: RouteRequest | None = None, first_chunk_timeout_s: float | None = None,
                 max_wait_s: float = 0.0) -> None:
        self.middleware = middleware
        self.runnables = dict(runnables)
        self._direct_usage = frozenset(pid for pid, r in self.runnables.items() if returns_usage(r))
        self.first_chunk_timeout_s = first_chunk_timeout_s
        self.max_wait_s = max_wait_s
        base = route or RouteRequest()
        keys = frozenset(self.runnables)
        candidates = keys if base.candidates is None else base.candidates & keys
        self._request = dataclasses.replace(base, candidates=candidates, stream=False)
        self._stream_request = dataclasses.replace(base, candidates=candidates, stream=True)
        self._waitable = tuple(pid for pid in self.runnables if pid in candidates and pid not in base.exclude)

    # -- invoke --------------------------------------------------------------------------------
    def invoke(self, op: Callable[[AnyRunnable, RunnableConfig], T], config_for: ConfigFor) -> tuple[str, T]:
        """``(provider_id, output)`` of the first attempt that succeeds."""
        wait = self._wait()
        while isinstance(served := self._invoke_pass(op, config_for, wait.attempts), PiBuilderError):
            delay = wait.delay(served)
            if delay is None:
                raise wait.give_up(served)
            time.sleep(delay)
        return served

    def _invoke_pass(self, op: Callable[[AnyRunnable, RunnableConfig], T], config_for: ConfigFor,
                     attempts: list[Attempt]) -> tuple[str, T] | PiBuilderError:
        decision = self._decide(self._request)
        if isinstance(decision, PiBuilderError):
            return decision
        clock = self.middleware.clock
        for index, provider in enumerate(decision.providers):
            pid = provider.id
            if index and not self._acquire(pid, attempts):
                continue
            config, handler = self._config(pid, config_for)
            start = clock()
            try:
                with set_config_context(config) as context:
                    output = context.run(op, self.runnables[pid], config)
            except Exception as exc:
                if not self._failed(pid, exc, clock() - start, attempts):
                    raise
                continue
            except BaseException:  # cancelled / interrupted: no outcome, give a half-open trial permit back
                self.middleware.failover.release(pid)
                raise
            self._succeeded(pid, clock() - start, None, *_tokens(handler, usage_of(output)))
            return pid, output
        return chain_exhausted([p.id for p in decision.providers], attempts)

    async def ainvoke(self, op: Callable[[AnyRunnable, RunnableConfig], Awaitable[T]],
                      config_for: ConfigFor) -> tuple[str, T]:
        """Async :meth:`invoke`; ``route.timeout_s`` bounds each attempt (a timeout fails over)."""
        wait = self._wait()
        while isinstance(served := await self._ainvoke_pass(op, config_for, wait.attempts), PiBuilderError):
            delay = wait.delay(served)
            if delay is None:
                raise wait.give_up(served)
            await asyncio.sleep(delay)
        return served

    async def _ainvoke_pass(self, op: Callable[[AnyRunnable, RunnableConfig], Awaitable[T]], config_for: ConfigFor,
                            attempts: list[Attempt]) -> tuple[str, T] | PiBuilderError:
        decision = self._decide(self._request)
        if isinstance(decision, PiBuilderError):
            return decision
        clock = self.middleware.clock
        timeout = self._request.timeout_s
        for index, provider in enumerate(decision.providers):
            pid = provider.id
            if index and not self._acquire(pid, attempts):
                continue
            config, handler = self._config(pid, config_for)
            start = clock()
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    with set_config_context(config) as context:
                        coro = context.run(op, self.runnables[pid], config)
                        output = await coro_with_context(coro, context)
            except Exception as exc:
                if isinstance(exc, TimeoutError) and deadline.expired():
                    late = TimeoutError(f"{pid!r} did not answer within {timeout} s (route.timeout_s)")
                    self._failed(pid, late, clock() - start, attempts, kind=ErrorKind.TIMEOUT)
                    continue
                if not self._failed(pid, exc, clock() - start, attempts):
                    raise
                continue
            except BaseException:  # cancelled / interrupted: no outcome, give a half-open trial permit back
                self.middleware.failover.release(pid)
                raise
            self._succeeded(pid, clock() - start, None, *_tokens(handler, usage_of(output)))
            return pid, output
        return chain_exhausted([p.id for p in decision.providers], attempts)

    # -- stream --------------------------------------------------------------------------------
    def stream(self, op: Callable[[AnyRunnable, RunnableConfig], Iterator[T]], config_for: ConfigFor
               ) -> Generator[T, None, None]:
        """Chunks of the first provider that produces one; fails over only before anything was yielded."""
        wait = self._wait()
        while isinstance(started := self._open_stream(op, config_for, wait.attempts), PiBuilderError):
            delay = wait.delay(started)
            if delay is None:
                raise wait.give_up(started)
            time.sleep(delay)
        yield from self._deliver(started.pid, started.iterator, started.head, started.ended, started.start,
                                 started.handler)

    def _open_stream(self, op: Callable[[AnyRunnable, RunnableConfig], Iterator[T]], config_for: ConfigFor,
                     attempts: list[Attempt]) -> _Started[Iterator[T], T] | PiBuilderError:
        """One pass: the first provider whose stream produced a chunk (or ended), with that head."""
        decision = self._decide(self._stream_request)
        if isinstance(decision, PiBuilderError):
            return decision
        clock = self.middleware.clock
        timeout = self.first_chunk_timeout_s
        for index, provider in enumerate(decision.providers):
            pid = provider.id
            if index and not self._acquire(pid, attempts):
                continue
            config, handler = self._config(pid, config_for)
            start = clock()
            iterator: Iterator[T] | None = None
            try:
                with set_config_context(config) as context:
                    iterator = context.run(op, self.runnables[pid], config)
                    if timeout is None:
                        head, ended = pull_head(iterator, context)
                    else:
                        head, ended = pull_head_in_thread(iterator, context, timeout)
            except HeadTimeout:  # the thread closes the iterator once the slow call returns
                self._failed(pid, FirstChunkTimeoutError(pid, timeout or 0.0), clock() - start, attempts,
                             kind=ErrorKind.TIMEOUT)
                continue
            except Exception as exc:
                close_quietly(iterator)
                if not self._failed(pid, exc, clock() - start, attempts):
                    raise
                continue
            except BaseException:  # cancelled / interrupted: no outcome, give a half-open trial permit back
                close_quietly(iterator)
                self.middleware.failover.release(pid)
                raise
            return _Started(pid, iterator, head, ended, start, handler)
        return chain_exhausted([p.id for p in decision.providers], attempts)

    def _deliver(self, pid: str, iterator: Iterator[T], head: list[T], ended: bool, start: float,
                 handler: UsageHandler | None) -> Generator[T, None, None]:
        clock = self.middleware.clock
        ttft = None if ended else clock() - start
        summed = UsageSum()
        delivered = 0
        finished = False
        try:
            for chunk in head:
                summed.add(chunk)
                yield chunk
                delivered += 1
            while not ended:
                try:
                    chunk = next(iterator)
                except StopIteration:
                    break
                except Exception as exc:
                    finished = True
                    self._interrupted(pid, exc, clock() - start, ttft)
                    raise StreamInterruptedError(pid, delivered, exc) from exc
                summed.add(chunk)
                yield chunk
                delivered += 1
            finished = True
            self._succeeded(pid, clock() - start, ttft, *_tokens(handler, summed.tokens()))
        finally:
            if not finished:  # the caller stopped reading early: the provider did nothing wrong
                close_quietly(iterator)
                self._succeeded(pid, clock() - start, ttft, *_tokens(handler, summed.tokens()))

    async def astream(self, op: Callable[[AnyRunnable, RunnableConfig], AsyncIterator[T]], config_for: ConfigFor
                      ) -> AsyncGenerator[T, None]:
        """Async :meth:`stream`; ``first_chunk_timeout_s`` cancels a provider too slow to start."""
        wait = self._wait()
        while isinstance(started := await self._aopen_stream(op, config_for, wait.attempts), PiBuilderError):
            delay = wait.delay(started)
            if delay is None:
                raise wait.give_up(started)
            await asyncio.sleep(delay)
        async for chunk in self._adeliver(started.pid, started.iterator, started.head, started.ended, started.start,
                                          started.handler):
            yield chunk

    async def _aopen_stream(self, op: Callable[[AnyRunnable, RunnableConfig], AsyncIterator[T]],
                            config_for: ConfigFor, attempts: list[Attempt]
                            ) -> _Started[AsyncIterator[T], T] | PiBuilderError:
        decision = self._decide(self._stream_request)
        if isinstance(decision, PiBuilderError):
            return decision
        clock = self.middleware.clock
        timeout = self.first_chunk_timeout_s
        for index, provider in enumerate(decision.providers):
            pid = provider.id
            if index and not self._acquire(pid, attempts):
                continue
            config, handler = self._config(pid, config_for)
            start = clock()
            iterator: AsyncIterator[T] | None = None
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    with set_config_context(config) as context:
                        iterator = context.run(op, self.runnables[pid], config)
                        head, ended = await apull_head(iterator, context)
            except Exception as exc:
                await aclose_quietly(iterator)
                if isinstance(exc, TimeoutError) and deadline.expired():
                    self._failed(pid, FirstChunkTimeoutError(pid, timeout or 0.0), clock() - start, attempts,
                                 kind=ErrorKind.TIMEOUT)
                    continue
                if not self._failed(pid, exc, clock() - start, attempts):
                    raise
                continue
            except BaseException:  # cancelled / interrupted: no outcome, give a half-open trial permit back
                self.middleware.failover.release(pid)
                raise
            return _Started(pid, iterator, head, ended, start, handler)
        return chain_exhausted([p.id for p in decision.providers], attempts)

    async def _adeliver(self, pid: str, iterator: AsyncIterator[T], head: list[T], ended: bool, start: float,
                        handler: UsageHandler | None) -> AsyncGenerator[T, None]:
        clock = self.middleware.clock
        ttft = None if ended else clock() - start
        summed = UsageSum()
        delivered = 0
        finished = False
        try:
            for chunk in head:
                summed.add(chunk)
                yield chunk
                delivered += 1
            while not ended:
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    finished = True
                    self._interrupted(pid, exc, clock() - start, ttft)
                    raise StreamInterruptedError(pid, delivered, exc) from exc
                summed.add(chunk)
                yield chunk
                delivered += 1
            finished = True
            self._succeeded(pid, clock() - start, ttft, *_tokens(handler, summed.tokens()))
        finally:
            if not finished:
                await aclose_quietly(iterator)
                self._succeeded(pid, clock() - start, ttft, *_tokens(handler, summed.tokens()))

    # -- bookkeeping ---------------------------------------------------------------------------
    def _config(self, pid: str, config_for: ConfigFor) -> tuple[RunnableConfig, UsageHandler | None]:
        config = config_for(pid)
        if pid in self._direct_usage:
            return config, None  # its output (or chunks) carries usage_metadata
        return with_usage_handler(config)

    def _wait(self) -> RecoveryWait:
        return RecoveryWait(self.middleware.failover, self._waitable, self.max_wait_s, self.middleware.clock)

    def _decide(self, request: RouteRequest) -> RoutingDecision | NoProviderAvailableError:
        """The middleware's decision, or the error saying why no provider is available (returned, not raised)."""
        try:
            decision = self.middleware.select(request)
        except NoProviderAvailableError as exc:
            return exc
        if log.isEnabledFor(logging.DEBUG):
            log.debug("routing: %s", decision.reason)
        return decision

    def _acquire(self, pid: str, attempts: list[Attempt]) -> bool:
        failover = self.middleware.failover
        if not failover.acquire(pid):
            return False  # its breaker opened (or its trial permits went) since the decision was made
        if attempts:
            failover.note_switch(attempts[-1].provider_id, pid, attempts[-1].error_kind.value)
        return True

    def _failed(self, pid: str, exc: BaseException, latency: float, attempts: list[Attempt], *,
                kind: ErrorKind | None = None) -> bool:
        if kind is None:
            kind = self.middleware.classify(exc, pid)
        latency = max(latency, 0.0)
        self.middleware.record(Outcome(pid, False, latency, error=exc, error_kind=kind))
        attempts.append(Attempt(pid, exc, kind, latency))
        log.info("provider %r failed (%s: %s: %s)%s", pid, kind.value, type(exc).__name__, exc,
                 "; failing over" if kind.fails_over else "")
        return kind.fails_over

    def _interrupted(self, pid: str, exc: BaseException, latency: float, ttft: float | None) -> None:
        kind = self.middleware.classify(exc, pid)
        self.middleware.record(Outcome(pid, False, max(latency, 0.0), ttft_s=ttft, error=exc, error_kind=kind))
        log.warning("stream from %r broke after its first chunk (%s: %s)", pid, kind.value, type(exc).__name__)

    def _succeeded(self, pid: str, latency: float, ttft: float | None, tokens_in: int, tokens_out: int) -> None:
        self.middleware.record(Outcome(pid, True, max(latency, 0.0), ttft_s=None if ttft is None else max(ttft, 0.0),
                                       input_tokens=tokens_in, output_tokens=tokens_out))


@dataclasses.dataclass(frozen=True, slots=True)
class _Started(Generic[It, T]):
    """A stream that produced its first chunk (or ended): what delivering the rest needs."""

    pid: str
    iterator: It
    head: list[T]
    ended: bool
    start: float
    handler: UsageHandler | None


def _tokens(handler: UsageHandler | None, fallback: tuple[int, int]) -> tuple[int, int]:
    """Tokens of the LLM runs the handler saw; else what the output itself carried."""
    if handler is not None and handler.seen:
        return handler.input_tokens, handler.output_tokens
    return fallback
