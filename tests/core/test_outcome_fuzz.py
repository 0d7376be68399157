"""Random outcome streams through a Middleware, checked against a brute-force recomputation.

The reference keeps every outcome the middleware reported through ``pbm_on_outcome`` (and checks
that direct ``record`` calls arrive unchanged), then recomputes each provider's window from scratch:
the last ``max_samples`` outcomes no older than ``window_s``. After every step the health snapshot,
the monitor status, the alert state, routing and the JSON export must agree with it, and a secret
carried by error messages and headers must never reach the export or the logs.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pi_builder_middleware import (
    AlertKind,
    AlertThresholds,
    AllProvidersFailedError,
    CircuitState,
    ErrorKind,
    FailoverConfig,
    HealthStatus,
    HealthThresholds,
    ManualClock,
    Middleware,
    MonitorConfig,
    NoProviderAvailableError,
    Outcome,
    Provider,
    RouteRequest,
    Usage,
    hookimpl,
)

SECRET = "sk-secret-123456789"
PIDS = ("p0", "p1", "p2", "p3")


class APIStatusError(Exception):
    """An HTTP error as client libraries raise them: status, message, response headers."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.headers = {"authorization": f"Bearer {SECRET}", **(headers or {})}


ERRORS: dict[str, tuple[ErrorKind, object]] = {
    "500": (ErrorKind.SERVER_ERROR, lambda: APIStatusError(500, f"upstream failed for key {SECRET}")),
    "529": (ErrorKind.OVERLOADED, lambda: APIStatusError(529, f"overloaded ({SECRET})")),
    "429": (
        ErrorKind.RATE_LIMITED,
        lambda: APIStatusError(429, f"rate limit reached for {SECRET}", {"retry-after": "3"}),
    ),
    "401": (ErrorKind.AUTH, lambda: APIStatusError(401, f"Incorrect API key provided: {SECRET}")),
    "context": (
        ErrorKind.CONTEXT_WINDOW,
        lambda: APIStatusError(400, f"maximum context length exceeded; key {SECRET}"),
    ),
    "timeout": (ErrorKind.TIMEOUT, lambda: TimeoutError(f"timed out talking to {SECRET}")),
    "reset": (ErrorKind.CONNECTION, lambda: ConnectionResetError(f"reset by peer ({SECRET})")),
    "unknown": (ErrorKind.UNKNOWN, lambda: RuntimeError(f"weird failure with {SECRET}")),
}
EXECUTE_ERRORS = ("500", "529", "429", "401", "context", "timeout", "reset", "unknown")

# Dyadic values (k/64 s, k/1024 cost) keep running sums exact, so thresholds compare exactly.
LATENCY = st.integers(0, 320).map(lambda k: k / 64)
COST = st.one_of(st.none(), st.integers(0, 1024).map(lambda k: k / 1024))
TOKENS = st.integers(0, 4000)


@dataclass(frozen=True)
class Seen:
    at: float
    outcome: Outcome
    kind: ErrorKind | None
    cost: float


class Recorder:
    """Observer plugin: what the middleware says it recorded, in order."""

    def __init__(self, machine: OutcomeMachine) -> None:
        self.machine = machine

    @hookimpl
    def pbm_on_outcome(self, outcome: Outcome, error_kind: ErrorKind | None) -> None:
        m = self.machine
        provider = m.mw.providers[outcome.provider_id]
        cost = (
            outcome.cost if outcome.cost is not None else provider.cost_of(outcome.input_tokens, outcome.output_tokens)
        )
        m.seen[outcome.provider_id].append(Seen(m.clock(), outcome, error_kind, cost))
        m.cost_magnitude[outcome.provider_id] += cost


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def expected_status(
    cfg: MonitorConfig, calls: int, successes: int, failures: int, errors: int, circuit: CircuitState
) -> HealthStatus:
    """The documented rule: thresholds on availability and error rate, worst with the breaker."""
    if circuit is CircuitState.OPEN:
        return HealthStatus.OFFLINE
    th = cfg.thresholds
    if calls < cfg.min_samples:
        metric = HealthStatus.UNKNOWN
    else:
        availability = successes / (successes + failures) if successes + failures else 1.0
        error_rate = errors / calls
        if availability < th.offline_availability:
            metric = HealthStatus.OFFLINE
        elif availability >= th.healthy_availability and (error_rate < th.healthy_error_rate or errors == 0):
            metric = HealthStatus.HEALTHY
        elif availability >= th.degraded_availability and error_rate <= th.degraded_error_rate:
            metric = HealthStatus.DEGRADED
        else:
            metric = HealthStatus.UNHEALTHY
    if circuit is CircuitState.HALF_OPEN and metric.rank < HealthStatus.UNHEALTHY.rank:
        return HealthStatus.UNHEALTHY
    return metric


def close(a: float | None, b: float | None, tol: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


THRESHOLD_SETS = [
    HealthThresholds(),
    HealthThresholds(
        healthy_availability=0.75,
        degraded_availability=0.5,
        offline_availability=0.25,
        healthy_error_rate=0.25,
        degraded_error_rate=0.5,
    ),
    HealthThresholds(
        healthy_availability=1.0,
        degraded_availability=1.0,
        offline_availability=0.0,
        healthy_error_rate=0.0,
        degraded_error_rate=0.0,
    ),
]


class OutcomeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(1000.0)
        self.seen: dict[str, list[Seen]] = {}
        self.cost_magnitude: dict[str, float] = {}
        self.selects = 0
        self.logs = Collect()
        self.logger = logging.getLogger("pi_builder_middleware")
        self.old_level = self.logger.level
        self.logger.addHandler(self.logs)
        self.logger.setLevel(logging.DEBUG)

    def teardown(self) -> None:
        self.logger.removeHandler(self.logs)
        self.logger.setLevel(self.old_level)

    @initialize(
        n=st.integers(2, 4),
        window=st.sampled_from([4.0, 30.0, 600.0]),
        max_samples=st.sampled_from([8, 16, 64]),
        min_samples=st.integers(1, 5),
        thresholds=st.sampled_from(THRESHOLD_SETS),
        alerts=st.builds(
            AlertThresholds,
            high_latency_ms=st.sampled_from([250.0, 1000.0, 4000.0]),
            high_error_rate=st.sampled_from([0.0, 0.25, 0.5]),
            min_samples=st.integers(1, 4),
        ),
        strategy=st.sampled_from(["latency-optimal", "cost-optimal", "quality-optimal", "failover"]),
        ejection=st.sampled_from([2.0, 10.0]),
        prices=st.lists(st.integers(0, 64).map(lambda k: k / 1000), min_size=8, max_size=8),
    )
    def setup(
        self,
        n: int,
        window: float,
        max_samples: int,
        min_samples: int,
        thresholds: HealthThresholds,
        alerts: AlertThresholds,
        strategy: str,
        ejection: float,
        prices: list[float],
    ) -> None:
        self.pids = PIDS[:n]
        self.monitor_cfg = MonitorConfig(
            window_s=window, max_samples=max_samples, min_samples=min_samples, thresholds=thresholds, alerts=alerts
        )
        providers = [
            Provider(id=pid, cost_per_1k_input=prices[2 * i], cost_per_1k_output=prices[2 * i + 1], quality=(i + 1) / 5)
            for i, pid in enumerate(self.pids)
        ]
        self.seen = {pid: [] for pid in self.pids}
        self.cost_magnitude = dict.fromkeys(self.pids, 0.0)
        self.mw = Middleware(
            providers,
            strategy=strategy,
            monitor=self.monitor_cfg,
            clock=self.clock,
            seed=1,
            failover=FailoverConfig.preset("aggressive", jitter=0.0, base_ejection_s=ejection),
            plugins=[Recorder(self)],
            load_entrypoints=False,
        )

    # -- rules ---------------------------------------------------------------------------------
    @rule(
        index=st.integers(0, 3),
        latency=LATENCY,
        ttft=st.one_of(st.none(), LATENCY),
        tokens_in=TOKENS,
        tokens_out=TOKENS,
        cost=COST,
    )
    def success(
        self, index: int, latency: float, ttft: float | None, tokens_in: int, tokens_out: int, cost: float | None
    ) -> None:
        pid = self.pids[index % len(self.pids)]
        outcome = Outcome(pid, True, latency, ttft_s=ttft, input_tokens=tokens_in, output_tokens=tokens_out, cost=cost)
        assert self.mw.record(outcome) is None
        assert self.seen[pid][-1].outcome is outcome

    @rule(
        index=st.integers(0, 3),
        how=st.sampled_from(sorted(ERRORS)),
        explicit=st.booleans(),
        latency=LATENCY,
        tokens_in=TOKENS,
        cost=COST,
    )
    def failure(self, index: int, how: str, explicit: bool, latency: float, tokens_in: int, cost: float | None) -> None:
        pid = self.pids[index % len(self.pids)]
        kind, make = ERRORS[how]
        error = make()  # type: ignore[operator]
        outcome = Outcome(
            pid, False, latency, input_tokens=tokens_in, cost=cost, error=error, error_kind=kind if explicit else None
        )
        assert self.mw.record(outcome) is kind
        assert self.seen[pid][-1].outcome is outcome and self.seen[pid][-1].kind is kind
        if kind is ErrorKind.RATE_LIMITED:
            reason = self.mw.failover.unavailable_reason(pid)
            assert reason is not None  # cooling down for Retry-After (or the breaker is open anyway)

    @rule(dt=st.sampled_from([0.25, 1.0, 3.0, 10.0, 45.0, 700.0]))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule(reserve=st.booleans(), strategy=st.sampled_from([None, "cost-optimal", "failover"]))
    def select(self, reserve: bool, strategy: str | None) -> None:
        request = RouteRequest(strategy=strategy)
        try:
            decision = self.mw.select(request, reserve=reserve)
        except NoProviderAvailableError as exc:
            assert set(exc.reasons) == set(self.pids)
            for pid in self.pids:
                assert self.mw.failover.unavailable_reason(pid) is not None
            return
        self.selects += 1
        if decision.panic:  # every provider was out: the request goes to the soonest re-admission
            assert set(decision.excluded) == set(self.pids) and decision.chain == ()
            assert decision.trial and "every candidate is out" in decision.reason
            return
        for provider in decision.providers:
            assert self.mw.failover.state(provider.id) is not CircuitState.OPEN
        if not reserve:
            assert self.mw.failover.unavailable_reason(decision.provider.id) is None
        assert set(decision.scores) == {p.id for p in decision.providers}
        assert set(decision.excluded) | set(decision.scores) == set(self.pids)

    @rule(
        plan=st.lists(st.tuples(st.sampled_from((None, *EXECUTE_ERRORS)), LATENCY), min_size=4, max_size=4),
        usage=st.tuples(TOKENS, TOKENS, COST),
    )
    def execute(self, plan: list[tuple[str | None, float]], usage: tuple[int, int, float | None]) -> None:
        script = dict(zip(self.pids, plan, strict=False))
        called: list[str] = []

        def call(provider: Provider) -> str:
            how, latency = script[provider.id]
            called.append(provider.id)
            self.clock.advance(latency)
            if how is not None:
                raise ERRORS[how][1]()  # type: ignore[operator]
            return provider.id

        before = {pid: len(self.seen[pid]) for pid in self.pids}
        try:
            result = self.mw.execute(call, usage=lambda _r: Usage(*usage))
        except (AllProvidersFailedError, NoProviderAvailableError):
            result = None
        except APIStatusError as exc:  # a bad request is not failed over
            assert exc.status_code == 400
            result = None
        # Every attempt was recorded exactly once, with the latency the call took.
        for pid in self.pids:
            new = self.seen[pid][before[pid] :]
            assert len(new) == called.count(pid)
            for s in new:
                assert s.outcome.latency_s == script[pid][1]
        if result is not None:
            assert called[-1] == result and self.seen[result][-1].outcome.ok

    @rule(pid=st.one_of(st.none(), st.sampled_from(PIDS)))
    def reset(self, pid: str | None) -> None:
        if pid is not None and pid not in self.pids:
            return
        self.mw.reset(pid)
        for p in self.pids if pid is None else (pid,):
            self.seen[p] = []
            self.cost_magnitude[p] = 0.0
        if pid is None:
            self.selects = 0

    # -- invariants ----------------------------------------------------------------------------
    def window_of(self, pid: str) -> list[Seen]:
        cfg = self.monitor_cfg
        recent = self.seen[pid][-cfg.max_samples :]
        return [s for s in recent if s.at >= self.clock() - cfg.window_s]

    @invariant()
    def snapshot_matches_brute_force(self) -> None:
        if not hasattr(self, "mw"):
            return
        cfg = self.monitor_cfg
        for pid in self.pids:
            h = self.mw.health(pid)
            win = self.window_of(pid)
            ok = [s for s in win if s.outcome.ok]
            fail = [s for s in win if not s.outcome.ok and s.kind is not None and s.kind.is_health_failure]
            limited = [s for s in win if s.kind is ErrorKind.RATE_LIMITED and not s.outcome.ok]
            assert (h.calls, h.successes, h.failures, h.rate_limited) == (len(win), len(ok), len(fail), len(limited))
            assert h.calls == h.successes + h.errors
            assert 0.0 <= h.availability <= 1.0 and 0.0 <= h.error_rate <= 1.0
            assert h.availability == (len(ok) / (len(ok) + len(fail)) if ok or fail else 1.0)
            assert h.error_rate == ((len(win) - len(ok)) / len(win) if win else 0.0)
            # Latency of successful calls, in ms.
            lat = sorted(s.outcome.latency_s * 1000 for s in ok)
            if lat:
                assert h.latency_min_ms == lat[0] and h.latency_max_ms == lat[-1]
                assert close(h.latency_avg_ms, statistics.fmean(lat))
                if len(lat) > 1:
                    q = statistics.quantiles(lat, n=100, method="inclusive")
                    assert close(h.latency_p50_ms, q[49]) and close(h.latency_p95_ms, q[94])
                    assert close(h.latency_p99_ms, q[98])
                else:
                    assert h.latency_p50_ms == h.latency_p95_ms == h.latency_p99_ms == lat[0]
                assert h.latency_p50_ms <= h.latency_p95_ms <= h.latency_p99_ms <= h.latency_max_ms
                assert h.latency_min_ms <= h.latency_avg_ms * (1 + 1e-12) and h.latency_avg_ms <= h.latency_max_ms * (
                    1 + 1e-12
                )
            else:
                assert h.latency_min_ms is h.latency_avg_ms is h.latency_p99_ms is h.latency_max_ms is None
            ttfts = [s.outcome.ttft_s * 1000 for s in win if s.outcome.ttft_s is not None]
            assert close(h.ttft_avg_ms, statistics.fmean(ttfts) if ttfts else None)
            # Tokens and cost: sums over the outcomes still in the window.
            assert h.tokens_in == sum(s.outcome.input_tokens for s in win)
            assert h.tokens_out == sum(s.outcome.output_tokens for s in win)
            drift = 1e-9 * (1.0 + self.cost_magnitude[pid])  # running sums add and subtract
            assert abs(h.cost_total - sum(s.cost for s in win)) <= drift
            assert h.cost_total >= 0 and (h.calls > 0 or h.cost_per_request == 0.0)
            # Status: the thresholds applied to these numbers, combined with the breaker.
            circuit = self.mw.failover.state(pid)
            assert h.circuit is circuit
            expected = expected_status(cfg, len(win), len(ok), len(fail), len(win) - len(ok), circuit)
            assert h.status is expected, (h.status, expected, circuit)
            assert self.mw.monitor.status(pid) is expected
            self._check_alert_state(pid, h.status, win, ok)
            assert self.mw.monitor.metrics(pid)["lifetime_calls"] == len(self.seen[pid])

    def _check_alert_state(self, pid: str, status: HealthStatus, win: list[Seen], ok: list[Seen]) -> None:
        alerts = self.monitor_cfg.alerts
        expected: set[AlertKind] = set()
        if len(ok) >= alerts.min_samples:
            avg_ms = sum(s.outcome.latency_s for s in ok) / len(ok) * 1000
            if avg_ms > alerts.high_latency_ms:
                expected.add(AlertKind.HIGH_LATENCY)
        if len(win) >= alerts.min_samples and (len(win) - len(ok)) / len(win) > alerts.high_error_rate:
            expected.add(AlertKind.HIGH_ERROR_RATE)
        if status is HealthStatus.OFFLINE:
            expected.add(AlertKind.UNAVAILABLE)
        assert self.mw.monitor._windows[pid].active_alerts == expected  # white-box: alert state

    @invariant()
    def routing_statistics_count_every_decision(self) -> None:
        if hasattr(self, "mw"):
            stats = self.mw.stats()["router"]
            assert stats["total_decisions"] >= self.selects
            assert sum(stats["per_provider"].values()) == stats["total_decisions"]

    @invariant()
    def export_is_json_and_keeps_secrets(self) -> None:
        if not hasattr(self, "mw"):
            return
        text = json.dumps(self.mw.export(), allow_nan=False)
        assert SECRET not in text and "sk-secret" not in text
        assert SECRET not in json.dumps(self.mw.stats(), allow_nan=False, default=str)
        assert not any("sk-secret" in line for line in self.logs.lines)


OutcomeMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestOutcomeFuzz = OutcomeMachine.TestCase
