"""HealthMonitor: per-provider metrics over a sliding time window, health status and alerts.

``record`` is O(1) amortised: it appends one sample and keeps running totals (:mod:`._window`); samples
older than the window (or beyond ``max_samples``) are subtracted as they fall out, and a total an outlier
made up most of is then recounted exactly. Percentiles are computed only when a snapshot is read.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypedDict

from ._clock import Clock, monotonic_clock
from ._guard import CallbackFailures
from ._stats import percentile
from ._validation import in_range, is_number, require
from ._window import FAIL, OK, RATE, Sample, Window
from .config import MonitorConfig, RoutingConfig
from .enums import AlertKind, CircuitState, ErrorKind, HealthStatus
from .errors import ConfigError, UnknownProviderError
from .interfaces import Candidate, Verdict
from .models import MAX_COST, Alert, HealthChange, Outcome, Provider

_OTHER = Verdict.OTHER
_new_sample = tuple.__new__

__all__ = ["HealthMonitor", "TrendMetric", "WindowMetrics"]

TrendMetric = Literal["calls", "error_rate", "availability", "latency_avg_ms", "latency_p95_ms", "cost"]
log = logging.getLogger("pi_builder_middleware.monitor")

_TREND_METRICS: tuple[str, ...] = ("calls", "error_rate", "availability", "latency_avg_ms", "latency_p95_ms", "cost")
_LOWER_IS_BETTER = {
    "latency_avg_ms",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "error_rate",
    "cost_per_request",
    "ttft_avg_ms",
}

_NUM = (float, int)


class WindowMetrics(TypedDict):
    """One provider's window, as :meth:`HealthMonitor.metrics` reads it. Latencies in ms (None: no data)."""

    calls: int
    successes: int
    failures: int
    errors: int
    rate_limited: int
    availability: float
    success_rate: float
    error_rate: float
    tokens_in: int
    tokens_out: int
    cost_total: float
    cost_per_request: float
    lifetime_calls: int
    status: HealthStatus
    consecutive_failures: int
    latency_min_ms: float | None
    latency_max_ms: float | None
    latency_avg_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    ttft_avg_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None


_MAX_INTERVALS = 100_000  # trend buckets: one list each


class HealthMonitor:
    """Sliding-window health metrics, status and alerts for a set of providers.

    Usable on its own: ``add_provider``, then ``record(outcome)``; read with ``snapshot`` data via
    :meth:`metrics`, :meth:`status`, :meth:`compare`, :meth:`trend`, :meth:`export`. Subscribers
    get :class:`HealthChange` and :class:`Alert` objects after the lock is released; one that raises
    is counted in :attr:`callback_failures` and the others still get theirs.
    """

    def __init__(
        self, config: MonitorConfig | None = None, clock: Clock | None = None, routing: RoutingConfig | None = None
    ) -> None:
        self.config = config or MonitorConfig()
        self.routing = routing or RoutingConfig()
        self.clock: Clock = clock or monotonic_clock
        self._windows: dict[str, Window] = {}
        self._circuits: dict[str, CircuitState] = {}
        self._lock = threading.Lock()
        self._alert_subscribers: list[Callable[[Alert], None]] = []
        self._health_subscribers: list[Callable[[HealthChange], None]] = []
        self.alert_log: deque[Alert] = deque(maxlen=1000)
        self.callback_failures = CallbackFailures(log)

    # -- providers -----------------------------------------------------------------------------
    def add_provider(self, provider: Provider) -> Candidate:
        """Start tracking ``provider``; returns its live :class:`Candidate`."""
        with self._lock:
            if provider.id not in self._windows:
                self._windows[provider.id] = Window(Candidate(provider, self.routing))
                self._circuits[provider.id] = CircuitState.CLOSED
            return self._windows[provider.id].candidate

    def remove_provider(self, provider_id: str) -> None:
        """Stop tracking a provider and drop its data."""
        with self._lock:
            self._windows.pop(provider_id, None)
            self._circuits.pop(provider_id, None)

    def provider_ids(self) -> list[str]:
        """Tracked provider ids in insertion order."""
        return list(self._windows)

    def candidate(self, provider_id: str) -> Candidate:
        """The live Candidate of a tracked provider."""
        return self._window(provider_id).candidate

    # -- subscriptions -------------------------------------------------------------------------
    def subscribe_alerts(self, callback: Callable[[Alert], None]) -> Callable[[], None]:
        """Call ``callback`` for every alert; returns a function that unsubscribes."""
        self._alert_subscribers.append(callback)
        return lambda: self._alert_subscribers.remove(callback)

    def subscribe_health(self, callback: Callable[[HealthChange], None]) -> Callable[[], None]:
        """Call ``callback`` for every health status change; returns a function that unsubscribes."""
        self._health_subscribers.append(callback)
        return lambda: self._health_subscribers.remove(callback)

    # -- hot path ------------------------------------------------------------------------------
    def record(
        self,
        outcome: Outcome,
        error_kind: ErrorKind | None = None,
        cost: float = 0.0,
        *,
        retry_after_s: float | None = None,
    ) -> None:
        """Add one outcome. ``error_kind`` (for failures) decides whether it counts against health;
        ``cost`` (0 to :data:`MAX_COST`) is what it cost.

        A 429 that came with a Retry-After (``retry_after_s`` > 0) puts the provider in a cooldown that
        already keeps traffic away; it does not also count as rate-limit pressure in the estimates.

        ``outcome.at`` must be a reading of this monitor's clock: one more than
        ``MonitorConfig.max_clock_skew_s`` away from it (e.g. wall time while the clock is monotonic)
        raises :class:`ConfigError` and changes nothing; one ahead of the clock by less is recorded as
        now (samples stay in time order, so the window keeps moving).
        """
        if (
            type(outcome) is not Outcome
            or (error_kind is not None and type(error_kind) is not ErrorKind)
            or type(cost) not in _NUM
            or not 0.0 <= cost <= MAX_COST
        ):
            _check_record(outcome, error_kind, cost)
        self._record(outcome, error_kind, cost, retry_after_s)

    def _record(self, outcome: Outcome, error_kind: ErrorKind | None, cost: float, retry_after_s: float | None) -> None:
        """:meth:`record` with arguments already checked (the Middleware checks them once)."""
        now = self.clock()
        if outcome.at is not None:
            now = self._sample_time(outcome.at, now)
        if outcome.ok:
            verdict = OK
        elif error_kind is ErrorKind.RATE_LIMITED:
            verdict = RATE
        elif error_kind is None or error_kind.is_health_failure:
            verdict = FAIL
        else:
            verdict = _OTHER
        sample = _new_sample(
            Sample, (now, verdict, outcome.latency_s, outcome.ttft_s, outcome.input_tokens, outcome.output_tokens, cost)
        )  # tuple.__new__: skips NamedTuple's slower __new__
        with self._lock:
            w = self._window(outcome.provider_id)
            samples = w.samples
            if len(samples) >= self.config.max_samples:
                w.remove(samples.popleft())
            samples.append(sample)
            w.add(sample)
            w.lifetime_calls += 1
            self._expire(w, now)
            cand = w.candidate
            if verdict is OK:
                cand.consecutive_failures = 0
            elif verdict is FAIL:
                cand.consecutive_failures += 1
            told = verdict is RATE and retry_after_s is not None and retry_after_s > 0
            cand.observe(
                _OTHER if told else verdict,
                outcome.latency_s,
                outcome.ttft_s,
                now,
                self.routing.concurrency_memory_s,
                outcome.output_tokens,
            )
            pending = self._evaluate(outcome.provider_id, w, now)
        self._emit(pending)

    def record_at_least(self, provider_id: str, seconds: float, *, stream: bool = False) -> None:
        """A call to ``provider_id`` was cancelled after ``seconds`` without an outcome (a hedge that lost).

        Not a sample of the window and not a failure: it only pulls the routing latency estimate (TTFT for
        a stream) a tenth of the way up to ``seconds`` if that is above it (:meth:`PeakEwma.at_least`).
        """
        now = self.clock()
        with self._lock:
            w = self._windows.get(provider_id)
            if w is not None:
                w.candidate.at_least(max(seconds, 0.0), stream, now)

    def set_circuit(self, provider_id: str, circuit: CircuitState) -> None:
        """Tell the monitor a provider's breaker state; it takes part in the health status."""
        now = self.clock()
        with self._lock:
            w = self._window(provider_id)
            self._circuits[provider_id] = circuit
            w.candidate.circuit = circuit
            pending = self._evaluate(provider_id, w, now)
        self._emit(pending)

    def refresh(self, provider_id: str, now: float | None = None) -> None:
        """Drop samples that left the window (also done on every record)."""
        now = self.clock() if now is None else now
        with self._lock:
            w = self._window(provider_id)
            if w.samples and w.samples[0].at < now - self.config.window_s:
                self._expire(w, now)
                pending = self._evaluate(provider_id, w, now)
            else:
                pending = []
        self._emit(pending)

    # -- reading -------------------------------------------------------------------------------
    def status(self, provider_id: str) -> HealthStatus:
        """Current health status (metrics combined with the breaker state)."""
        return self._window(provider_id).status

    def metrics(self, provider_id: str) -> WindowMetrics:
        """Window metrics of one provider, percentiles included (computed now). Latencies in ms."""
        now = self.clock()
        self.refresh(provider_id, now)  # samples that left change the status and alerts too, not only the numbers
        with self._lock:
            w = self._window(provider_id)
            self._expire(w, now)
            ok_lat = sorted(s.latency_s for s in w.samples if s.verdict is OK)
            ttfts = sorted(s.ttft_s for s in w.samples if s.ttft_s is not None)
            calls, cost, status, failures = w.calls, max(w.cost, 0.0), w.status, w.candidate.consecutive_failures
            counts = (w.successes, w.failures, w.errors, w.rate_limited, w.tokens_in, w.tokens_out, w.lifetime_calls)
            availability, error_rate = w.availability, w.error_rate
        ms = 1000.0
        return WindowMetrics(
            calls=calls,
            successes=counts[0],
            failures=counts[1],
            errors=counts[2],
            rate_limited=counts[3],
            availability=availability,
            success_rate=counts[0] / calls if calls else 1.0,
            error_rate=error_rate,
            tokens_in=counts[4],
            tokens_out=counts[5],
            cost_total=cost,
            cost_per_request=cost / calls if calls else 0.0,
            lifetime_calls=counts[6],
            status=status,
            consecutive_failures=failures,
            latency_min_ms=ok_lat[0] * ms if ok_lat else None,
            latency_max_ms=ok_lat[-1] * ms if ok_lat else None,
            latency_avg_ms=sum(ok_lat) / len(ok_lat) * ms if ok_lat else None,
            latency_p50_ms=percentile(ok_lat, 50) * ms if ok_lat else None,
            latency_p95_ms=percentile(ok_lat, 95) * ms if ok_lat else None,
            latency_p99_ms=percentile(ok_lat, 99) * ms if ok_lat else None,
            ttft_avg_ms=sum(ttfts) / len(ttfts) * ms if ttfts else None,
            ttft_p50_ms=percentile(ttfts, 50) * ms if ttfts else None,
            ttft_p95_ms=percentile(ttfts, 95) * ms if ttfts else None,
        )

    def compare(
        self, metric: str = "latency_p50_ms", provider_ids: Iterable[str] | None = None
    ) -> list[tuple[str, float | None]]:
        """Providers ordered best first by ``metric`` (any key of :meth:`metrics`); no data last."""
        ids = list(provider_ids) if provider_ids is not None else self.provider_ids()
        rows: list[tuple[str, Any]] = [(pid, dict(self.metrics(pid)).get(metric)) for pid in ids]
        if rows and any(v is not None and not isinstance(v, int | float) for _, v in rows):
            raise ConfigError("metric", f"{metric!r} is not numeric; pick e.g. latency_p50_ms or error_rate")
        sign = 1.0 if metric in _LOWER_IS_BETTER else -1.0
        return sorted(rows, key=lambda r: (r[1] is None, sign * float(r[1] or 0.0)))

    def trend(
        self,
        provider_id: str,
        metric: TrendMetric = "latency_avg_ms",
        intervals: int = 10,
        interval_s: float | None = None,
    ) -> list[float | None]:
        """``metric`` over the last ``intervals`` intervals (oldest first); None where no data.

        Intervals default to window_s / intervals; only samples still in the window are used.
        """
        if metric not in _TREND_METRICS:
            raise ConfigError("metric", f"unknown trend metric {metric!r}; use one of {', '.join(_TREND_METRICS)}")
        require(
            "intervals",
            isinstance(intervals, int) and not isinstance(intervals, bool) and 1 <= intervals <= _MAX_INTERVALS,
            f"a whole number from 1 to {_MAX_INTERVALS:,}",
            intervals,
        )
        require(
            "interval_s",
            interval_s is None or (is_number(interval_s) and interval_s > 0),
            "a finite number of seconds > 0, or None",
            interval_s,
        )
        span = interval_s if interval_s is not None else self.config.window_s / intervals
        if not math.isfinite(span * intervals):
            raise ConfigError("interval_s", f"interval_s x intervals must be a finite time (got {span} x {intervals})")
        now = self.clock()
        start = now - span * intervals
        buckets: list[list[Sample]] = [[] for _ in range(intervals)]
        with self._lock:
            for s in self._window(provider_id).samples:
                if s.at >= start:
                    buckets[min(int((s.at - start) / span), intervals - 1)].append(s)
        return [_bucket_value(b, metric) for b in buckets]

    def export(self, metrics: Mapping[str, WindowMetrics] | None = None) -> dict[str, Any]:
        """JSON-safe metrics of every provider plus the configuration and recent alerts.

        ``metrics``: providers' :meth:`metrics` already read by the caller (the Middleware reads them for
        its health section), so that percentiles are not computed twice.
        """
        providers = {}
        for pid in self.provider_ids():
            m: dict[str, Any] | None = dict(metrics[pid]) if metrics is not None and pid in metrics else None
            if m is None:
                try:
                    m = dict(self.metrics(pid))
                except UnknownProviderError:  # removed by another thread while exporting
                    continue
            m["status"] = m["status"].value
            providers[pid] = m
        return {
            "config": self.config.to_dict(),
            "providers": providers,
            "alerts": [a.to_dict() for a in list(self.alert_log)],
        }  # copy: other threads append

    def clear(self, provider_id: str | None = None) -> None:
        """Forget samples and alerts of one provider, or of all."""
        with self._lock:
            ids = [provider_id] if provider_id is not None else list(self._windows)
            for pid in ids:
                cand = self._window(pid).candidate
                cand.forget()
                self._windows[pid] = Window(cand)
            if provider_id is None:
                self.alert_log.clear()

    # -- internals -----------------------------------------------------------------------------
    def _window(self, provider_id: str) -> Window:
        try:
            return self._windows[provider_id]
        except KeyError:
            raise UnknownProviderError(provider_id) from None

    def _sample_time(self, at: float, now: float) -> float:
        skew = self.config.max_clock_skew_s
        if not now - skew <= at <= now + skew:
            raise ConfigError(
                "Outcome.at",
                f"{at!r} is {at - now:+.6g} s from the monitor's clock ({now!r}), more "
                f"than MonitorConfig.max_clock_skew_s ({skew:g} s); give a reading of the same clock "
                "(the Middleware's clock, time.monotonic() by default; not wall time), or None for now",
            )
        return at if at < now else now

    def _expire(self, w: Window, now: float) -> None:
        cutoff = now - self.config.window_s
        samples = w.samples
        while samples and samples[0].at < cutoff:
            w.remove(samples.popleft())
        cand = w.candidate
        cand.error_rate = w.error_rate
        cand.samples = w.calls
        cand.stale_at = samples[0].at + self.config.window_s if samples else float("inf")

    def _evaluate(self, provider_id: str, w: Window, now: float) -> list[Alert | HealthChange]:
        pending: list[Alert | HealthChange] = []
        new = self._combined_status(w, self._circuits.get(provider_id, CircuitState.CLOSED))
        if new is not w.status:
            pending.append(HealthChange(provider_id, w.status, new, now, self._why(w)))
            w.status = new
        pending.extend(self._alerts(provider_id, w, now))
        return pending

    def _combined_status(self, w: Window, circuit: CircuitState) -> HealthStatus:
        if circuit is CircuitState.OPEN:
            return HealthStatus.OFFLINE
        cfg = self.config
        if w.calls < cfg.min_samples:
            metric = HealthStatus.UNKNOWN
        else:
            th, avail, err = cfg.thresholds, w.availability, w.error_rate
            if avail < th.offline_availability:
                metric = HealthStatus.OFFLINE
            elif avail >= th.healthy_availability and (err < th.healthy_error_rate or err == 0):
                metric = HealthStatus.HEALTHY
            elif avail >= th.degraded_availability and err <= th.degraded_error_rate:
                metric = HealthStatus.DEGRADED
            else:
                metric = HealthStatus.UNHEALTHY
        if circuit is CircuitState.HALF_OPEN and metric.rank < HealthStatus.UNHEALTHY.rank:
            return HealthStatus.UNHEALTHY
        return metric

    @staticmethod
    def _why(w: Window) -> str:
        return (
            f"availability {w.availability:.1%}, error rate {w.error_rate:.1%} over {w.calls} calls, "
            f"circuit {w.candidate.circuit.value}"
        )

    def _alerts(self, provider_id: str, w: Window, now: float) -> list[Alert]:
        cfg = self.config.alerts
        conditions: dict[AlertKind, tuple[float, float]] = {}
        if w.ok_latency_n >= cfg.min_samples:
            avg_ms = w.latency_ok_sum / w.ok_latency_n * 1000
            if avg_ms > cfg.high_latency_ms:
                conditions[AlertKind.HIGH_LATENCY] = (avg_ms, cfg.high_latency_ms)
        if w.calls >= cfg.min_samples and w.error_rate > cfg.high_error_rate:
            conditions[AlertKind.HIGH_ERROR_RATE] = (w.error_rate, cfg.high_error_rate)
        if w.status is HealthStatus.OFFLINE:
            conditions[AlertKind.UNAVAILABLE] = (w.availability, self.config.thresholds.offline_availability)
        out = [
            Alert(kind, provider_id, _ALERT_TEXT[kind].format(pid=provider_id, value=v, threshold=t), v, t, now)
            for kind, (v, t) in conditions.items()
            if kind not in w.active_alerts
        ]
        if w.active_alerts and not conditions:
            out.append(
                Alert(
                    AlertKind.RECOVERED,
                    provider_id,
                    f"{provider_id} recovered ({self._why(w)})",
                    w.availability,
                    self.config.thresholds.healthy_availability,
                    now,
                )
            )
        w.active_alerts = set(conditions)
        return out

    def _emit(self, pending: list[Alert | HealthChange]) -> None:
        guard = self.callback_failures
        for item in pending:
            if isinstance(item, Alert):
                self.alert_log.append(item)
                for cb in list(self._alert_subscribers):
                    guard.call("alert_subscriber", cb, item)
            else:
                for hcb in list(self._health_subscribers):
                    guard.call("health_subscriber", hcb, item)


def _check_record(outcome: object, error_kind: object, cost: object) -> None:
    """The arguments of :meth:`HealthMonitor.record` that its fast check did not accept, named."""
    if not isinstance(outcome, Outcome):
        raise ConfigError("outcome", f"expected an Outcome, got {type(outcome).__name__}")
    require("error_kind", error_kind is None or isinstance(error_kind, ErrorKind), "an ErrorKind or None", error_kind)
    require("cost", in_range(cost, 0.0, MAX_COST), f"a cost from 0 to {MAX_COST:g}", cost)


_ALERT_TEXT = {
    AlertKind.HIGH_LATENCY: "{pid}: average latency {value:.0f} ms above {threshold:.0f} ms",
    AlertKind.HIGH_ERROR_RATE: "{pid}: error rate {value:.1%} above {threshold:.1%}",
    AlertKind.UNAVAILABLE: "{pid}: unavailable (availability {value:.1%}, or circuit open)",
}


def _bucket_value(bucket: list[Sample], metric: str) -> float | None:
    if metric == "calls":
        return float(len(bucket))
    if not bucket:
        return None
    if metric == "error_rate":
        return sum(1 for s in bucket if s.verdict is not OK) / len(bucket)
    if metric == "availability":
        verdicts = [s for s in bucket if s.verdict is OK or s.verdict is FAIL]
        return sum(1 for s in verdicts if s.verdict is OK) / len(verdicts) if verdicts else None
    if metric == "cost":
        return sum(s.cost for s in bucket)
    ok = sorted(s.latency_s for s in bucket if s.verdict is OK)
    if not ok:
        return None
    if metric == "latency_avg_ms":
        return sum(ok) / len(ok) * 1000
    return percentile(ok, 95) * 1000
