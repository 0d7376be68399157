"""The adaptive hedge delay against a heavy-tailed first provider, on a manual clock.

The test plays the provider: each call gets a latency drawn from a lognormal body (median 90 ms,
spread 0.25) with every twentieth call ten times slower (a 5 % tail), and the clock moves by exactly
that much; a hedge on ``b`` answers 200 ms after it starts.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field

import pytest

from pi_builder_middleware import FailoverConfig, HedgePolicy, ManualClock, Middleware, Outcome, Provider

BODY_MEDIAN_S = 0.09
SPREAD = 0.25
TAIL_EVERY = 20  # every 20th call is slow: a 5 % tail
TAIL_MULTIPLIER = 10.0
HEDGE_ANSWERS_AFTER_S = 0.2


@dataclass
class Tally:
    calls: int = 0
    slow: int = 0
    slow_hedged: int = 0
    normal_hedged: int = 0
    passed_over: int = 0  # calls routed to b first (a hedge's loser raises a's latency: suspect for a while)
    passed_over_by_call: list[bool] = field(default_factory=list)  # per call, whether a was passed over
    delays: list[float] = field(default_factory=list)


class ScriptedCalls:
    """Calls and hedge timers that end when the test says so."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.timers: list[asyncio.Future[None]] = []
        self.delays: list[float] = []
        self.calls: dict[str, asyncio.Future[str]] = {}

    async def async_sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.timers.append(future)
        self.delays.append(seconds)
        await future

    async def call(self, provider: Provider) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.calls[provider.id] = future
        return await future


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def middleware(clock: ManualClock, sim: ScriptedCalls, policy: HedgePolicy, strategy: str) -> Middleware:
    return Middleware(
        [Provider(id=pid) for pid in ("a", "b", "c")],
        strategy=strategy,
        failover=FailoverConfig.preset("balanced", jitter=0.0),
        clock=clock,
        async_sleep=sim.async_sleep,
        load_entrypoints=False,
        hedge=policy,
    )


async def one_call(mw: Middleware, sim: ScriptedCalls, latency: float, tally: Tally, slow: bool) -> None:
    """One call whose first provider takes ``latency``; the hedge timer fires if that is later than the delay."""
    sim.calls.clear()
    timers = len(sim.timers)
    task = asyncio.ensure_future(mw.aexecute(sim.call))
    await settle()
    if "a" not in sim.calls:
        tally.passed_over += 1
        sim.clock.advance(HEDGE_ANSWERS_AFTER_S)
        for future in sim.calls.values():
            future.set_result("other")
        await task
        return
    started = False  # whether a hedge started (the delay passed and the budget allowed it)
    first = "a"
    if len(sim.timers) > timers:  # the race armed its hedge timer
        delay = sim.delays[-1]
        tally.delays.append(delay)
        if latency > delay:
            sim.clock.advance(delay)
            sim.timers[-1].set_result(None)
            await settle()
            started = "b" in sim.calls
            if started and latency > delay + HEDGE_ANSWERS_AFTER_S:
                first = "b"
                sim.clock.advance(HEDGE_ANSWERS_AFTER_S)
            else:
                sim.clock.advance(latency - delay)
        else:
            sim.clock.advance(latency)
    else:
        sim.clock.advance(latency)
    sim.calls[first].set_result(first)
    assert await task == first
    tally.calls += 1
    tally.slow += slow
    tally.slow_hedged += slow and started
    tally.normal_hedged += started and not slow


async def heavy_tail(policy: HedgePolicy, calls: int = 1200, strategy: str = "failover") -> tuple[Middleware, Tally]:
    clock = ManualClock()
    sim = ScriptedCalls(clock)
    mw = middleware(clock, sim, policy, strategy)
    rng = random.Random(13)
    tally = Tally()
    for i in range(calls):
        slow = i % TAIL_EVERY == TAIL_EVERY - 1
        latency = BODY_MEDIAN_S * math.exp(SPREAD * rng.gauss(0.0, 1.0)) * (TAIL_MULTIPLIER if slow else 1.0)
        passed = tally.passed_over
        await one_call(mw, sim, latency, tally, slow)
        tally.passed_over_by_call.append(tally.passed_over > passed)
    return mw, tally


async def test_with_a_five_percent_tail_every_slow_call_is_hedged_and_few_normal_ones_within_the_budget():
    mw, tally = await heavy_tail(HedgePolicy())  # the defaults: adaptive delay, one hedge, budget ratio 0.1
    stats = mw.stats()["hedging"]
    assert isinstance(stats, dict)
    # every slow call hedged but the first: a provider is hedged once it has shown a tail a hedge can cut
    assert tally.slow >= 50 and tally.slow_hedged == tally.slow - 1
    assert stats["budget"]["throttled_hedges"] == 0  # type: ignore[index]
    assert tally.normal_hedged <= 0.03 * (tally.calls - tally.slow)  # about 2 % (1 - quantile) of the body
    assert stats["started"] <= 0.08 * tally.calls  # extra attempts: tail + 2 %, under the budget's 10 % refill
    # Once warmed up, the delay sits above the body's p95 and below the fastest slow call, every time.
    body_p95 = BODY_MEDIAN_S * math.exp(SPREAD * 1.645)
    tail_min = BODY_MEDIAN_S * TAIL_MULTIPLIER * math.exp(-SPREAD * 3.0)
    settled = tally.delays[50:]
    assert settled and all(body_p95 < d < tail_min for d in settled)


async def test_latency_optimal_keeps_sending_a_hedged_heavy_tailed_provider_its_traffic():
    # a's mean (~135 ms) beats b's and c's 200 ms, and hedges cut its tail, so latency-optimal should go on
    # sending a most calls. A race a lost says "at least that slow", not "this slow now": were the loser's
    # elapsed time (a hedge delay + 200 ms) taken as a slow sample, a would look slower than b after every
    # slow call and get under a fifth of the calls (measured: 97 of 900 after the first 300).
    _, tally = await heavy_tail(HedgePolicy(), strategy="latency-optimal")
    late = tally.passed_over_by_call[300:]
    assert tally.slow >= 40 and tally.slow_hedged >= tally.slow - 2  # hedges still cut the tail
    # After warming up a takes ~90 % of first attempts (power of two choices gives b and c the rest when
    # they are drawn together); measured 798 of 900.
    assert sum(late) <= 0.2 * len(late)


async def test_a_quantile_that_hedges_as_much_as_the_budget_refills_stretches_the_delay_instead_of_refusing():
    # At p90 a tenth of the normal calls plus the tail would hedge: more than the budget refills. As the
    # budget falls the delay moves toward the cap (3x the median), so the slow calls keep their hedge.
    mw, tally = await heavy_tail(HedgePolicy(quantile=0.9))
    stats = mw.stats()["hedging"]
    assert isinstance(stats, dict)
    assert stats["budget"]["throttled_hedges"] == 0  # type: ignore[index]
    assert tally.slow_hedged == tally.slow - 1  # all but the first, the sign of the tail
    settled = tally.delays[50:]
    assert min(settled) < 0.13 and max(settled) > 0.2  # stretched while the budget was low ...
    assert max(settled) < BODY_MEDIAN_S * TAIL_MULTIPLIER * math.exp(-SPREAD * 3.0)  # ... never into the tail


def test_the_delay_moves_toward_the_cap_as_the_budget_falls_from_three_quarters_to_half(clock: ManualClock):
    mw = Middleware([Provider(id="a"), Provider(id="b")], clock=clock, load_entrypoints=False, hedge=HedgePolicy())
    for i in range(20):
        mw.record(Outcome("a", True, 0.1 + 0.001 * i))  # median 0.11: cap 0.33; p98 0.119
    mw.record(Outcome("a", True, 2.0))  # a tail a hedge can cut (left out of the quantile)
    hedger, budget = mw.hedger, mw.retry_budget
    assert hedger is not None and budget is not None
    delays = []
    for tokens in (10.0, 7.5, 6.25, 5.25, 5.0, 2.0):
        budget.tokens = tokens
        delays.append(hedger.delay("a", stream=False))
    stretched = [0.119, 0.119, (0.119 + 0.33) / 2, 0.119 + (0.33 - 0.119) * 0.9]
    assert delays == pytest.approx([*stretched, 0.119, 0.119])  # at or below half no hedge starts anyway


def test_a_few_slow_answers_that_were_not_hedged_stay_out_of_the_delay(clock: ManualClock):
    mw = Middleware([Provider(id="a"), Provider(id="b")], clock=clock, load_entrypoints=False, hedge=HedgePolicy())
    for i in range(30):
        mw.record(Outcome("a", True, 0.08 + 0.001 * i))  # body: 80 .. 109 ms
    for _ in range(2):  # two slow calls that got in unhedged (e.g. before the delay had data)
        mw.record(Outcome("a", True, 1.0))
    assert mw.hedger is not None
    # The quantile of the body (nearest rank 0.98 of 30: its slowest), not the slow answers or the cap (3x median).
    assert mw.hedger.delay("a", stream=False) == pytest.approx(0.109)


def test_the_first_calls_hedge_after_five_answers_and_one_slow_answer_among_them_is_left_out(clock: ManualClock):
    mw = Middleware([Provider(id="a"), Provider(id="b")], clock=clock, load_entrypoints=False, hedge=HedgePolicy())
    assert mw.hedger is not None
    for latency in (0.1, 0.1, 0.11, 0.12):
        mw.record(Outcome("a", True, latency))
    assert mw.hedger.delay("a", stream=False) is None  # four answers: too few to judge by
    mw.record(Outcome("a", True, 2.0))  # one slow call among the first five: not the body
    assert mw.hedger.delay("a", stream=False) == pytest.approx(0.12)
    for latency in (0.1, 0.1, 0.11, 0.12, 2.0, 2.0):  # two of six: too many to leave out
        mw.record(Outcome("b", True, latency))
    assert mw.hedger.delay("b", stream=False) == pytest.approx(0.36)  # at most three times the median


def test_streams_hedge_at_the_p90_of_their_time_to_first_chunk(clock: ManualClock):
    # A stream's hedge races only until the first chunk, and a slow stream also pays the hedge's whole
    # token stream after it: streams hedge earlier (p90 of the first chunk) than whole calls (p98).
    mw = Middleware([Provider(id="a"), Provider(id="b")], clock=clock, load_entrypoints=False, hedge=HedgePolicy())
    for i in range(50):
        mw.record(Outcome("a", True, 0.2 + 0.002 * i, ttft_s=0.05 + 0.001 * i))  # first chunk 50 .. 99 ms
        mw.record(Outcome("a", True, 0.1 + 0.001 * i))  # whole calls 100 .. 149 ms
    mw.record(Outcome("a", True, 2.0))  # a tail a hedge can cut (left out of the quantile)
    assert mw.hedger is not None
    assert mw.hedger.delay("a", stream=True) == pytest.approx(0.094)  # nearest rank 45 of 50
    assert mw.hedger.delay("a", stream=False) == pytest.approx(0.148)  # nearest rank 49 of 50
    strict = Middleware(
        [Provider(id="a")], clock=clock, load_entrypoints=False, hedge=HedgePolicy(stream_quantile=0.98)
    )
    for i in range(50):
        strict.record(Outcome("a", True, 0.2, ttft_s=0.05 + 0.001 * i))
    strict.record(Outcome("a", True, 2.0, ttft_s=1.0))
    assert strict.hedger is not None and strict.hedger.delay("a", stream=True) == pytest.approx(0.098)


def test_a_provider_without_a_tail_is_not_hedged_and_is_again_once_it_shows_one(clock: ManualClock):
    # Calls all near the median end soon after any delay: a hedge cannot win, it only adds an attempt.
    mw = Middleware([Provider(id="a"), Provider(id="b")], clock=clock, load_entrypoints=False, hedge=HedgePolicy())
    assert mw.hedger is not None
    for i in range(100):
        mw.record(Outcome("a", True, 0.1 + 0.0005 * i))  # 100 .. 150 ms: no call above three times the median
    assert mw.hedger.delay("a", stream=False) is None
    mw.record(Outcome("a", True, 1.2))  # ten times slower: a tail a hedge can cut
    assert mw.hedger.delay("a", stream=False) == pytest.approx(0.1485)  # the body's p98 (nearest rank 99 of 101)
    for _ in range(128 + 500):  # the slow answer leaves the kept samples, then the memory of it fades
        mw.record(Outcome("a", True, 0.12))
    assert mw.hedger.delay("a", stream=False) is None
    mw.hedger.hedge_won("a", stream=False)  # a hedge that answered first is a sign of the tail too
    assert mw.hedger.delay("a", stream=False) == pytest.approx(0.12)
