"""The one attempt loop: in-flight accounting on every path, max_wait_s on a manual clock, the state machine itself."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from core_support import HTTPError, Sleeper
from hypothesis import given, settings
from hypothesis import strategies as st

from pi_builder_middleware import (
    AllOutMode,
    AllProvidersFailedError,
    AttemptTimeoutError,
    CircuitState,
    ConfigError,
    ErrorKind,
    EventKind,
    FailoverConfig,
    ManualClock,
    Middleware,
    NoProviderAvailableError,
    Outcome,
    Provider,
    RouteRequest,
    RoutingConfig,
    Usage,
)
from pi_builder_middleware.attempts import Sleep, attempt_steps


@pytest.fixture
def sleeper(clock: ManualClock) -> Sleeper:
    return Sleeper(clock)


def make(
    clock: ManualClock,
    sleeper: Sleeper,
    ids: tuple[str, ...] = ("a", "b", "c"),
    when_all_out: AllOutMode = AllOutMode.FAIL,
    **overrides: object,
) -> Middleware:
    """Strategy "failover" (chain a, b, c); two failures eject for 5 s, a failed trial for 10 s.

    Fail fast when every provider is out unless a test asks for the default (the soonest re-admission).
    """
    config = FailoverConfig.preset("aggressive", base_ejection_s=5.0, jitter=0.0, recovery_successes=1, **overrides)  # type: ignore[arg-type]
    return Middleware(
        [Provider(id=pid) for pid in ids],
        strategy="failover",
        failover=config,
        clock=clock,
        sleep=sleeper.sleep,
        async_sleep=sleeper.async_sleep,
        load_entrypoints=False,
        routing=RoutingConfig(when_all_out=when_all_out),
    )


def inflight(mw: Middleware) -> dict[str, int]:
    return {pid: mw.monitor.candidate(pid).inflight for pid in mw.providers}


def trip(mw: Middleware, pid: str) -> None:
    for _ in range(2):
        mw.record(Outcome(pid, False, 0.1, error_kind=ErrorKind.SERVER_ERROR))


def run(mw: Middleware, mode: str, fn, request: RouteRequest | None = None, **kwargs: object):
    """``mw.execute`` or ``mw.aexecute`` with the same (sync) ``fn``."""
    if mode == "sync":
        return mw.execute(fn, request, **kwargs)

    async def afn(provider: Provider) -> object:
        return fn(provider)

    return asyncio.run(mw.aexecute(afn, request, **kwargs))


MODES = ["sync", "async"]


# -- in-flight accounting ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_an_attempt_is_in_flight_while_it_runs_and_not_after_it_answered(clock, sleeper, mode):
    mw = make(clock, sleeper)
    seen = []

    def call(provider: Provider) -> str:
        seen.append(inflight(mw))
        return provider.id

    assert run(mw, mode, call) == "a"
    assert seen == [{"a": 1, "b": 0, "c": 0}]
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_attempt_ends_before_the_next_one_begins(clock, sleeper, mode):
    mw = make(clock, sleeper)
    seen = []

    def call(provider: Provider) -> str:
        seen.append(inflight(mw))
        if provider.id != "c":
            raise HTTPError(503)
        return provider.id

    assert run(mw, mode, call) == "c"
    assert seen == [{"a": 1, "b": 0, "c": 0}, {"a": 0, "b": 1, "c": 0}, {"a": 0, "b": 0, "c": 1}]
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}


@pytest.mark.parametrize("mode", MODES)
def test_an_error_that_does_not_fail_over_ends_its_attempt(clock, sleeper, mode):
    mw = make(clock, sleeper)

    def call(provider: Provider) -> str:
        raise HTTPError(400)

    with pytest.raises(HTTPError):
        run(mw, mode, call)
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}


@pytest.mark.parametrize("mode", MODES)
def test_every_provider_failing_ends_every_attempt(clock, sleeper, mode):
    mw = make(clock, sleeper)

    def call(provider: Provider) -> str:
        raise HTTPError(503)

    with pytest.raises(AllProvidersFailedError):
        run(mw, mode, call)
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}


def test_an_interrupted_trial_ends_its_attempt_and_gives_its_permit_back(clock, sleeper):
    mw = make(clock, sleeper, ("a",))
    trip(mw, "a")
    clock.advance(5.1)
    assert mw.failover.state("a") is CircuitState.HALF_OPEN
    seen = []

    def call(provider: Provider) -> str:
        seen.append(inflight(mw))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mw.execute(call)
    assert seen == [{"a": 1}]
    assert inflight(mw) == {"a": 0}
    assert mw.failover.unavailable_reason("a") is None  # the trial permit is back


async def test_a_cancelled_async_attempt_ends(clock, sleeper):
    mw = make(clock, sleeper)
    started = asyncio.Event()

    async def hang(provider: Provider) -> str:
        started.set()
        await asyncio.sleep(30)
        return provider.id

    task = asyncio.create_task(mw.aexecute(hang))
    await started.wait()
    assert inflight(mw)["a"] == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}


async def test_an_async_attempt_that_times_out_ends_and_fails_over_as_a_timeout(clock, sleeper):
    mw = make(clock, sleeper)

    async def call(provider: Provider) -> str:
        if provider.id == "a":
            await asyncio.sleep(5)
        return provider.id

    assert await mw.aexecute(call, RouteRequest(attempt_timeout_s=0.02)) == "b"
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}
    assert mw.monitor.metrics("a")["failures"] == 1
    switch = [e for e in mw.failover.events if e.kind is EventKind.SWITCH]
    assert switch and switch[-1].detail.endswith(ErrorKind.TIMEOUT.value)


def test_usage_that_raises_still_ends_the_attempt(clock, sleeper):
    mw = make(clock, sleeper)

    def usage(result: str) -> Usage:
        raise ValueError("bad usage")

    assert mw.execute(lambda p: p.id, usage=usage) == "a"  # counted, never raised (tests/core/test_request_path.py)
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}


def test_an_open_attempt_stays_in_flight_until_its_delivery_ends(clock, sleeper):
    mw = make(clock, sleeper)
    opened = mw.execute_open(lambda p: f"head of {p.id}")
    assert (opened.provider_id, opened.value, opened.ended) == ("a", "head of a", False)
    assert inflight(mw)["a"] == 1
    clock.advance(0.5)
    opened.succeeded(ttft_s=0.1, usage=Usage(10, 20))
    opened.succeeded()  # only the first end counts
    assert opened.ended
    assert inflight(mw)["a"] == 0
    m = mw.monitor.metrics("a")
    assert (m["successes"], m["tokens_in"], m["tokens_out"]) == (1, 10, 20)
    assert m["latency_avg_ms"] == pytest.approx(500.0)


def test_an_open_attempt_interrupted_records_the_failure_once(clock, sleeper):
    mw = make(clock, sleeper)
    opened = mw.execute_open(lambda p: p.id)
    assert opened.interrupted(HTTPError(500), ttft_s=0.01) is ErrorKind.SERVER_ERROR
    assert opened.interrupted(HTTPError(503)) is None
    opened.succeeded()
    assert inflight(mw)["a"] == 0
    assert (mw.monitor.metrics("a")["failures"], mw.monitor.metrics("a")["successes"]) == (1, 0)


async def test_an_async_open_attempt_times_out_with_the_given_error(clock, sleeper):
    class SlowStart(AttemptTimeoutError):
        pass

    mw = make(clock, sleeper)

    async def call(provider: Provider) -> str:
        if provider.id == "a":
            await asyncio.sleep(5)
        return provider.id

    opened = await mw.aexecute_open(call, timeout_s=0.02, timeout_error=SlowStart)
    assert opened.provider_id == "b"
    assert inflight(mw) == {"a": 0, "b": 1, "c": 0}
    opened.succeeded()
    assert inflight(mw)["b"] == 0


# -- max_wait_s on a manual clock ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_with_every_breaker_open_the_call_waits_for_the_soonest_readmission(clock, sleeper, mode):
    mw = make(clock, sleeper)
    trip(mw, "a")
    clock.advance(1.0)
    trip(mw, "b")
    trip(mw, "c")  # a is back at +5 s from its trip, b and c at +6 s

    assert run(mw, mode, lambda p: p.id, max_wait_s=10) == "a"
    assert sleeper.slept == pytest.approx([4.0])  # one sleep, exactly until a's ejection ended
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}


@pytest.mark.parametrize("mode", MODES)
def test_nobody_back_within_max_wait_fails_at_once_without_sleeping(clock, sleeper, mode):
    mw = make(clock, sleeper)
    for pid in ("a", "b", "c"):
        trip(mw, pid)

    with pytest.raises(NoProviderAvailableError):
        run(mw, mode, lambda p: p.id, max_wait_s=4.9)
    assert sleeper.slept == []
    assert clock() == 1000.0


@pytest.mark.parametrize("mode", MODES)
def test_nobody_back_within_max_wait_goes_to_the_soonest_by_default(clock, sleeper, mode):
    mw = make(clock, sleeper, when_all_out=AllOutMode.SOONEST)
    trip(mw, "b")
    clock.advance(1.0)
    trip(mw, "a")
    trip(mw, "c")

    assert run(mw, mode, lambda p: p.id, max_wait_s=3.0) == "b"  # b is back soonest (in 4 s): sent now
    assert sleeper.slept == []
    assert mw.stats()["router"]["all_out_decisions"] == 1
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}


@pytest.mark.parametrize("mode", MODES)
def test_with_max_wait_a_reachable_readmission_is_waited_for_not_forced(clock, sleeper, mode):
    mw = make(clock, sleeper, when_all_out=AllOutMode.SOONEST)
    for pid in ("a", "b", "c"):
        trip(mw, pid)
    assert run(mw, mode, lambda p: p.id, max_wait_s=6.0) == "a"
    assert sleeper.slept == pytest.approx([5.0])
    assert mw.stats()["router"]["all_out_decisions"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_without_max_wait_nothing_sleeps(clock, sleeper, mode):
    mw = make(clock, sleeper)
    for pid in ("a", "b", "c"):
        trip(mw, pid)
    with pytest.raises(NoProviderAvailableError):
        run(mw, mode, lambda p: p.id)
    assert sleeper.slept == []


@pytest.mark.parametrize("mode", MODES)
def test_providers_that_keep_failing_are_retried_with_backoff_and_every_pass_is_listed(clock, sleeper, mode):
    mw = make(clock, sleeper, ("a", "b"), consecutive_failures=1000, minimum_calls=1000)  # breakers never trip
    calls = []

    def call(provider: Provider) -> str:
        calls.append(provider.id)
        raise HTTPError(503)

    with pytest.raises(AllProvidersFailedError) as info:
        run(mw, mode, call, max_wait_s=0.3)

    assert sleeper.slept == pytest.approx([0.05, 0.1, 0.15])  # the last backoff (0.2) is cut at the deadline
    assert [a.provider_id for a in info.value.attempts] == ["a", "b"] * 4
    assert info.value.__cause__ is info.value.attempts[-1].error
    assert calls == ["a", "b"] * 4
    assert inflight(mw) == {"a": 0, "b": 0}


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_pass_then_waiting_for_the_ejection_then_an_answer(clock, sleeper, mode):
    mw = make(clock, sleeper, ("a", "b"))
    down_until = clock() + 3.0

    def call(provider: Provider) -> str:
        if clock() < down_until:
            raise HTTPError(503)
        return provider.id

    assert run(mw, mode, call, max_wait_s=20) == "a"
    # pass 1 fails on a and b; pass 2 after the 50 ms backoff trips both; then the 5 s ejection ends
    assert sleeper.slept == pytest.approx([0.05, 5.0])
    assert mw.failover.state("a") is CircuitState.CLOSED


@pytest.mark.parametrize("mode", MODES)
def test_a_bad_request_during_a_wait_is_raised_at_once(clock, sleeper, mode):
    mw = make(clock, sleeper, ("a",))
    trip(mw, "a")

    def call(provider: Provider) -> str:
        raise HTTPError(400)

    with pytest.raises(HTTPError):
        run(mw, mode, call, max_wait_s=10)
    assert sleeper.slept == pytest.approx([5.0])


def test_providers_outside_the_request_are_not_waited_for(clock, sleeper):
    mw = make(clock, sleeper)
    trip(mw, "a")
    clock.advance(2.0)
    trip(mw, "b")  # c is healthy but excluded: the call waits for a (3 s), not for b
    assert mw.execute(lambda p: p.id, RouteRequest(exclude=frozenset({"c"})), max_wait_s=10) == "a"
    assert sleeper.slept == pytest.approx([3.0])


async def test_a_cancelled_async_wait_propagates(clock):
    mw = Middleware(
        [Provider(id="a")],
        failover=FailoverConfig.preset("aggressive", jitter=0.0),
        clock=clock,
        load_entrypoints=False,
    )  # the real asyncio.sleep
    trip(mw, "a")
    task = asyncio.create_task(mw.aexecute(_answer, max_wait_s=60))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert inflight(mw) == {"a": 0}


async def _answer(provider: Provider) -> str:
    return provider.id


def test_sleep_must_be_callable():
    with pytest.raises(ConfigError) as info:
        Middleware([Provider(id="a")], sleep=1.0)  # type: ignore[arg-type]
    assert info.value.field == "sleep"


# -- the state machine, driven by hand -----------------------------------------------------------


def test_the_state_machine_yields_calls_and_sleeps_and_returns_the_open_attempt(clock, sleeper):
    mw = make(clock, sleeper, ("a", "b"))
    trip(mw, "a")
    trip(mw, "b")
    steps = attempt_steps(mw, max_wait_s=10)

    command = next(steps)
    assert isinstance(command, Sleep) and command.seconds == pytest.approx(5.0)
    clock.advance(command.seconds)
    command = steps.send(None)
    assert isinstance(command, Provider) and command.id == "a"
    assert inflight(mw)["a"] == 1
    command = steps.throw(HTTPError(503))  # the trial failed: a is out for 10 s now, b's trial is next
    assert isinstance(command, Provider) and command.id == "b"
    assert inflight(mw) == {"a": 0, "b": 1}
    with pytest.raises(StopIteration) as stop:
        steps.send("answer")
    opened = stop.value.value
    assert (opened.provider_id, opened.value, inflight(mw)["b"]) == ("b", "answer", 1)
    opened.succeeded()
    assert inflight(mw) == {"a": 0, "b": 0}


def test_closing_the_state_machine_mid_attempt_ends_the_attempt(clock, sleeper):
    mw = make(clock, sleeper)
    steps = attempt_steps(mw)
    assert next(steps).id == "a"  # type: ignore[union-attr]
    steps.close()  # e.g. the driver's frame went away
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}


# -- property: whatever the providers do, every attempt ends and the waits stay within max_wait_s --------

BEHAVIOURS = ["ok", "503", "500", "429", "400", "interrupt"]


@settings(max_examples=150, deadline=None)
@given(
    script=st.lists(st.sampled_from(BEHAVIOURS), max_size=12),
    max_wait_s=st.sampled_from([0.0, 0.3, 7.0, 30.0]),
    use_async=st.booleans(),
)
def test_any_run_ends_every_attempt_and_never_waits_past_max_wait(script, max_wait_s, use_async):
    clock = ManualClock(1000.0)
    sleeper = Sleeper(clock)
    mw = make(clock, sleeper)
    behaviours = iter(script)
    seen: list[int] = []

    def call(provider: Provider) -> str:
        seen.append(sum(inflight(mw).values()))
        what = next(behaviours, "503")
        if what == "ok":
            return provider.id
        if what == "interrupt":
            raise KeyboardInterrupt
        raise HTTPError(int(what))

    with contextlib.suppress(HTTPError, KeyboardInterrupt, AllProvidersFailedError, NoProviderAvailableError):
        run(mw, "async" if use_async else "sync", call, max_wait_s=max_wait_s)
    assert seen and set(seen) == {1}  # one attempt at a time, counted while it runs
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}
    assert sum(sleeper.slept) <= max_wait_s + 1e-9
    assert clock() - 1000.0 <= max_wait_s + 1e-9
