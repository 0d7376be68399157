"""The attempt loop of one call, shared by every front-end (execute, aexecute, the adapters).

One state machine, :func:`attempt_steps`, decides everything; two thin drivers run it:
:func:`run_attempts` (sync) and :func:`arun_attempts` (async). The machine is a generator that yields
commands and is resumed with their results:

- a :class:`Provider`: "call this provider" — the driver calls ``fn(provider)`` and sends back its
  result, or throws the exception it raised into the machine (cancellation included);
- a :class:`Sleep`: "sleep this long, then run another pass" — the driver sleeps (the middleware's
  injectable ``sleep``/``async_sleep``) and sends back None.

Per pass the machine selects a decision (:class:`NoProviderAvailableError` ends the pass), walks its
chain (a backup needs a breaker permit; moving to it is logged as a switch), begins and ends the
in-flight accounting around every attempt, classifies and records each failure and either fails over
or re-raises it. A pass that ends without an answer is followed by a wait and another pass while
``max_wait_s`` allows (:class:`~pi_builder_middleware.recovery.RecoveryWait`); the final error lists
the attempts of every pass. ``deadline`` (a reading of the middleware's clock, from the request's
``timeout_s``) ends the call with :class:`DeadlineExceededError` once it passes: no attempt starts and
no wait runs beyond it. A failover retry needs the middleware's retry budget
(:class:`~pi_builder_middleware.budget.RetryBudget`, when hedging is configured) to allow it. A
:class:`Lane` lets an async driver run hedges beside the machine's attempts (``_hedged.py``). The
attempt that answered is handed back as an :class:`OpenAttempt`, still in flight: ``execute`` ends it
at once, a stream ends it when its delivery ends.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._validation import is_number, require
from .enums import AllOutMode, ErrorKind
from .errors import (
    AttemptTimeoutError,
    ConfigError,
    DeadlineExceededError,
    NoProviderAvailableError,
    PiBuilderError,
    UnknownProviderError,
    chain_exhausted,
)
from .models import Attempt, Outcome, Provider, RouteRequest, RoutingDecision, Usage
from .recovery import RecoveryWait
from .telemetry._trace import traced

if TYPE_CHECKING:
    import asyncio

    from .middleware import Middleware
    from .telemetry._trace import AttemptTrace, RequestTrace

__all__ = [
    "AsyncOptions",
    "AttemptTimeoutError",
    "Command",
    "Hold",
    "Lane",
    "LostRace",
    "OpenAttempt",
    "Sleep",
    "arun_attempts",
    "attempt_bound",
    "attempt_steps",
    "complete",
    "deadline_of",
    "resume",
    "run_attempts",
]

log = logging.getLogger("pi_builder_middleware.attempts")

T = TypeVar("T")


class Sleep:
    """Command of the attempt loop: sleep ``seconds``, then resume it with None."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"Sleep({self.seconds!r})"


class Hold(Sleep):
    """Command of the attempt loop run with a :class:`Lane`: an attempt failed while others run beside it;
    resume it (with None) once they ended without an answer, or close it if one answered."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(0.0)


#: What the attempt loop asks its driver for: call a provider, or sleep.
Command = Provider | Sleep


class LostRace(BaseException):
    """Thrown into the attempt loop by a driver with a :class:`Lane` when another attempt of the call answered
    first: the loop's own attempt ends without an outcome (in-flight count and trial permit given back), and
    its telemetry span as a lost race, not an error."""


class Lane:
    """What a driver that runs attempts beside the loop's own (hedges) shares with the loop.

    ``decision`` is the pass's decision; providers in ``claimed`` ran beside the loop and are passed
    over by its failover; ``attempts`` lists every failed attempt, the loop's and the driver's;
    ``hold`` set when the loop's attempt failed makes it yield :class:`Hold` before failing over;
    ``trace`` is the call's telemetry (None when off), for the driver's attempts.
    """

    __slots__ = ("attempts", "claimed", "decision", "hold", "trace")

    def __init__(self) -> None:
        self.decision: RoutingDecision | None = None
        self.claimed: set[str] = set()
        self.attempts: list[Attempt] = []
        self.hold = False
        self.trace: RequestTrace | None = None


def deadline_of(middleware: Middleware, request: RouteRequest | None) -> float | None:
    """The clock reading by which a call with ``request`` must end (its ``timeout_s`` from now), or None."""
    timeout = request.timeout_s if isinstance(request, RouteRequest) else None
    return None if timeout is None else middleware.clock() + timeout


class OpenAttempt(Generic[T]):
    """The attempt that answered: ``value`` is what the call returned; it stays in flight until ended.

    End it once its result is delivered: :meth:`succeeded` (also when the reader stopped early) or
    :meth:`interrupted` (a stream broke after its first chunk). Only the first of them counts.
    """

    __slots__ = ("_middleware", "_open", "_trace", "provider", "start", "value")

    def __init__(
        self, middleware: Middleware, provider: Provider, start: float, value: T, trace: AttemptTrace | None = None
    ) -> None:
        self._middleware = middleware
        self._trace = trace  # telemetry: ended with the attempt
        self._open = True
        self.provider = provider
        self.start = start
        self.value = value

    @property
    def provider_id(self) -> str:
        """The provider that answered."""
        return self.provider.id

    @property
    def ended(self) -> bool:
        """Whether :meth:`succeeded` or :meth:`interrupted` was called."""
        return not self._open

    def elapsed(self) -> float:
        """Seconds since the attempt started (never negative)."""
        return max(self._middleware.clock() - self.start, 0.0)

    def succeeded(
        self, *, ttft_s: float | None = None, usage: Usage | None = None, latency_s: float | None = None
    ) -> None:
        """End the attempt and record its success (latency, time to first chunk, tokens, cost).

        ``latency_s`` defaults to the time since the attempt started. A ``usage`` that is not a valid
        :class:`Usage` (negative tokens, NaN cost, another type) is left out of the record and counted as
        a ``usage`` callback failure: the success itself is always recorded.
        """
        if not self._open:
            return
        self._open = False
        mw = self._middleware
        pid = self.provider.id
        latency = mw.clock() - self.start if latency_s is None else latency_s
        if latency < 0.0:
            latency = 0.0
        if ttft_s is not None and ttft_s < 0.0:
            ttft_s = 0.0
        trace = self._trace
        token = trace.enter() if trace is not None else None  # telemetry: breaker events land on the attempt span
        outcome: Outcome | None = None
        try:  # recorded while still counted in flight: the router reads the load the answer came under
            outcome = self._success(latency, ttft_s, usage)
            _record(mw, outcome)
        finally:
            mw.end_attempt(pid)
            if trace is not None:
                trace.succeeded(outcome, token)

    def _success(self, latency: float, ttft_s: float | None, usage: Usage | None) -> Outcome:
        pid = self.provider.id
        if usage is None:
            return Outcome(pid, True, latency, ttft_s=ttft_s)
        if isinstance(usage, Usage):
            try:
                return Outcome(
                    pid,
                    True,
                    latency,
                    ttft_s=ttft_s,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cost=usage.cost,
                )
            except ConfigError as exc:
                detail = f"unusable Usage: {exc.field.removeprefix('Outcome.')} {exc.message}"
        else:
            detail = f"returned {type(usage).__name__}, not a Usage"
        self._middleware.callback_failures.failed("usage", detail=detail)
        return Outcome(pid, True, latency, ttft_s=ttft_s)

    def interrupted(self, error: BaseException, *, ttft_s: float | None = None) -> ErrorKind | None:
        """End the attempt and record that its delivery broke with ``error``; returns the error's kind."""
        if not self._open:
            return None
        self._open = False
        mw = self._middleware
        trace = self._trace
        token = trace.enter() if trace is not None else None  # telemetry: breaker events land on the attempt span
        kind: ErrorKind | None = None
        try:
            kind = mw.classify(error, self.provider)
            _record(
                mw,
                Outcome(
                    self.provider.id,
                    False,
                    self.elapsed(),
                    ttft_s=None if ttft_s is None else max(ttft_s, 0.0),
                    error=error,
                    error_kind=kind,
                ),
            )
        finally:
            mw.end_attempt(self.provider.id)
            if trace is not None:
                trace.interrupted(error, kind, token)
        return kind

    def __repr__(self) -> str:
        return f"OpenAttempt({self.provider.id!r}, {'ended' if not self._open else 'in flight'})"


def attempt_steps(
    middleware: Middleware,
    request: RouteRequest | None = None,
    *,
    max_wait_s: float = 0.0,
    deadline: float | None = None,
    lane: Lane | None = None,
) -> Generator[Command, Any, OpenAttempt[Any]]:
    """The state machine of one call (see the module docstring); returns the attempt that answered.

    Raises what the call must raise: an error that does not fail over, cancellation, or, once no
    pass may follow, :class:`NoProviderAvailableError` / :class:`AllProvidersFailedError`.
    """
    require("request", request is None or isinstance(request, RouteRequest), "a RouteRequest or None", request)
    require("max_wait_s", is_number(max_wait_s) and max_wait_s >= 0, "a finite number of seconds >= 0", max_wait_s)
    tel = middleware.telemetry
    if tel is None:
        return _steps(middleware, request, max_wait_s, deadline, lane, None)
    trace = tel.request(request)  # telemetry: the request span and its attempts' CLIENT spans
    if lane is not None:
        lane.trace = trace
    return traced(_steps(middleware, request, max_wait_s, deadline, lane, trace), trace)


def _steps(
    middleware: Middleware,
    request: RouteRequest | None,
    max_wait_s: float,
    deadline: float | None,
    lane: Lane | None,
    trace: RequestTrace | None,
) -> Generator[Command, Any, OpenAttempt[Any]]:
    """:func:`attempt_steps` itself (arguments checked); ``trace`` is told of decisions, attempts and waits."""
    clock = middleware.clock
    failover = middleware.failover
    begin, end = middleware.begin_attempt, middleware.end_attempt
    budget = middleware.retry_budget
    attempts: list[Attempt] = [] if lane is None else lane.attempts
    started = clock() if max_wait_s > 0 or deadline is not None else 0.0
    wait_cut = False
    if deadline is not None and max_wait_s > 0 and deadline - started <= max_wait_s:
        wait_cut = True  # no wait beyond the deadline; the call then ends as past its deadline
        max_wait_s = max(deadline - started, 0.0)
    wait: RecoveryWait | None = None
    # While waiting may still help, a pass with every provider out ends (and waits for the soonest
    # re-admission) instead of sending the request into an ejected provider; when waiting cannot help,
    # the configured RoutingConfig.when_all_out decides (by default: the soonest re-admission now).
    all_out: AllOutMode | None = AllOutMode.FAIL if max_wait_s > 0 else None
    while True:
        try:
            decision = middleware.select(request, when_all_out=all_out)
        except NoProviderAvailableError as exc:
            error: PiBuilderError = exc
        else:
            if trace is not None:
                trace.decided(decision)
            providers = decision.providers
            if lane is not None:
                lane.decision = decision
            for index, provider in enumerate(providers):
                pid = provider.id
                if deadline is not None and clock() >= deadline:
                    raise DeadlineExceededError(_timeout(request, deadline - started), attempts)
                if lane is not None and pid in lane.claimed:
                    continue  # already running beside this loop (a hedge)
                if index:
                    if attempts and budget is not None and budget.deny_retry():
                        decision.throttled(budget.describe() + ": no failover")
                        break
                    try:
                        permitted = failover.acquire(pid)
                    except UnknownProviderError:  # removed since the decision was made
                        continue
                    if not permitted:
                        continue  # its breaker opened (or its trial permits went) since the decision was made
                    if attempts:
                        last = attempts[-1]
                        failover.note_switch(last.provider_id, pid, last.error_kind.value)
                begin(pid)
                start = clock()
                span = trace.attempt(provider) if trace is not None else None  # current while the provider runs
                try:
                    value = yield provider
                except Exception as exc:
                    try:  # recorded while still counted in flight (a 429 under load is a concurrency ceiling)
                        fails_over = _failed(middleware, provider, exc, clock() - start, attempts)
                    finally:
                        end(pid)
                        if span is not None:
                            span.failed(exc, attempts)
                    if not fails_over:
                        raise
                    if lane is not None and lane.hold:
                        lane.hold = False
                        yield Hold()
                    continue
                except BaseException as exc:  # cancelled / interrupted / lost the race: no outcome, permit given back
                    end(pid)
                    failover.release(pid)
                    if span is not None:
                        if isinstance(exc, LostRace):
                            span.lost()
                        else:
                            span.cancelled(exc)
                    raise
                if span is not None:
                    span.answered()
                return OpenAttempt(middleware, provider, start, value, span)
            error = chain_exhausted([p.id for p in providers], attempts)
        if deadline is not None and clock() >= deadline:
            raise DeadlineExceededError(_timeout(request, deadline - started), attempts)
        if max_wait_s <= 0:
            raise error
        if wait is None:
            wait = RecoveryWait(failover, _waitable(middleware, request), max_wait_s, clock, start=started)
        delay = wait.delay(error)
        if delay is None:
            if all_out is AllOutMode.FAIL and isinstance(error, NoProviderAvailableError):
                all_out = None  # one last pass under the configured rule (e.g. the soonest re-admission)
                max_wait_s = 0.0
                continue
            if wait_cut:
                raise DeadlineExceededError(_timeout(request, max_wait_s), attempts)
            raise wait.give_up(error, attempts)
        log.info("no provider answered (%s); next pass in %.3f s", type(error).__name__, delay)
        if trace is not None:
            trace.waiting(delay)
        yield Sleep(delay)


def run_attempts(
    middleware: Middleware, fn: Callable[[Provider], T], request: RouteRequest | None = None, *, max_wait_s: float = 0.0
) -> OpenAttempt[T]:
    """Drive :func:`attempt_steps` synchronously: ``fn(provider)`` per attempt, ``middleware.sleep`` between passes."""
    steps = attempt_steps(middleware, request, max_wait_s=max_wait_s, deadline=deadline_of(middleware, request))
    step: Command | OpenAttempt[T] = next(steps)
    while not isinstance(step, OpenAttempt):
        try:
            if isinstance(step, Sleep):
                middleware.sleep(step.seconds)
                result: Any = None
            else:
                result = fn(step)
        except BaseException as exc:
            step = resume(steps, error=exc)
        else:
            step = resume(steps, result)
    return step


@dataclass(slots=True)
class AsyncOptions:
    """How an async driver runs the attempts of one call (``Middleware.aexecute_open``'s keyword arguments).

    ``max_wait_s``: how long a call may wait for a recovery when a pass ends without an answer;
    ``timeout_s``: bounds each ``await fn(provider)`` (a timeout fails over with
    ``timeout_error(provider_id, seconds)``); ``discard(value)``: awaited for an answer that came too late
    to be used (a hedged call's loser, e.g. to close a stream).
    """

    max_wait_s: float = 0.0
    timeout_s: float | None = None
    timeout_error: Callable[[str, float], AttemptTimeoutError] = AttemptTimeoutError
    discard: Callable[[Any], Awaitable[object]] | None = None

    def __post_init__(self) -> None:
        v = self.timeout_s
        require("timeout_s", v is None or (is_number(v) and v > 0), "a finite number of seconds > 0, or None", v)


_NO_OPTIONS = AsyncOptions()


async def arun_attempts(
    middleware: Middleware,
    fn: Callable[[Provider], Awaitable[T]],
    request: RouteRequest | None = None,
    options: AsyncOptions = _NO_OPTIONS,
) -> OpenAttempt[T]:
    """Drive :func:`attempt_steps` asynchronously; ``options.timeout_s`` bounds each ``await fn(provider)``.

    An attempt that runs out of time (``timeout_s``, or what is left of the request's deadline) fails
    over with ``options.timeout_error(provider_id, seconds)``.
    """
    end_by = deadline_of(middleware, request)
    steps = attempt_steps(middleware, request, max_wait_s=options.max_wait_s, deadline=end_by)
    step: Command | OpenAttempt[T] = next(steps)
    while not isinstance(step, OpenAttempt):
        limit: asyncio.Timeout | None = None
        try:
            if isinstance(step, Sleep):
                await middleware.async_sleep(step.seconds)
                result: Any = None
            else:
                bound = attempt_bound(middleware, options.timeout_s, end_by)
                if bound is None:
                    result = await fn(step)
                else:
                    import asyncio  # loaded already: this runs in an event loop

                    limit = asyncio.timeout(bound)
                    async with limit:
                        result = await fn(step)
        except BaseException as exc:
            if limit is not None and isinstance(exc, TimeoutError) and limit.expired():
                assert isinstance(step, Provider)
                exc = options.timeout_error(step.id, bound or 0.0)
            step = resume(steps, error=exc)
        else:
            step = resume(steps, result)
    return step


def resume(
    steps: Generator[Command, Any, OpenAttempt[T]], value: Any = None, *, error: BaseException | None = None
) -> Command | OpenAttempt[T]:
    """Resume the attempt loop with ``value`` (or throw ``error`` into it): its next command, or its answer."""
    try:
        return steps.send(value) if error is None else steps.throw(error)
    except StopIteration as stop:
        opened: OpenAttempt[T] = stop.value
        return opened


def attempt_bound(middleware: Middleware, timeout_s: float | None, deadline: float | None) -> float | None:
    """Seconds one attempt may take: ``timeout_s``, or what is left before ``deadline`` if that is less."""
    if deadline is None:
        return timeout_s
    left = max(deadline - middleware.clock(), 0.0)
    return left if timeout_s is None or left < timeout_s else timeout_s


def complete(opened: OpenAttempt[T], usage: Callable[[T], Usage] | None = None) -> T:
    """End a non-streamed attempt at once (its result is delivered) and return its value.

    ``usage(value)`` is a user callback: whatever it raises or returns, the success is recorded (with
    the provider's latency, not the callback's) and the value returned; a failure is counted as a
    ``usage`` callback failure. Only an interrupt (KeyboardInterrupt, cancellation) propagates, after
    the success is recorded.
    """
    value = opened.value
    if usage is None:
        opened.succeeded()
        return value
    latency = opened.elapsed()
    try:
        counted: Usage | None = usage(value)
    except Exception as exc:
        opened._middleware.callback_failures.failed("usage", exc)
        counted = None
    except BaseException:
        opened.succeeded(latency_s=latency)
        raise
    opened.succeeded(usage=counted, latency_s=latency)
    return value


def _failed(
    middleware: Middleware, provider: Provider, exc: Exception, latency: float, attempts: list[Attempt]
) -> bool:
    """Classify and record a failed attempt; whether to fail over."""
    kind = ErrorKind.TIMEOUT if isinstance(exc, AttemptTimeoutError) else middleware.classify(exc, provider)
    latency = max(latency, 0.0)
    _record(middleware, Outcome(provider.id, False, latency, error=exc, error_kind=kind))
    attempts.append(Attempt(provider.id, exc, kind, latency))
    fails_over = kind.fails_over
    # The exception's type, never its message: provider errors may quote keys or prompts.
    log.info(
        "provider %r failed (%s: %s)%s",
        provider.id,
        kind.value,
        type(exc).__name__,
        "; failing over" if fails_over else "",
    )
    return fails_over


def _record(middleware: Middleware, outcome: Outcome) -> None:
    """:meth:`Middleware.record`, except for a provider removed while its attempt ran: nothing to record then.

    The attempt's answer (or its failing over) must not turn into an error about an unknown provider.
    """
    try:
        middleware.record(outcome)
    except UnknownProviderError:
        if outcome.provider_id in middleware.router.providers:
            raise
        log.debug("provider %r was removed while its attempt ran; its outcome is not recorded", outcome.provider_id)


def _timeout(request: RouteRequest | None, default: float) -> float:
    return request.timeout_s if request is not None and request.timeout_s is not None else default


def _waitable(middleware: Middleware, request: RouteRequest | None) -> list[str]:
    """The providers this request may go to, whose recovery is worth waiting for."""
    ids = list(middleware.providers)
    if request is None:
        return ids
    return [
        pid for pid in ids if (request.candidates is None or pid in request.candidates) and pid not in request.exclude
    ]
