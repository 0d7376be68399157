"""Hedged async calls on a manual clock: the test decides when each provider answers and when the hedge delay ends."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from pi_builder_middleware import (
    AllProvidersFailedError,
    CircuitState,
    DeadlineExceededError,
    ErrorKind,
    FailoverConfig,
    HedgePolicy,
    ManualClock,
    Middleware,
    Outcome,
    Provider,
    RouteRequest,
)


class HTTPError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


class Script:
    """Provider calls and hedge timers that end only when the test says so (the clock moves with them)."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.timers: list[tuple[float, asyncio.Future[None]]] = []
        self.calls: dict[str, asyncio.Future[str]] = {}
        self.started: list[str] = []

    async def async_sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.timers.append((seconds, future))
        await future

    async def call(self, provider: Provider) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.calls[provider.id] = future
        self.started.append(provider.id)
        return await future

    def fire(self) -> float:
        """End the newest pending hedge timer, moving the clock by its delay; returns the delay."""
        seconds, future = next((s, f) for s, f in reversed(self.timers) if not f.done())
        self.clock.advance(seconds)
        future.set_result(None)
        return seconds

    def answer(self, pid: str, after: float = 0.0) -> None:
        self.clock.advance(after)
        self.calls[pid].set_result(pid)

    def fail(self, pid: str, status: int = 503, after: float = 0.0) -> None:
        self.clock.advance(after)
        self.calls[pid].set_exception(HTTPError(status))


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def make(
    clock: ManualClock, script: Script, policy: HedgePolicy | None = None, ids: tuple[str, ...] = ("a", "b", "c")
) -> Middleware:
    config = FailoverConfig.preset("aggressive", base_ejection_s=5.0, jitter=0.0, recovery_successes=1)
    return Middleware(
        [Provider(id=pid, cost_per_1k_input=1.0) for pid in ids],
        strategy="failover",
        failover=config,
        clock=clock,
        async_sleep=script.async_sleep,
        load_entrypoints=False,
        hedge=policy or HedgePolicy(delay_s=0.5),
    )


def inflight(mw: Middleware) -> dict[str, int]:
    return {pid: mw.monitor.candidate(pid).inflight for pid in mw.providers}


def hedging(mw: Middleware) -> dict[str, object]:
    stats = mw.stats()["hedging"]
    assert isinstance(stats, dict)
    return stats


@pytest.fixture
def script(clock: ManualClock) -> Script:
    return Script(clock)


def start(call: Awaitable[str]) -> asyncio.Task[str]:
    return asyncio.ensure_future(call)


def leftover_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


# -- timing and the winner ------------------------------------------------------------------------


async def test_no_hedge_before_the_delay_and_none_when_the_first_answers_in_time(clock, script):
    mw = make(clock, script)
    task = start(mw.aexecute(script.call))
    await settle()
    assert script.started == ["a"] and [s for s, _ in script.timers] == [0.5]
    script.answer("a", after=0.3)
    assert await task == "a"
    assert script.started == ["a"]
    assert hedging(mw)["started"] == 0
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}
    assert script.timers[0][1].cancelled()  # the timer does not outlive the call
    await settle()
    assert not leftover_tasks()


async def test_the_hedge_starts_after_the_delay_and_the_first_answer_wins(clock, script):
    mw = make(clock, script)
    for _ in range(5):  # a's routing latency estimate: 0.2 s
        mw.record(Outcome("a", True, 0.2))
    task = start(mw.aexecute(script.call))
    await settle()
    script.fire()
    await settle()
    assert script.started == ["a", "b"]
    assert inflight(mw) == {"a": 1, "b": 1, "c": 0}
    script.answer("b", after=0.1)
    assert await task == "b"
    # the loser was cancelled, is no failure, and ended: nothing in flight, nothing leaked
    assert script.calls["a"].cancelled()
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}
    assert mw.monitor.metrics("a")["failures"] == 0 and mw.monitor.metrics("b")["successes"] == 1
    assert mw.failover.breaker_info("a")["consecutive_failures"] == 0
    # ...but it was at least 0.6 s slow: its latency estimate rose from 0.2 s a tenth of the way to that
    assert mw.monitor.candidate("a").latency_s == pytest.approx(0.24)
    stats = hedging(mw)
    assert (stats["started"], stats["won"], stats["cancelled"]) == (1, 1, 1)
    assert stats["cancelled_cost"] == pytest.approx(1.0)  # a's input tokens (1000 at 1.0 per 1k) were paid
    await settle()
    assert not leftover_tasks()


async def test_when_the_first_answers_after_the_hedge_started_the_hedge_is_cancelled(clock, script):
    mw = make(clock, script)
    task = start(mw.aexecute(script.call))
    await settle()
    script.fire()
    await settle()
    script.answer("a", after=0.05)
    assert await task == "a"
    assert script.calls["b"].cancelled()
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}
    assert mw.monitor.metrics("a")["successes"] == 1 and mw.monitor.metrics("b")["calls"] == 0
    stats = hedging(mw)
    assert (stats["started"], stats["won"], stats["cancelled"]) == (1, 0, 1)


async def test_max_hedges_two_starts_a_second_hedge_after_another_delay(clock, script):
    mw = make(clock, script, HedgePolicy(delay_s=0.5, max_hedges=2))
    task = start(mw.aexecute(script.call))
    await settle()
    script.fire()
    await settle()
    script.fire()
    await settle()
    assert script.started == ["a", "b", "c"]
    script.answer("c")
    assert await task == "c"
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}
    assert hedging(mw)["cancelled"] == 2


# -- failures during the race ---------------------------------------------------------------------


async def test_the_first_failing_while_the_hedge_runs_is_recorded_and_the_hedge_answers(clock, script):
    mw = make(clock, script)
    task = start(mw.aexecute(script.call))
    await settle()
    script.fire()
    await settle()
    script.fail("a", after=0.1)
    await settle()
    assert script.started == ["a", "b"]  # no failover to c while the hedge on b still runs
    assert inflight(mw)["c"] == 0
    script.answer("b", after=0.1)
    assert await task == "b"
    assert mw.monitor.metrics("a")["failures"] == 1
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}
    assert hedging(mw)["won"] == 1 and hedging(mw)["cancelled"] == 0


async def test_when_the_first_and_the_hedge_both_fail_the_loop_fails_over_to_the_next(clock, script):
    mw = make(clock, script)
    task = start(mw.aexecute(script.call))
    await settle()
    script.fire()
    await settle()
    script.fail("b")
    await settle()
    script.fail("a")
    await settle()
    assert script.started == ["a", "b", "c"]
    script.answer("c")
    assert await task == "c"
    assert mw.monitor.metrics("a")["failures"] == 1 and mw.monitor.metrics("b")["failures"] == 1
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}


async def test_when_everything_fails_the_error_lists_the_hedge_too(clock, script):
    mw = make(clock, script, ids=("a", "b"))
    task = start(mw.aexecute(script.call))
    await settle()
    script.fire()
    await settle()
    script.fail("b")
    await settle()
    script.fail("a")
    with pytest.raises(AllProvidersFailedError) as info:
        await task
    assert sorted(a.provider_id for a in info.value.attempts) == ["a", "b"]
    assert inflight(mw) == {"a": 0, "b": 0}


async def test_a_hedge_that_fails_with_a_bad_request_ends_the_call_and_cancels_the_first(clock, script):
    mw = make(clock, script)
    task = start(mw.aexecute(script.call))
    await settle()
    script.fire()
    await settle()
    script.fail("b", status=400)
    with pytest.raises(HTTPError):
        await task
    assert script.calls["a"].cancelled()
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}
    await settle()
    assert not leftover_tasks()


async def test_a_cancelled_call_cancels_every_attempt_and_holds_nothing(clock, script):
    mw = make(clock, script)
    task = start(mw.aexecute(script.call))
    await settle()
    script.fire()
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert script.calls["a"].cancelled() and script.calls["b"].cancelled()
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}
    assert mw.monitor.metrics("a")["calls"] == 0 and mw.monitor.metrics("b")["calls"] == 0
    await settle()
    assert not leftover_tasks()


# -- half-open permits ----------------------------------------------------------------------------


def trip(mw: Middleware, pid: str) -> None:
    for _ in range(2):
        mw.record(Outcome(pid, False, 0.1, error_kind=ErrorKind.SERVER_ERROR))


@pytest.mark.parametrize("loser", ["a", "b"])
async def test_a_cancelled_loser_gives_its_half_open_trial_permit_back(clock, script, loser):
    mw = make(clock, script)
    trip(mw, loser)
    clock.advance(6.0)  # past the ejection: half-open, one trial permit
    assert mw.failover.breaker_info(loser)["state"] == CircuitState.HALF_OPEN.value
    task = start(mw.aexecute(script.call, RouteRequest(candidates=frozenset({"a", "b"}))))
    await settle()
    script.fire()
    await settle()
    assert sorted(script.started) == ["a", "b"]
    winner = "b" if loser == "a" else "a"
    script.answer(winner)
    assert await task == winner
    assert script.calls[loser].cancelled()
    assert mw.failover.breaker_info(loser)["state"] == CircuitState.HALF_OPEN.value  # not a failure
    assert mw.failover.acquire(loser)  # the trial permit is free again
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}


# -- adaptive delay, per-request off, the budget ---------------------------------------------------


async def test_the_adaptive_delay_is_the_first_providers_recent_p95_and_ttft_for_streams(clock, script):
    mw = make(clock, script, HedgePolicy(delay_s=None, quantile=0.95, stream_quantile=0.95, min_samples=20))
    task = start(mw.aexecute(script.call))
    await settle()
    assert script.timers == []  # no data yet: no hedge
    script.answer("a")
    await task
    mw.record(Outcome("a", True, 2.0, ttft_s=0.5))  # a tail a hedge can cut (ten times the median's first chunk)
    for i in range(100):
        mw.record(Outcome("a", True, 0.01 * (i + 1)))  # 0.01 .. 1.00 s
        mw.record(Outcome("a", True, 2.0, ttft_s=0.001 * (i + 1)))  # streams: TTFT 0.001 .. 0.1 s
    task = start(mw.aexecute(script.call))
    await settle()
    assert script.timers[-1][0] == pytest.approx(0.95)
    script.answer("a")
    await task
    task = start(mw.aexecute(script.call, RouteRequest(stream=True)))
    await settle()
    assert script.timers[-1][0] == pytest.approx(0.095)
    script.answer("a")
    await task


async def test_hedge_false_on_the_request_turns_hedging_off(clock, script):
    mw = make(clock, script)
    task = start(mw.aexecute(script.call, RouteRequest(hedge=False)))
    await settle()
    assert script.timers == []
    script.answer("a", after=30.0)
    assert await task == "a"
    assert script.started == ["a"] and hedging(mw)["started"] == 0


async def test_a_low_budget_refuses_the_hedge_and_says_so_in_the_decision(clock, script):
    mw = make(clock, script, HedgePolicy(delay_s=0.5, budget_tokens=2))
    for _ in range(2):  # failures drain the budget (b stays closed: one failure each)
        mw.record(Outcome("c", False, 0.1, error_kind=ErrorKind.SERVER_ERROR))
    assert mw.retry_budget is not None and not mw.retry_budget.allows()
    task = start(mw.aexecute(script.call, RouteRequest(candidates=frozenset({"a", "b"}))))
    await settle()
    script.fire()
    await settle()
    assert script.started == ["a"]
    script.answer("a", after=1.0)
    assert await task == "a"
    assert hedging(mw)["budget"]["throttled_hedges"] == 1  # type: ignore[index]
    assert "no hedge" in mw.router.history[-1].reason


async def test_the_deadline_covers_the_hedges(clock):
    # Real time here: the deadline cuts attempts with asyncio's timer; nothing is asserted about durations.
    mw = Middleware(
        [Provider(id="a"), Provider(id="b")],
        strategy="failover",
        load_entrypoints=False,
        hedge=HedgePolicy(delay_s=0.0),
    )

    async def hang(provider: Provider) -> str:
        await asyncio.sleep(30)
        return provider.id

    with pytest.raises(DeadlineExceededError):
        await mw.aexecute(hang, RouteRequest(timeout_s=0.05))
    assert hedging(mw)["started"] == 1
    assert inflight(mw) == {"a": 0, "b": 0}
    await settle()
    assert not leftover_tasks()


def test_sync_calls_do_not_hedge(clock, script):
    mw = make(clock, script)
    seen: list[str] = []

    def call(provider: Provider) -> str:
        seen.append(provider.id)
        clock.advance(10.0)
        return provider.id

    assert mw.execute(call) == "a"
    assert seen == ["a"] and hedging(mw)["started"] == 0


async def test_the_adaptive_delay_stays_out_of_the_tail_and_streams_borrow_latency_until_they_have_data(clock, script):
    mw = make(clock, script, HedgePolicy(delay_s=None, min_samples=20))
    for _ in range(20):
        mw.record(Outcome("a", True, 0.1))
    for _ in range(5):  # a fifth of the calls in the tail: p95 would be 5 s, the cap is 3x the median
        mw.record(Outcome("a", True, 5.0))
    assert mw.hedger is not None
    assert mw.hedger.delay("a", stream=False) == pytest.approx(0.3)
    assert mw.hedger.delay("a", stream=True) == pytest.approx(0.3)  # no stream answered yet
    assert mw.hedger.delay("b", stream=False) is None  # nothing known: no hedge


def test_a_lower_bound_pulls_the_latency_estimate_up_a_tenth_of_the_way_and_never_lowers_it():
    from pi_builder_middleware.estimators import PeakEwma

    ewma = PeakEwma(half_life_s=10.0, warmup=2)
    assert not ewma.at_least(5.0, 0.0)  # no samples: nothing to raise
    ewma.observe(0.2, 0.0)
    assert not ewma.at_least(5.0, 0.0) and ewma.value == 0.2  # still warming up
    ewma.observe(0.2, 1.0)
    assert not ewma.at_least(0.1, 1.0) and ewma.value == 0.2  # below the estimate: says nothing
    assert ewma.at_least(1.2, 2.0) and ewma.value == pytest.approx(0.3)  # a tenth of the way up, not at once
    assert ewma.at_least(1.2, 2.0) and ewma.value == pytest.approx(0.39)  # every lost race adds a tenth
    assert ewma.count == 2  # a bound is not a sample
    ewma.observe(1.2, 3.0)
    assert ewma.value == 1.2  # a slow answer still counts at once


async def test_a_bad_request_is_a_config_error_with_hedging_on(clock, script):
    from pi_builder_middleware import ConfigError

    mw = make(clock, script)
    with pytest.raises(ConfigError) as info:
        await mw.aexecute(script.call, {"timeout_s": 1})  # type: ignore[arg-type]
    assert info.value.field == "request"
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}


async def test_after_the_first_and_the_hedge_failed_the_loop_waits_and_runs_another_pass(clock, script):
    mw = make(clock, script, ids=("a", "b"))
    task = start(mw.aexecute(script.call, max_wait_s=60.0))
    await settle()
    script.fire()  # the hedge delay
    await settle()
    script.fail("b")
    await settle()
    script.fail("a")
    await settle()
    assert inflight(mw) == {"a": 0, "b": 0}
    waited = script.fire()  # the wait between passes (the same injected sleep)
    assert waited > 0
    await settle()
    assert script.started[-1] == "a"
    script.answer("a")
    assert await task == "a"
    assert inflight(mw) == {"a": 0, "b": 0}


async def test_an_answer_that_came_too_late_is_discarded_and_its_attempt_ended(clock, script):
    mw = make(clock, script)
    discarded: list[str] = []

    async def discard(value: str) -> None:
        discarded.append(value)

    task = start(mw.aexecute_open(script.call, discard=discard))
    await settle()
    script.fire()
    await settle()
    script.answer("a")
    script.answer("b")  # both answered before the race looked: one wins, the other is closed unused
    opened = await task
    assert discarded == ["b" if opened.provider_id == "a" else "a"]
    other = discarded[0]
    assert mw.monitor.candidate(other).inflight == 0 and mw.monitor.metrics(other)["calls"] == 0
    opened.succeeded()
    assert inflight(mw) == {"a": 0, "b": 0, "c": 0}
