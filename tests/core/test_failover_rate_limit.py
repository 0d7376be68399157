"""429s: a short cooldown that grows only while the provider keeps refusing, and a decayed 429 share."""

from __future__ import annotations

import heapq

import pytest
from pi_builder_middleware.plugins.policies import DefaultPolicy

from pi_builder_middleware import CircuitState, ErrorKind, EventKind, FailoverConfig, FailoverManager, ManualClock

LIMITED = ErrorKind.RATE_LIMITED


def manager(clock: ManualClock, **overrides: object) -> FailoverManager:
    fm = FailoverManager(FailoverConfig(**{"jitter": 0.0, **overrides}), policy=DefaultPolicy(), clock=clock)
    fm.add_provider("p")
    return fm


def cooldown(fm: FailoverManager) -> float:
    return float(fm.breaker_info("p")["cooldown_for_s"])


def streak(fm: FailoverManager) -> int:
    return int(fm.breaker_info("p")["rate_limit_streak"])


def test_defaults_and_presets() -> None:
    cfg = FailoverConfig()
    assert (cfg.rate_limit_base_cooldown_s, cfg.default_rate_limit_cooldown_s, cfg.rate_limit_streak_s) == (
        0.25,
        5.0,
        5.0,
    )
    for name in ("aggressive", "balanced", "conservative"):
        assert FailoverConfig.preset(name).rate_limit_base_cooldown_s == 0.25


def test_the_cooldown_doubles_with_each_429_of_a_streak_up_to_the_cap() -> None:
    clock = ManualClock(100.0)
    fm = manager(clock)
    seen = []
    for _ in range(8):
        fm.record("p", False, LIMITED)
        seen.append(cooldown(fm))
        clock.advance(seen[-1])  # called again as soon as the cooldown ends: refused again
        assert fm.acquire("p")
    assert seen == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert streak(fm) == 8
    events = [e for e in fm.events if e.kind is EventKind.RATE_LIMITED]
    assert events[2].detail == "cooling down 1.00 s (429 streak 3, no Retry-After)"


def test_429s_of_one_burst_do_not_grow_the_cooldown() -> None:
    """Ten calls sent together, all refused: one streak step, not 2**10."""
    clock = ManualClock(100.0)
    fm = manager(clock)
    for _ in range(10):
        fm.record("p", False, LIMITED)
        clock.advance(0.01)
    assert streak(fm) == 1
    assert cooldown(fm) == pytest.approx(0.25 - 0.01)  # the last one pushed the end a little


def test_a_success_ends_the_streak_and_lifts_the_backoff() -> None:
    clock = ManualClock(100.0)
    fm = manager(clock)
    for _ in range(4):
        fm.record("p", False, LIMITED)
        clock.advance(cooldown(fm))
    fm.record("p", False, LIMITED)
    assert (streak(fm), cooldown(fm)) == (5, 4.0)
    fm.record("p", True)  # a call sent earlier came back fine: the provider has room again
    assert (streak(fm), cooldown(fm)) == (0, 0.0)
    assert fm.unavailable_reason("p") is None
    fm.record("p", False, LIMITED)
    assert (streak(fm), cooldown(fm)) == (1, 0.25)


def test_a_quiet_spell_after_the_cooldown_starts_a_new_streak() -> None:
    clock = ManualClock(100.0)
    fm = manager(clock, rate_limit_streak_s=2.0)
    fm.record("p", False, LIMITED)
    clock.advance(0.25 + 2.0)  # within the streak window: grows
    fm.record("p", False, LIMITED)
    assert (streak(fm), cooldown(fm)) == (2, 0.5)
    clock.advance(0.5 + 2.0 + 0.001)  # past it: starts again
    assert streak(fm) == 0  # stats show no live streak
    fm.record("p", False, LIMITED)
    assert (streak(fm), cooldown(fm)) == (1, 0.25)


def test_retry_after_is_honoured_clamped_and_not_lifted_by_a_success() -> None:
    clock = ManualClock(100.0)
    fm = manager(clock, max_rate_limit_cooldown_s=60.0)
    fm.record("p", False, LIMITED, retry_after_s=7.5)
    assert cooldown(fm) == 7.5
    fm.record("p", True)
    assert cooldown(fm) == 7.5  # the provider said when; a straggler's success does not overrule it
    fm.record("p", False, LIMITED, retry_after_s=1000.0)
    assert cooldown(fm) == 60.0
    assert [e.detail for e in fm.events if e.kind is EventKind.RATE_LIMITED][-1] == (
        "cooling down 60.00 s (Retry-After)"
    )


def test_a_success_keeps_retry_after_but_drops_a_longer_backoff() -> None:
    clock = ManualClock(100.0)
    fm = manager(clock)
    fm.record("p", False, LIMITED, retry_after_s=1.0)
    for _ in range(3):
        clock.advance(cooldown(fm))
        fm.record("p", False, LIMITED)
    assert cooldown(fm) == 2.0  # streak 4 without Retry-After
    fm.record("p", True)
    assert cooldown(fm) == 0.0  # the Retry-After (1 s, long over) was all that had to be kept


def test_base_equal_to_the_cap_is_the_old_fixed_cooldown() -> None:
    clock = ManualClock(100.0)
    fm = manager(clock, rate_limit_base_cooldown_s=5.0, default_rate_limit_cooldown_s=5.0)
    for _ in range(3):
        fm.record("p", False, LIMITED)
        assert cooldown(fm) == 5.0
        clock.advance(5.0)


def test_a_base_above_the_cap_is_cut_to_the_cap() -> None:
    """Configs written before the base existed (a tiny default cooldown) keep their cooldown."""
    clock = ManualClock(100.0)
    fm = manager(clock, default_rate_limit_cooldown_s=0.001, max_rate_limit_cooldown_s=0.002)
    fm.record("p", False, LIMITED)
    assert cooldown(fm) == pytest.approx(0.001)


def test_a_429_never_moves_the_breaker() -> None:
    clock = ManualClock(100.0)
    fm = manager(clock, consecutive_failures=1)
    for _ in range(50):
        assert fm.record("p", False, LIMITED) is CircuitState.CLOSED
        clock.advance(cooldown(fm))
    assert fm.breaker_info("p")["trips"] == 0


# -- pressure ---------------------------------------------------------------------------------------


def test_pressure_is_the_decayed_share_of_429s_and_fades_without_traffic() -> None:
    clock = ManualClock(100.0)
    fm = manager(clock, rate_limit_pressure_half_life_s=10.0)
    assert fm.rate_limit_pressure("p") == 0.0
    assert fm.rate_limit_pressure("unknown") == 0.0
    fm.record("p", False, LIMITED)
    assert fm.rate_limit_pressure("p") == 0.5  # one 429 and the phantom accepted call
    fm.reset("p")
    for i in range(200):  # steady traffic, every fifth call refused
        fm.record("p", i % 5 != 4, None if i % 5 != 4 else LIMITED)
        clock.advance(0.1)
    busy = fm.rate_limit_pressure("p")
    assert 0.17 < busy < 0.23
    assert fm.breaker_info("p")["rate_limit_pressure"] == busy
    clock.advance(10.0)
    assert 0.15 < fm.rate_limit_pressure("p") < busy  # the evidence halves; the share barely moves yet
    clock.advance(100.0)
    assert fm.rate_limit_pressure("p") < 0.05  # ten half-lives without traffic: back near 0
    assert fm.rate_limit_pressure("p", now=clock() - 110.0) == pytest.approx(busy, rel=1e-6)
    fm.record("p", True)
    assert fm.rate_limit_pressure("p") < 0.05  # new traffic starts from the faded value


def test_one_429_fades_within_a_few_half_lives() -> None:
    clock = ManualClock(100.0)
    fm = manager(clock, rate_limit_pressure_half_life_s=10.0)
    fm.record("p", False, LIMITED)
    readings = []
    for _ in range(4):
        clock.advance(10.0)
        readings.append(fm.rate_limit_pressure("p"))
    assert readings == sorted(readings, reverse=True)
    assert readings[0] == pytest.approx(1 / 3) and readings[-1] < 0.06


def test_probes_do_not_count_as_traffic() -> None:
    clock = ManualClock(100.0)
    fm = manager(clock)
    fm.record("p", False, LIMITED)
    for _ in range(20):
        fm.record("p", True, probe=True)
    assert fm.rate_limit_pressure("p") == 0.5


# -- a provider that limits concurrency ------------------------------------------------------------


def simulate_concurrency_limit(
    limit: int, latency_s: float, arrival_every_s: float, duration_s: float, burst: int = 1
) -> dict[str, float]:
    """Requests arrive (``burst`` at a time, sent together); each goes to "p" unless it is unavailable.

    "p" takes ``limit`` calls at once and answers the others 429 at once, without Retry-After.
    """
    clock = ManualClock(0.0)
    fm = FailoverManager(FailoverConfig(), policy=DefaultPolicy(), clock=clock)
    fm.add_provider("p")
    completions: list[float] = []
    sent = refused = elsewhere = 0
    longest = busy_time = idle_spell = longest_idle = 0.0
    t = 0.0
    while t < duration_s:
        while completions and completions[0] <= t:
            clock.set(heapq.heappop(completions))
            fm.record("p", True)
        clock.set(t)
        if len(completions) < limit and fm.unavailable_reason("p") is not None:  # room, yet cooled down
            idle_spell += arrival_every_s
            longest_idle = max(longest_idle, idle_spell)
        else:
            idle_spell = 0.0
        taken = sum(fm.acquire("p") for _ in range(burst))  # sent together, before any answer is back
        sent += taken
        elsewhere += burst - taken
        for _ in range(taken):
            if len(completions) < limit:
                heapq.heappush(completions, t + latency_s)
            else:
                refused += 1
                fm.record("p", False, LIMITED)
                longest = max(longest, cooldown_of(fm))
        busy_time += arrival_every_s * (len(completions) == limit)
        t += arrival_every_s
    return {
        "sent": sent,
        "refused": refused,
        "elsewhere": elsewhere,
        "longest_cooldown": longest,
        "longest_idle_with_room": longest_idle,
        "full_share": busy_time / duration_s,
        "pressure": fm.rate_limit_pressure("p"),
    }


def cooldown_of(fm: FailoverManager) -> float:
    return float(fm.breaker_info("p")["cooldown_for_s"])


@pytest.mark.parametrize(
    ("latency_s", "burst", "longest"), [(0.2, 1, 0.25), (1.0, 1, 1.0), (1.0, 5, 1.0), (5.0, 1, 4.0), (20.0, 5, 5.0)]
)
def test_a_concurrency_limited_provider_is_never_cooled_for_long(latency_s: float, burst: int, longest: float) -> None:
    """4 slots, far more demand: its slots stay full, and it is never cooled down while one is free.

    While all four calls are out, further 429s may stretch the cooldown (up to the cap when calls
    take 20 s), but the first call to come back ends it: no free slot waits on a cooldown.
    """
    stats = simulate_concurrency_limit(
        limit=4, latency_s=latency_s, arrival_every_s=0.05, duration_s=120.0, burst=burst
    )
    assert stats["refused"] > 0
    assert stats["longest_idle_with_room"] == 0.0, stats
    assert stats["full_share"] > 0.99, stats
    assert stats["longest_cooldown"] <= longest + 1e-9, stats
    assert 0.0 < stats["pressure"] < 1.0  # what routing reads to send it less


def test_four_of_five_refused_in_each_burst_keeps_the_cooldown_short() -> None:
    """One slot, bursts of five calls: four 429s each time, yet the cooldown stays at the base."""
    stats = simulate_concurrency_limit(limit=1, latency_s=0.5, arrival_every_s=1.0, duration_s=60.0, burst=5)
    assert stats["refused"] >= 4 * 50
    assert stats["longest_cooldown"] <= 0.25
    assert stats["longest_idle_with_room"] == 0.0
    assert stats["sent"] - stats["refused"] >= 59  # one call per burst served, every burst
