"""Metric computation on hand-made request logs: wasted attempts, detection, recovery, percentiles, cost."""

from __future__ import annotations

import pytest
from pi_builder_middleware.testing import RequestRecord, SimOutcome
from pi_builder_middleware.tools.chaos import CallResult, Window, compute_metrics, load_chaos_scenario, trouble_windows
from pi_builder_middleware.tools.chaos.metrics import (
    baseline_share,
    bucket_counts,
    detection_time,
    percentile,
    recovery_time,
    share_return_time,
    wasted_attempts,
)

OK, DOWN = SimOutcome.SUCCESS, SimOutcome.SERVICE_UNAVAILABLE


def rec(at: float, outcome: SimOutcome = OK, n: int = 0) -> RequestRecord:
    return RequestRecord(n=n, at=at, outcome=outcome, stream=False, model="sim-model")


def scenario(**bench):
    return load_chaos_scenario(
        {
            "name": "hand-made",
            "load": {"duration_s": 10, "rate_rps": 1},
            "bench": {"quiet_s": 1.0, "bucket_s": 2.0, **bench},
            "providers": [
                {
                    "name": "a",
                    "cost_per_1k_input": 1.0,
                    "cost_per_1k_output": 2.0,
                    "faults": [
                        {"start_s": 2, "end_s": 4, "error_rate": 1.0},
                        {"start_s": 3, "end_s": 5, "error_rate": 0.5},  # overlaps: merges into 2-5
                        {"start_s": 7, "end_s": 8, "latency_multiplier": 3},  # slow counts as trouble
                        {"start_s": 8.5, "end_s": 9, "error_rate": 0.0},
                    ],
                },  # no errors, no slowdown: fine
                {"name": "b", "cost_per_1k_input": 0.5, "cost_per_1k_output": 0.5},
            ],
        }
    )


def test_trouble_windows_merge_overlaps_and_ignore_harmless_windows():
    assert trouble_windows(scenario()) == {"a": [Window(2, 5), Window(7, 8)], "b": []}


def test_open_window_ends_with_the_load():
    s = load_chaos_scenario(
        {
            "name": "x",
            "load": {"duration_s": 10, "rate_rps": 1},
            "providers": [{"name": "a", "faults": [{"start_s": 6, "error_rate": 1}]}],
        }
    )
    assert trouble_windows(s) == {"a": [Window(6, 10)]}


def test_wasted_attempts_count_arrivals_inside_windows_whatever_the_outcome():
    troubles = {"a": [Window(2, 5)], "b": []}
    attempts = {
        "a": [rec(1.9), rec(2.0, DOWN), rec(3.0, DOWN), rec(4.99, OK), rec(5.0)],  # 2.0, 3.0, 4.99 are inside
        "b": [rec(3.0), rec(4.0)],  # b never in trouble
    }
    assert wasted_attempts(attempts, troubles) == 3


def test_detection_time_is_the_last_attempt_before_a_quiet_gap():
    w = Window(10, 20)
    assert detection_time([10.1, 10.3, 10.5, 15.0, 15.2], w, quiet_s=2.0) == pytest.approx(0.5)


def test_detection_time_zero_when_nothing_was_sent_during_the_window():
    assert detection_time([9.0, 20.5], Window(10, 20), quiet_s=2.0) == 0.0


def test_detection_time_none_when_the_contender_never_paused():
    times = [10 + 0.5 * i for i in range(20)]  # every 0.5 s up to 19.5: last gap to the end is 0.5 s
    assert detection_time(times, Window(10, 20), quiet_s=2.0) is None


def test_detection_counts_a_gap_that_runs_to_the_windows_end():
    times = [10 + 0.5 * i for i in range(16)]  # every 0.5 s until 17.5, then nothing until the end at 20
    assert detection_time(times, Window(10, 20), quiet_s=2.0) == pytest.approx(7.5)


def test_recovery_time_is_the_first_success_after_the_window():
    records = [rec(19.0, DOWN), rec(20.5, DOWN), rec(21.25, OK), rec(22.0, OK)]
    assert recovery_time(records, Window(10, 20)) == pytest.approx(1.25)
    assert recovery_time([rec(21.0, DOWN)], Window(10, 20)) is None


def test_percentile_interpolates_and_is_monotonic():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile([5.0], 99) == 5.0
    assert percentile([], 50) is None
    assert percentile(values, 50) <= percentile(values, 95) <= percentile(values, 99)  # type: ignore[operator]


def test_bucket_counts_clamp_late_arrivals_into_the_last_bucket():
    assert bucket_counts([0.0, 0.9, 1.0, 5.5, 99.0], 1.0, 3) == [2, 1, 2]


def result(
    index: int,
    at: float,
    ok: bool,
    provider: str | None = None,
    latency: float = 0.1,
    stream: bool = False,
    ttft: float | None = None,
) -> CallResult:
    return CallResult(
        index=index,
        scheduled_s=at,
        started_s=at,
        ended_s=at + latency,
        stream=stream,
        ok=ok,
        provider=provider,
        ttft_s=ttft,
        input_tokens=100 if ok else 0,
        output_tokens=50 if ok else 0,
        error=None if ok else "ServiceUnavailableError",
    )


def test_compute_metrics_on_a_hand_made_run():
    s = scenario()
    results = [
        result(0, 0.5, True, "a", 0.1),
        result(1, 2.5, True, "b", 0.3),  # a failed first, b answered
        result(2, 3.0, False),  # both failed
        result(3, 6.0, True, "a", 0.2, stream=True, ttft=0.05),
    ]
    attempts = {
        "a": [rec(0.5), rec(2.5, DOWN), rec(3.0, DOWN), rec(6.0), rec(7.5)],
        "b": [rec(2.6), rec(3.1, DOWN)],
    }
    m = compute_metrics("hand", s, results, attempts)
    assert (m.requests, m.successes, m.success_rate) == (4, 3, 0.75)
    assert (m.attempts, m.failed_attempts) == (7, 3)
    assert m.wasted_attempts == 3  # a at 2.5 and 3.0 (window 2-5), a at 7.5 (slow window 7-8)
    assert m.cost == pytest.approx(2 * (0.1 + 0.1) + (0.05 + 0.025))  # a twice, b once
    assert m.latency_p50_ms == pytest.approx(200.0)
    assert m.ttft_p50_ms == pytest.approx(50.0)
    assert m.errors == {"ServiceUnavailableError": 1}
    first, second = m.windows
    assert (first.provider, first.start, first.end, first.attempts) == ("a", 2, 5, 2)
    assert first.detect_s == pytest.approx(1.0)  # last attempt at 3.0, then quiet until the end at 5
    assert first.recover_s == pytest.approx(1.0)  # first success after 5 is at 6.0
    assert second.attempts == 1 and second.detect_s is None  # 7.5, then only 0.5 s of quiet before 8
    assert second.recover_s is None and second.recover_measured  # nothing reached a after 8
    assert (m.detect_mean_s, m.undetected, m.recover_mean_s, m.unrecovered) == (1.0, 1, 1.0, 1)
    assert m.attempts_by_provider == {"a": [1, 2, 0, 2, 0], "b": [0, 2, 0, 0, 0]}
    assert m.served_by_provider == {"a": [1, 0, 0, 1, 0], "b": [0, 1, 0, 0, 0]}
    assert m.success_rate_by_bucket == [1.0, 0.5, None, 1.0, None]


def test_share_return_is_zero_when_the_first_bucket_after_the_window_has_the_share():
    w = Window(4, 6)
    everyone = [4.5, 6.1, 6.3, 6.5, 6.7]
    mine = [6.1, 6.5]  # 2 of 4 in [6, 7): 50 % against a 50 % share
    assert share_return_time(mine, everyone, w, share=0.5, fraction=0.8, bucket_s=1.0, load_end=10) == 0.0


def test_share_return_waits_for_a_bucket_with_enough_of_the_share():
    w = Window(4, 6)
    others = [6.0 + 0.1 * i for i in range(20)]  # 6.0 .. 7.9, ten a second elsewhere
    mine = [7.5, 7.6, 7.7, 7.8, 8.0, 8.1, 8.2]
    everyone = sorted(others + mine)
    # Needs 80 % of a 50 % share = 40 %: [7.0, 8.0) has 4 of 14 (29 %); the first start that works
    # drops the others' 7.0..7.3 and keeps 7.5..8.2: [7.3+, 8.3) holds mine 7 of 13 (54 %).
    back = share_return_time(mine, everyone, w, share=0.5, fraction=0.8, bucket_s=1.0, load_end=10)
    assert back is not None and 1.0 < back <= 1.3 + 1e-6
    assert back == pytest.approx(_brute_force(mine, everyone, w, 0.4, 1.0, 10), abs=0.002)


def _brute_force(
    mine: list[float], everyone: list[float], w: Window, target: float, bucket: float, end: float
) -> float | None:
    """The first bucket start on a 1 ms grid whose share reaches ``target`` (a slow reference)."""
    s = w.end
    while s + bucket <= end:
        total = sum(1 for t in everyone if s <= t < s + bucket)
        at = sum(1 for t in mine if s <= t < s + bucket)
        if at and at >= target * total:
            return s - w.end
        s += 0.001
    return None


@pytest.mark.parametrize("seed", range(5))
def test_share_return_matches_a_brute_force_scan(seed: int):
    import random

    rng = random.Random(seed)
    w = Window(2, 4)
    everyone = sorted(rng.uniform(0, 10) for _ in range(120))
    mine = [t for t in everyone if (t < 2 or t > 4 + rng.uniform(0, 3)) and rng.random() < 0.5]
    back = share_return_time(mine, everyone, w, share=0.5, fraction=0.8, bucket_s=1.0, load_end=10)
    expected = _brute_force(mine, everyone, w, 0.4, 1.0, 10)
    assert (back is None) is (expected is None)
    if back is not None:
        assert back == pytest.approx(expected, abs=0.002)


def test_share_return_none_when_the_provider_never_gets_its_share_back():
    w = Window(2, 4)
    everyone = [4.0 + 0.1 * i for i in range(50)]
    mine = [5.0]  # one attempt among ten a second: 10 % against a 60 % share
    assert share_return_time(mine, everyone, w, share=0.6, fraction=0.8, bucket_s=1.0, load_end=9) is None


def test_baseline_share_counts_every_providers_attempts():
    assert baseline_share([1.0, 1.5], [0.5, 1.0, 1.2, 1.5], 1.0, 2.0) == pytest.approx(2 / 3)
    assert baseline_share([], [5.0], 1.0, 2.0) is None


def test_compute_metrics_measures_the_return_to_share_per_window():
    s = load_chaos_scenario(
        {
            "name": "ret",
            "load": {"duration_s": 10, "rate_rps": 1},
            "bench": {"bucket_s": 1.0, "share_lookback_s": 2.0},
            "providers": [
                {
                    "name": "a",
                    "faults": [
                        {"start_s": 4, "end_s": 6, "error_rate": 1.0},
                        {"start_s": 9.5, "end_s": 9.8, "error_rate": 1.0},
                    ],
                },
                {"name": "b"},
                {"name": "c"},
            ],
        }
    )
    ticks = [0.05 + 0.1 * i for i in range(100)]  # one attempt every 0.1 s
    # Before 4: a gets every other attempt (50 %); 4-7: none; from 7: every other again.
    a_times = [t for i, t in enumerate(ticks) if i % 2 == 0 and (t < 4 or t >= 7)]
    b_times = [t for t in ticks if t not in a_times]
    attempts = {"a": [rec(t) for t in a_times], "b": [rec(t) for t in b_times], "c": []}
    m = compute_metrics("ret", s, [], attempts)
    first, last = m.windows
    assert first.baseline_share == pytest.approx(0.5)
    assert first.share_measured and first.share_return_s is not None
    # Back at 7.05 s with 50 %; the bucket (6.65, 7.65] already holds 4 of 10 = 80 % of 50 %.
    assert first.share_return_s == pytest.approx(0.65, abs=0.002)
    assert not last.share_measured and last.share_return_s is None  # ends less than a bucket before the load
    assert (m.share_return_mean_s, m.share_unreturned) == (first.share_return_s, 0)


def test_a_provider_the_contender_never_used_is_not_expected_back():
    s = load_chaos_scenario(
        {
            "name": "unused",
            "load": {"duration_s": 10, "rate_rps": 1},
            "providers": [{"name": "a", "faults": [{"start_s": 4, "end_s": 6, "error_rate": 1.0}]}, {"name": "b"}],
        }
    )
    m = compute_metrics("unused", s, [], {"a": [], "b": [rec(1.0), rec(3.0), rec(7.0)]})
    (window,) = m.windows
    assert window.baseline_share == 0.0 and not window.share_measured and window.share_return_s is None
    assert (m.share_return_mean_s, m.share_unreturned) == (None, 0)
