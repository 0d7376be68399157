"""The async driver of a hedged call: :func:`arun_hedged` runs :func:`~pi_builder_middleware.attempts.attempt_steps`
and races hedges beside its attempts.

The state machine stays the one attempt loop: it selects, walks the chain, waits and records the
attempts it hands out. This driver adds the hedges through the loop's :class:`Lane`: when the loop's
attempt has not answered after the hedge delay, the next provider of the decision's chain that
the breaker permits (and the retry budget allows) starts the same request beside it; the loop's
failover passes over providers claimed that way. The first answer wins; every other attempt is
cancelled as a *loser*: its in-flight count and half-open permit are given back, it is not recorded
as a failure, and its elapsed time is fed to its latency estimate as a lower bound
(:meth:`Middleware.record_at_least`). A failed hedge is recorded like any failed attempt. When the
loop's attempt fails while a hedge still runs, the loop holds its failover (:class:`Hold`) until the
hedges have ended without an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .attempts import (
    AsyncOptions,
    Command,
    Hold,
    Lane,
    LostRace,
    OpenAttempt,
    Sleep,
    _failed,
    attempt_bound,
    attempt_steps,
    deadline_of,
    resume,
)
from .errors import UnknownProviderError
from .models import Provider, RouteRequest

if TYPE_CHECKING:
    from .hedging import Hedger
    from .middleware import Middleware
    from .telemetry._trace import AttemptTrace

__all__ = ["arun_hedged"]

T = TypeVar("T")


class _Racer(Generic[T]):
    __slots__ = ("primary", "provider", "span", "start", "task")

    def __init__(
        self, provider: Provider, start: float, task: asyncio.Future[T], primary: bool, span: AttemptTrace | None
    ) -> None:
        self.provider = provider
        self.start = start
        self.task = task
        self.primary = primary
        self.span = span  # telemetry of a hedge (the loop traces its own attempt)


async def arun_hedged(
    middleware: Middleware,
    hedger: Hedger,
    fn: Callable[[Provider], Awaitable[T]],
    request: RouteRequest | None,
    options: AsyncOptions,
) -> OpenAttempt[T]:
    """Like :func:`~pi_builder_middleware.attempts.arun_attempts`, with hedges (see the module docstring)."""
    end_by = deadline_of(middleware, request)
    lane = Lane()
    steps = attempt_steps(middleware, request, max_wait_s=options.max_wait_s, deadline=end_by, lane=lane)
    command: Command | None = next(steps)  # checks the arguments first
    race = _Race(middleware, hedger, fn, steps, lane, request, options, end_by)
    while True:
        if isinstance(command, Hold):  # the hedges it waited for ended without an answer
            command = steps.send(None)
            continue
        if isinstance(command, Sleep):
            try:
                await middleware.async_sleep(command.seconds)
            except BaseException as exc:
                command = steps.throw(exc)
            else:
                command = steps.send(None)
            continue
        assert isinstance(command, Provider)
        opened, command = await race.run(command)
        if opened is not None:
            return opened


class _Race(Generic[T]):
    """One call's hedging state across the loop's attempts."""

    __slots__ = (
        "end_by",
        "fn",
        "hedger",
        "hedges_left",
        "input_tokens",
        "lane",
        "mw",
        "options",
        "pending",
        "racers",
        "steps",
        "stream",
        "waiting",
    )

    def __init__(
        self,
        mw: Middleware,
        hedger: Hedger,
        fn: Callable[[Provider], Awaitable[T]],
        steps: Generator[Command, Any, OpenAttempt[Any]],
        lane: Lane,
        request: RouteRequest | None,
        options: AsyncOptions,
        end_by: float | None,
    ) -> None:
        self.mw = mw
        self.hedger = hedger
        self.fn = fn
        self.steps = steps
        self.lane = lane
        self.stream = bool(request is not None and request.stream)
        self.input_tokens = (request or RouteRequest()).input_tokens
        self.options = options
        self.end_by = end_by
        self.hedges_left = hedger.policy.max_hedges
        self.racers: dict[asyncio.Future[T], _Racer[T]] = {}
        self.waiting = False  # the state machine is suspended at its own attempt's yield
        self.pending: Command | Exception | None = None  # its next step, held while hedges run

    async def _attempt(self, provider: Provider, span: AttemptTrace | None) -> T:
        token = span.enter() if span is not None else None  # the hedge's span is current in its own task
        try:
            return await self._call(provider)
        finally:
            if span is not None:
                span.leave(token)

    async def _call(self, provider: Provider) -> T:
        bound = attempt_bound(self.mw, self.options.timeout_s, self.end_by)
        if bound is None:
            return await self.fn(provider)
        limit = asyncio.timeout(bound)
        try:
            async with limit:
                return await self.fn(provider)
        except TimeoutError:
            if limit.expired():
                raise self.options.timeout_error(provider.id, bound) from None
            raise

    def _start(self, provider: Provider, primary: bool) -> None:
        trace = self.lane.trace
        span = trace.hedge(provider) if trace is not None and not primary else None
        task = asyncio.ensure_future(self._attempt(provider, span))
        self.racers[task] = _Racer(provider, self.mw.clock(), task, primary, span)

    async def run(self, first: Provider) -> tuple[OpenAttempt[T] | None, Command | None]:
        """Race the state machine's attempt on ``first`` (and hedges); the answer, or the machine's next command."""
        self.waiting = True
        self.pending = None
        self._start(first, True)
        timer: asyncio.Future[Any] | None = None
        settled = False
        try:
            while self.racers:
                if timer is None and self.hedges_left > 0:
                    delay = self.hedger.delay(first.id, self.stream)
                    if delay is not None:
                        timer = asyncio.ensure_future(_sleep(self.mw.async_sleep, delay))
                    else:
                        self.hedges_left = 0  # nothing to judge "slow" by yet
                waits: set[asyncio.Future[Any]] = set(self.racers)
                if timer is not None:
                    waits.add(timer)
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finished = [t for t in done if t in self.racers]
                if not finished:
                    timer = None
                    self._hedge()
                    continue
                for task in finished:
                    if not task.cancelled() and task.exception() is None:
                        settled = True
                        return await self._win(task), None
                for task in finished:
                    self._lost_race(task)  # raises when the call must end
            settled = True
            pending = self.pending
            if isinstance(pending, BaseException):
                if self.lane.trace is not None:  # the loop's verdict, held while hedges ran, ends the request
                    self.lane.trace.failed(pending)
                raise pending
            return None, pending
        finally:
            if timer is not None:
                timer.cancel()
            if not settled:  # cancelled from outside, or an error that ends the call
                await self._abandon()

    def _hedge(self) -> None:
        """The hedge delay passed: start the next permitted provider of the chain beside the others."""
        decision = self.lane.decision
        if decision is None:
            self.hedges_left = 0
            return
        racing = {r.provider.id for r in self.racers.values()}
        tried = {a.provider_id for a in self.lane.attempts}
        failover = self.mw.failover
        for provider in decision.providers:
            pid = provider.id
            if pid in racing or pid in tried or pid in self.lane.claimed:
                continue
            try:
                if not failover.acquire(pid):
                    continue
            except UnknownProviderError:  # removed since the decision was made
                continue
            budget = self.hedger.budget
            if budget is not None and not budget.spend_hedge():
                failover.release(pid)
                decision.throttled(budget.describe() + ": no hedge")
                self.hedges_left = 0
                return
            self.hedges_left -= 1
            self.lane.claimed.add(pid)
            self.mw.begin_attempt(pid)
            self._start(provider, False)
            self.hedger.count(started=1)
            return
        self.hedges_left = 0  # nobody left to hedge on

    def _lost_race(self, task: asyncio.Future[T]) -> None:
        """An attempt failed: record it (through the state machine for its own attempt); raises to end the call."""
        racer = self.racers.pop(task)
        exc = asyncio.CancelledError() if task.cancelled() else task.exception()
        assert exc is not None
        if racer.primary:
            self.waiting = False
            self.lane.hold = bool(self.racers)  # hedges still run: no failover until they end
            trace = self.lane.trace
            if trace is not None and self.racers:
                trace.hand_over()  # a hedge may still answer: the loop's verdict does not end the request yet
            try:
                self.pending = self.steps.throw(exc)
            except StopIteration:  # pragma: no cover - the machine returns only with an answer
                raise RuntimeError("the attempt loop ended without an answer") from None
            except Exception as err:
                if err is exc or not self.racers:
                    if trace is not None:
                        trace.take_back()
                        trace.failed(err)
                    raise  # an error that does not fail over, or nothing left that may answer
                self.pending = err  # the loop's verdict, raised unless a hedge answers
            else:
                if trace is not None:
                    trace.take_back()
            return
        pid = racer.provider.id
        if not isinstance(exc, Exception):
            self.mw.end_attempt(pid)
            self.mw.failover.release(pid)
            if racer.span is not None:
                racer.span.cancelled(exc)
            raise exc
        try:
            fails_over = _failed(self.mw, racer.provider, exc, self.mw.clock() - racer.start, self.lane.attempts)
        finally:
            self.mw.end_attempt(pid)
            if racer.span is not None:
                racer.span.failed(exc, self.lane.attempts)
        if not fails_over:
            raise exc

    async def _win(self, task: asyncio.Future[T]) -> OpenAttempt[T]:
        racer = self.racers.pop(task)
        value = task.result()
        if not racer.primary:
            for other in self.racers.values():
                if other.primary:  # still waiting for its own attempt: it was slower than delay + the hedge
                    self.hedger.hedge_won(other.provider.id, self.stream)
        if not racer.primary and self.lane.trace is not None:
            self.lane.trace.hand_over()  # the loop ends behind the hedge; the hedge ends the request
        await self._cancel_losers()
        if racer.primary:
            opened = resume(self.steps, value)
            if isinstance(opened, OpenAttempt):
                return opened
            raise RuntimeError("the attempt loop did not end with the answer")  # pragma: no cover
        self._close_machine()
        self.hedger.count(won=1)
        if racer.span is not None:
            racer.span.answered()
        return OpenAttempt(self.mw, racer.provider, racer.start, value, racer.span)

    async def _settle(self, losers: list[_Racer[T]]) -> None:
        """Wait until each cancelled attempt has ended; close an answer that came too late to be used."""
        if losers:
            await asyncio.wait([r.task for r in losers])
        for racer in losers:
            task = racer.task
            if task.cancelled() or task.exception() is not None:  # retrieved: no "never retrieved" warning
                continue
            discard = self.options.discard
            if discard is not None:
                with contextlib.suppress(Exception):
                    await discard(task.result())

    def _cancel_all(self) -> list[_Racer[T]]:
        losers = list(self.racers.values())
        self.racers.clear()
        for racer in losers:
            racer.task.cancel()
        return losers

    def _give_back(self, racer: _Racer[T]) -> None:
        """End a cancelled attempt without an outcome: in-flight count and half-open permit given back."""
        if racer.primary:
            if self.waiting:
                self.waiting = False
                with contextlib.suppress(LostRace):
                    self.steps.throw(LostRace())  # the loop ends its own attempt the same way
        else:
            self.mw.end_attempt(racer.provider.id)
            self.mw.failover.release(racer.provider.id)
            if racer.span is not None:
                racer.span.lost()

    async def _cancel_losers(self) -> None:
        """Cancel the attempts that lost the race; each was at least as slow as it ran."""
        mw = self.mw
        losers = self._cancel_all()
        try:
            await self._settle(losers)
        finally:  # even if this call is cancelled meanwhile: nothing stays in flight or holds a permit
            for racer in losers:
                self._give_back(racer)
                provider = racer.provider
                mw.record_at_least(provider.id, mw.clock() - racer.start, stream=self.stream)
                self.hedger.count(cancelled=1, cost=provider.cost_of(self.input_tokens, 0))

    def _close_machine(self) -> None:
        """The call is answered (or abandoned): end the state machine without another attempt."""
        if isinstance(self.pending, Provider):  # begun by the loop, never started
            with contextlib.suppress(LostRace):
                self.steps.throw(LostRace())
        else:
            self.steps.close()
        self.pending = None

    async def _abandon(self) -> None:
        """The call ends with an error or is cancelled: end every attempt still running without an outcome."""
        losers = self._cancel_all()
        try:
            await self._settle(losers)
        finally:
            for racer in losers:
                self._give_back(racer)
            self._close_machine()


async def _sleep(sleep: Callable[[float], Awaitable[object]], seconds: float) -> None:
    await sleep(seconds)
