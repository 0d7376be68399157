"""HealthMonitor on its own: window metrics, status thresholds, alerts, trend, compare, export."""

from __future__ import annotations

import json

import pytest

from pi_builder_middleware import (
    AlertKind,
    AlertThresholds,
    CircuitState,
    ConfigError,
    ErrorKind,
    HealthMonitor,
    HealthStatus,
    HealthThresholds,
    ManualClock,
    MonitorConfig,
    Outcome,
    Provider,
)


@pytest.fixture
def mon(clock):
    m = HealthMonitor(MonitorConfig(window_s=60, min_samples=5, max_samples=200), clock=clock)
    m.add_provider(Provider(id="a"))
    m.add_provider(Provider(id="b"))
    return m


def feed(mon, pid, n, ok=True, latency=0.1, kind=ErrorKind.SERVER_ERROR, **kw):
    for _ in range(n):
        mon.record(Outcome(pid, ok, latency, **kw), None if ok else kind, kw.get("cost", 0.0) or 0.0)


def test_latency_percentiles_and_rates(mon):
    for ms in range(1, 101):  # 1..100 ms
        mon.record(Outcome("a", True, ms / 1000, ttft_s=ms / 2000, input_tokens=10, output_tokens=5), None, 0.01)
    feed(mon, "a", 2, ok=False)
    m = mon.metrics("a")
    assert m["latency_min_ms"] == pytest.approx(1)
    assert m["latency_max_ms"] == pytest.approx(100)
    assert m["latency_avg_ms"] == pytest.approx(50.5)
    assert m["latency_p50_ms"] == pytest.approx(50.5)
    assert m["latency_p95_ms"] == pytest.approx(95.05)
    assert m["latency_p99_ms"] == pytest.approx(99.01)
    assert m["ttft_p50_ms"] == pytest.approx(25.25)
    assert (m["calls"], m["successes"], m["failures"], m["errors"]) == (102, 100, 2, 2)
    assert m["availability"] == pytest.approx(100 / 102)
    assert m["error_rate"] == pytest.approx(2 / 102)
    assert (m["tokens_in"], m["tokens_out"]) == (1000, 500)
    assert m["cost_total"] == pytest.approx(1.0)
    assert m["cost_per_request"] == pytest.approx(1.0 / 102)


def test_window_forgets_old_samples(mon, clock):
    feed(mon, "a", 10, ok=False)
    clock.advance(30)
    feed(mon, "a", 10)
    assert mon.metrics("a")["calls"] == 20
    clock.advance(31)  # the failures are now older than 60 s
    m = mon.metrics("a")
    assert (m["calls"], m["failures"], m["availability"]) == (10, 0, 1.0)


def test_max_samples_bounds_memory(mon):
    feed(mon, "a", 250)
    m = mon.metrics("a")
    assert m["calls"] == 200
    assert m["lifetime_calls"] == 250


@pytest.mark.parametrize(
    ("ok", "fail", "other", "expected"),
    [
        (100, 0, 0, HealthStatus.HEALTHY),
        (98, 2, 0, HealthStatus.DEGRADED),
        (90, 10, 0, HealthStatus.UNHEALTHY),
        (40, 60, 0, HealthStatus.OFFLINE),
        (97, 0, 3, HealthStatus.DEGRADED),  # request-specific errors: available, but error rate 3 %
        (3, 0, 0, HealthStatus.UNKNOWN),  # below min_samples
    ],
)
def test_status_thresholds(mon, ok, fail, other, expected):
    feed(mon, "a", ok)
    feed(mon, "a", fail, ok=False)
    feed(mon, "a", other, ok=False, kind=ErrorKind.CONTEXT_WINDOW)
    assert mon.status("a") is expected


def test_rate_limits_do_not_count_against_availability(mon):
    feed(mon, "a", 20)
    feed(mon, "a", 20, ok=False, kind=ErrorKind.RATE_LIMITED)
    m = mon.metrics("a")
    assert m["availability"] == 1.0
    assert m["rate_limited"] == 20
    assert m["error_rate"] == 0.5


def test_custom_thresholds(clock):
    cfg = MonitorConfig(
        min_samples=1,
        thresholds=HealthThresholds(
            healthy_availability=0.8,
            degraded_availability=0.6,
            offline_availability=0.1,
            healthy_error_rate=0.3,
            degraded_error_rate=0.5,
        ),
    )
    mon = HealthMonitor(cfg, clock=clock)
    mon.add_provider(Provider(id="a"))
    feed(mon, "a", 9)
    feed(mon, "a", 1, ok=False)
    assert mon.status("a") is HealthStatus.HEALTHY


def test_circuit_state_takes_part_in_status(mon):
    feed(mon, "a", 20)
    mon.set_circuit("a", CircuitState.OPEN)
    assert mon.status("a") is HealthStatus.OFFLINE
    mon.set_circuit("a", CircuitState.HALF_OPEN)
    assert mon.status("a") is HealthStatus.UNHEALTHY
    mon.set_circuit("a", CircuitState.CLOSED)
    assert mon.status("a") is HealthStatus.HEALTHY


def test_alerts_fire_once_per_transition_and_recover(clock):
    mon = HealthMonitor(
        MonitorConfig(window_s=60, alerts=AlertThresholds(high_latency_ms=500, high_error_rate=0.2, min_samples=5)),
        clock=clock,
    )
    mon.add_provider(Provider(id="a"))
    alerts, changes = [], []
    mon.subscribe_alerts(alerts.append)
    mon.subscribe_health(changes.append)
    feed(mon, "a", 10, latency=1.0)
    assert [a.kind for a in alerts] == [AlertKind.HIGH_LATENCY]
    feed(mon, "a", 10, latency=1.0)  # still slow: no alert storm
    assert len(alerts) == 1
    feed(mon, "a", 10, ok=False)  # 33 % errors
    assert [a.kind for a in alerts] == [AlertKind.HIGH_LATENCY, AlertKind.HIGH_ERROR_RATE]
    clock.advance(61)
    feed(mon, "a", 10, latency=0.1)
    assert alerts[-1].kind is AlertKind.RECOVERED
    assert len(alerts) == 3
    assert [c.new for c in changes][-1] is HealthStatus.HEALTHY
    assert HealthStatus.OFFLINE not in [c.new for c in changes]
    assert HealthStatus.UNHEALTHY in [c.new for c in changes]


def test_unavailable_alert_when_offline(mon):
    got = []
    mon.subscribe_alerts(got.append)
    feed(mon, "a", 10, ok=False)
    assert AlertKind.UNAVAILABLE in [a.kind for a in got]
    assert all("sk-" not in a.message for a in got)


def test_trend_and_compare(mon, clock):
    for step in range(6):
        feed(mon, "a", 5, latency=0.1 * (step + 1))
        clock.advance(10)
    trend = mon.trend("a", "latency_avg_ms", intervals=6, interval_s=10)
    assert trend == pytest.approx([100, 200, 300, 400, 500, 600])
    assert mon.trend("a", "calls", intervals=3, interval_s=10) == [5.0, 5.0, 5.0]
    feed(mon, "b", 5, latency=0.05)
    assert [pid for pid, _ in mon.compare("latency_p50_ms")] == ["b", "a"]
    mon.record(Outcome("b", False, 0.1), ErrorKind.SERVER_ERROR)
    assert [pid for pid, _ in mon.compare("availability")] == ["a", "b"]
    with pytest.raises(ConfigError, match="unknown trend metric"):
        mon.trend("a", "bogus")  # type: ignore[arg-type]


def test_export_is_json_and_clear_forgets(mon):
    feed(mon, "a", 5)
    data = json.loads(json.dumps(mon.export()))
    assert data["providers"]["a"]["calls"] == 5
    assert data["providers"]["a"]["status"] == "healthy"
    mon.clear("a")
    assert mon.metrics("a")["calls"] == 0
    assert mon.candidate("a").latency_s is None


def test_unknown_provider_is_config_error(mon):
    with pytest.raises(ConfigError, match="unknown provider 'zzz'"):
        mon.record(Outcome("zzz", True, 0.1))


def test_manual_clock_refuses_to_go_back():
    c = ManualClock(5)
    with pytest.raises(ValueError):
        c.set(4)
    with pytest.raises(ValueError):
        c.advance(-1)
