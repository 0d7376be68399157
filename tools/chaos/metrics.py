"""Scoring one contender's run: caller results, the simulator's per-request log, the fault schedule.

Definitions (all times in seconds since the load started):

- A provider is **in trouble** while any of its fault windows with errors (``error_rate > 0``) or a
  slowdown (``latency_multiplier > 1``) is active; overlapping windows merge.
- A **wasted attempt** is a request that reached a provider while it was in trouble (counted from the
  simulator's log, by arrival time), whatever its outcome.
- **Time to detect** a window: from its start to the first attempt inside it after which the provider
  got no attempt for ``quiet_s`` seconds (or until the window ended); 0 when nothing was sent during
  the window; ``None`` when the contender never paused.
- **Time to recover**: from the window's end to the first successful attempt at that provider;
  ``None`` when there was none before the run ended (not measured for windows still open at the end).
- **Time back to share** (per window): how long after the window's end the provider carries its
  share of the traffic again. Its *share* is the fraction of all attempts (every provider, from the
  simulator's log) that reached it during the ``share_lookback_s`` seconds before the window started
  (cut at the load's start and at the end of the provider's previous trouble window). It *carries it
  again* from the first moment ``s >= end`` such that, among the attempts arriving in
  ``[s, s + bucket_s)``, at least ``share_fraction`` of that share went to the provider. ``0`` when the
  first second after the window already does. ``None`` when it never does while a full bucket still fits
  in the load; not measured when the lookback saw no attempts, the provider's share was 0 (the
  contender did not use it before) or the window ends less than ``bucket_s`` before the load does.
- **Traffic share** per provider: the provider's part of all attempts, and of the successful answers.
- Latency and TTFT percentiles cover successful requests, from the scheduled send time.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pi_builder_middleware.testing import FaultWindow, RequestRecord, SimOutcome

from .load import CallResult
from .scenario import ChaosScenario

__all__ = [
    "ContenderMetrics",
    "Window",
    "WindowMetrics",
    "baseline_share",
    "bucket_counts",
    "compute_metrics",
    "detection_time",
    "in_trouble",
    "percentile",
    "recovery_time",
    "share_return_time",
    "trouble_windows",
    "wasted_attempts",
]


@dataclass(frozen=True, slots=True)
class Window:
    """A stretch of time ``[start, end)`` in which a provider is in trouble."""

    start: float
    end: float

    def covers(self, t: float) -> bool:
        """Whether ``t`` falls inside."""
        return self.start <= t < self.end


@dataclass(frozen=True, slots=True)
class WindowMetrics:
    """How a contender handled one trouble window of one provider."""

    provider: str
    start: float
    end: float
    attempts: int
    detect_s: float | None
    recover_s: float | None
    recover_measured: bool
    baseline_share: float | None = None
    """The provider's share of attempts before the window (``None``: not measured)."""
    share_return_s: float | None = None
    share_measured: bool = False


@dataclass
class ContenderMetrics:
    """Everything measured for one contender in one scenario (JSON-safe through ``dataclasses.asdict``)."""

    contender: str
    requests: int
    successes: int
    success_rate: float
    attempts: int
    failed_attempts: int
    wasted_attempts: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    ttft_p99_ms: float | None
    cost: float
    detect_mean_s: float | None
    undetected: int
    recover_mean_s: float | None
    unrecovered: int
    share_return_mean_s: float | None = None
    share_unreturned: int = 0
    windows: list[WindowMetrics] = field(default_factory=list)
    bucket_s: float = 1.0
    attempts_by_provider: dict[str, list[int]] = field(default_factory=dict)
    served_by_provider: dict[str, list[int]] = field(default_factory=dict)
    latency_p50_by_bucket_ms: list[float | None] = field(default_factory=list)
    latency_p95_by_bucket_ms: list[float | None] = field(default_factory=list)
    success_rate_by_bucket: list[float | None] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _is_trouble(window: FaultWindow) -> bool:
    return (window.error_rate is not None and window.error_rate > 0) or window.latency_multiplier > 1


def trouble_windows(scenario: ChaosScenario) -> dict[str, list[Window]]:
    """Per provider, the merged windows in which it is in trouble (open windows end with the load)."""
    out: dict[str, list[Window]] = {}
    end_of_load = scenario.load.duration_s
    for provider in scenario.providers:
        spans = sorted(
            (w.start_s, end_of_load if w.end_s is None else w.end_s) for w in provider.faults if _is_trouble(w)
        )
        merged: list[Window] = []
        for start, end in spans:
            if merged and start <= merged[-1].end:
                merged[-1] = Window(merged[-1].start, max(merged[-1].end, end))
            else:
                merged.append(Window(start, end))
        out[provider.name] = merged
    return out


def in_trouble(windows: Sequence[Window], t: float) -> bool:
    """Whether any window covers ``t``."""
    return any(w.covers(t) for w in windows)


def wasted_attempts(attempts: Mapping[str, Sequence[RequestRecord]], troubles: Mapping[str, Sequence[Window]]) -> int:
    """Attempts that reached a provider while it was in trouble."""
    return sum(1 for name, records in attempts.items() for r in records if in_trouble(troubles.get(name, ()), r.at))


def detection_time(times: Sequence[float], window: Window, quiet_s: float) -> float | None:
    """Seconds from the window's start until the contender stopped sending (see the module docstring)."""
    inside = sorted(t for t in times if window.covers(t))
    if not inside:
        return 0.0
    for i, t in enumerate(inside):
        gap_end = inside[i + 1] if i + 1 < len(inside) else window.end
        if gap_end - t >= quiet_s:
            return t - window.start
    return None


def recovery_time(records: Sequence[RequestRecord], window: Window) -> float | None:
    """Seconds from the window's end to the first successful attempt at the provider after it."""
    after = [r.at for r in records if r.at >= window.end and r.outcome is SimOutcome.SUCCESS]
    return min(after) - window.end if after else None


def _count(
    times: Sequence[float], low: float, high: float, *, low_open: bool = False, high_closed: bool = False
) -> int:
    """How many of the sorted ``times`` fall between ``low`` and ``high`` (edges as the flags say)."""
    first = (bisect.bisect_right if low_open else bisect.bisect_left)(times, low)
    last = (bisect.bisect_right if high_closed else bisect.bisect_left)(times, high)
    return max(0, last - first)


def baseline_share(mine: Sequence[float], everyone: Sequence[float], start: float, end: float) -> float | None:
    """The provider's fraction of attempts arriving in ``[start, end)``; ``None`` when nobody got one."""
    total = _count(sorted(everyone), start, end)
    return _count(sorted(mine), start, end) / total if total else None


def share_return_time(
    mine: Sequence[float],
    everyone: Sequence[float],
    window: Window,
    *,
    share: float,
    fraction: float,
    bucket_s: float,
    load_end: float,
) -> float | None:
    """Seconds from the window's end until the provider carries ``fraction`` of ``share`` again.

    ``mine`` are the provider's attempt arrivals, ``everyone`` every provider's (see the module
    docstring). A bucket sliding from the window's end gains the provider's share only when one of its
    attempts enters at the right edge or another provider's leaves at the left, so only those buckets
    (and the one starting at the window's end) are checked: ``(b - bucket_s, b]`` and
    ``(a, a + bucket_s]``.
    """
    mine_sorted, all_sorted = sorted(mine), sorted(everyone)
    mine_set = set(mine_sorted)
    target = fraction * share
    # (low, high, half-open on the left) of each candidate bucket; the first one is [end, end + bucket).
    candidates = [(window.end, window.end + bucket_s, False)]
    candidates += [(t - bucket_s, t, True) for t in mine_sorted]
    candidates += [(t, t + bucket_s, True) for t in all_sorted if t not in mine_set]
    for start, high, is_open in sorted(candidates):
        if start < window.end or high > load_end:
            continue
        at_provider = _count(mine_sorted, start, high, low_open=is_open, high_closed=is_open)
        total = _count(all_sorted, start, high, low_open=is_open, high_closed=is_open)
        if at_provider and at_provider >= target * total:
            return start - window.end
    return None


def bucket_counts(times: Sequence[float], bucket_s: float, buckets: int) -> list[int]:
    """How many of ``times`` fall in each bucket ``[i*bucket_s, (i+1)*bucket_s)`` (later ones in the last)."""
    counts = [0] * buckets
    for t in times:
        counts[min(max(int(t // bucket_s), 0), buckets - 1)] += 1
    return counts


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 1)


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def compute_metrics(
    contender: str,
    scenario: ChaosScenario,
    results: Sequence[CallResult],
    attempts: Mapping[str, Sequence[RequestRecord]],
    *,
    wall_s: float = 0.0,
) -> ContenderMetrics:
    """Score one run; ``attempts`` is the simulator's request log per provider."""
    bench, load = scenario.bench, scenario.load
    troubles = trouble_windows(scenario)
    ok = [r for r in results if r.ok]
    latencies = [r.latency_s for r in ok]
    ttfts = [r.ttft_s for r in ok if r.stream and r.ttft_s is not None]
    cost = 0.0
    for r in ok:
        if r.provider is not None:
            cost += scenario.provider(r.provider).cost_of(r.input_tokens, r.output_tokens)

    everyone = sorted(r.at for records in attempts.values() for r in records)
    windows: list[WindowMetrics] = []
    for name, spans in troubles.items():
        records = attempts.get(name, ())
        times = [r.at for r in records]
        previous_end = 0.0
        for w in spans:
            measured = w.end < load.duration_s
            share = baseline_share(times, everyone, max(previous_end, w.start - bench.share_lookback_s), w.start)
            share_measured = bool(share) and w.end + bench.bucket_s <= load.duration_s
            back = None
            if share and share_measured:
                back = share_return_time(
                    times,
                    everyone,
                    w,
                    share=share,
                    fraction=bench.share_fraction,
                    bucket_s=bench.bucket_s,
                    load_end=load.duration_s,
                )
            windows.append(
                WindowMetrics(
                    provider=name,
                    start=w.start,
                    end=w.end,
                    attempts=sum(1 for t in times if w.covers(t)),
                    detect_s=detection_time(times, w, bench.quiet_s),
                    recover_s=recovery_time(records, w) if measured else None,
                    recover_measured=measured,
                    baseline_share=None if share is None else round(share, 3),
                    share_return_s=None if back is None else round(back, 3),
                    share_measured=share_measured,
                )
            )
            previous_end = w.end
    detected = [w.detect_s for w in windows if w.detect_s is not None]
    recovered = [w.recover_s for w in windows if w.recover_s is not None]
    returned = [w.share_return_s for w in windows if w.share_return_s is not None]

    buckets = max(1, math.ceil(load.duration_s / bench.bucket_s))
    by_bucket: list[list[CallResult]] = [[] for _ in range(buckets)]
    for r in results:
        by_bucket[min(int(r.scheduled_s // bench.bucket_s), buckets - 1)].append(r)
    errors: dict[str, int] = {}
    for r in results:
        if r.error is not None:
            errors[r.error] = errors.get(r.error, 0) + 1

    all_records = [r for records in attempts.values() for r in records]
    return ContenderMetrics(
        contender=contender,
        requests=len(results),
        successes=len(ok),
        success_rate=round(len(ok) / len(results), 4) if results else 0.0,
        attempts=len(all_records),
        failed_attempts=sum(1 for r in all_records if r.outcome is not SimOutcome.SUCCESS),
        wasted_attempts=wasted_attempts(attempts, troubles),
        latency_p50_ms=_ms(percentile(latencies, 50)),
        latency_p95_ms=_ms(percentile(latencies, 95)),
        latency_p99_ms=_ms(percentile(latencies, 99)),
        ttft_p50_ms=_ms(percentile(ttfts, 50)),
        ttft_p95_ms=_ms(percentile(ttfts, 95)),
        ttft_p99_ms=_ms(percentile(ttfts, 99)),
        cost=round(cost, 6),
        detect_mean_s=_mean(detected),
        undetected=len(windows) - len(detected),
        recover_mean_s=_mean(recovered),
        unrecovered=sum(1 for w in windows if w.recover_measured and w.recover_s is None),
        share_return_mean_s=_mean(returned),
        share_unreturned=sum(1 for w in windows if w.share_measured and w.share_return_s is None),
        windows=windows,
        bucket_s=bench.bucket_s,
        attempts_by_provider={
            name: bucket_counts([r.at for r in attempts.get(name, ())], bench.bucket_s, buckets)
            for name in scenario.provider_names
        },
        served_by_provider={
            name: bucket_counts([r.scheduled_s for r in ok if r.provider == name], bench.bucket_s, buckets)
            for name in scenario.provider_names
        },
        latency_p50_by_bucket_ms=[_ms(percentile([r.latency_s for r in b if r.ok], 50)) for b in by_bucket],
        latency_p95_by_bucket_ms=[_ms(percentile([r.latency_s for r in b if r.ok], 95)) for b in by_bucket],
        success_rate_by_bucket=[round(sum(r.ok for r in b) / len(b), 3) if b else None for b in by_bucket],
        errors=dict(sorted(errors.items())),
        wall_s=round(wall_s, 2),
    )
