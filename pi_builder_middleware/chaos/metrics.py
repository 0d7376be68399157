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
- Latency and TTFT percentiles cover successful requests, from the scheduled send time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pi_builder_middleware.sim import FaultWindow, Outcome, RequestRecord

from .load import CallResult
from .scenario import ChaosScenario

__all__ = [
    "ContenderMetrics",
    "Window",
    "WindowMetrics",
    "bucket_counts",
    "compute_metrics",
    "detection_time",
    "in_trouble",
    "percentile",
    "recovery_time",
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
        spans = sorted((w.start_s, end_of_load if w.end_s is None else w.end_s)
                       for w in provider.faults if _is_trouble(w))
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
    after = [r.at for r in records if r.at >= window.end and r.outcome is Outcome.SUCCESS]
    return min(after) - window.end if after else None


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

    windows: list[WindowMetrics] = []
    for name, spans in troubles.items():
        records = attempts.get(name, ())
        times = [r.at for r in records]
        for w in spans:
            measured = w.end < load.duration_s
            windows.append(WindowMetrics(
                provider=name, start=w.start, end=w.end, attempts=sum(1 for t in times if w.covers(t)),
                detect_s=detection_time(times, w, bench.quiet_s),
                recover_s=recovery_time(records, w) if measured else None, recover_measured=measured))
    detected = [w.detect_s for w in windows if w.detect_s is not None]
    recovered = [w.recover_s for w in windows if w.recover_s is not None]

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
        failed_attempts=sum(1 for r in all_records if r.outcome is not Outcome.SUCCESS),
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
        windows=windows,
        bucket_s=bench.bucket_s,
        attempts_by_provider={name: bucket_counts([r.at for r in attempts.get(name, ())], bench.bucket_s, buckets)
                              for name in scenario.provider_names},
        served_by_provider={name: bucket_counts([r.scheduled_s for r in ok if r.provider == name], bench.bucket_s,
                                                buckets) for name in scenario.provider_names},
        latency_p50_by_bucket_ms=[_ms(percentile([r.latency_s for r in b if r.ok], 50)) for b in by_bucket],
        latency_p95_by_bucket_ms=[_ms(percentile([r.latency_s for r in b if r.ok], 95)) for b in by_bucket],
        success_rate_by_bucket=[round(sum(r.ok for r in b) / len(b), 3) if b else None for b in by_bucket],
        errors=dict(sorted(errors.items())),
        wall_s=round(wall_s, 2),
    )
