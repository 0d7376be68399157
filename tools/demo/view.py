"""The demo's terminal view (rich): provider health, where traffic goes, alerts; and the final summary."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from pi_builder_middleware import Alert, CircuitState, HealthStatus
from pi_builder_middleware._stats import percentile

from .traffic import DemoRun

__all__ = ["render", "summary"]

_STATUS_STYLE = {
    HealthStatus.UNKNOWN: "dim",
    HealthStatus.HEALTHY: "green",
    HealthStatus.DEGRADED: "yellow",
    HealthStatus.UNHEALTHY: "red",
    HealthStatus.OFFLINE: "bold red",
}
_CIRCUIT_STYLE = {CircuitState.CLOSED: "green", CircuitState.HALF_OPEN: "yellow", CircuitState.OPEN: "bold red"}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _recent_share(run: DemoRun, window_s: float = 5.0) -> dict[str, float]:
    """Share of requests that reached each provider in the last ``window_s`` seconds (simulator's count)."""
    now = run.sim.elapsed()
    counts = {name: sum(1 for t in run.sim.stats(name).timestamps if t >= now - window_s) for name in run.sim.names}
    total = sum(counts.values())
    return {name: (n / total if total else 0.0) for name, n in counts.items()}


def render(run: DemoRun, alerts: list[Alert]) -> Group:
    """One frame of the live view."""
    mw, now = run.middleware, run.elapsed()
    table = Table(title=f"pi-builder demo — {now:5.1f}s / {run.scenario.duration_s:.0f}s", expand=True)
    for col in (
        "provider",
        "injected fault",
        "status",
        "circuit",
        "p50 ms",
        "p99 ms",
        "errors",
        "traffic (5 s)",
        "calls",
    ):
        table.add_column(col, justify="left" if col in ("provider", "injected fault") else "right")
    share = _recent_share(run)
    for pid in mw.providers:
        snap = mw.health(pid)
        bar = "█" * round(share.get(pid, 0.0) * 20)
        table.add_row(
            pid,
            run.scenario.fault_label(pid, run.sim.elapsed()),
            Text(snap.status.value, style=_STATUS_STYLE[snap.status]),
            Text(snap.circuit.value, style=_CIRCUIT_STYLE[snap.circuit]),
            _ms(snap.latency_p50_ms),
            _ms(snap.latency_p99_ms),
            f"{snap.error_rate:.0%}",
            f"{bar:<20} {share.get(pid, 0.0):4.0%}",
            str(run.sim.stats(pid).total),
        )
    by_fw: Counter[tuple[str, bool]] = Counter((r.framework, r.ok) for r in run.results)
    counts = Text(
        "  ".join(f"{fw}: {by_fw[(fw, True)]} ok / {by_fw[(fw, False)]} failed" for fw in ("litellm", "langchain"))
    )
    alert_lines = Text(
        "\n".join(f"{a.at - alerts[0].at:6.1f}s  {a.kind.value:<16} {a.message}" for a in alerts[-8:])
        or "no alerts yet"
    )
    return Group(table, counts, Panel(alert_lines, title="alerts (newest last)"))


def summary(run: DemoRun, alerts: list[Alert]) -> Table:
    """The closing table: success and latency per framework, and what each provider went through."""
    table = Table(title="summary", expand=True)
    for col in ("", "requests", "success", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right" if col else "left")
    for fw in ("litellm", "langchain"):
        rows = [r for r in run.results if r.framework == fw]
        lat = sorted(r.latency_s * 1000 for r in rows if r.ok)
        ok = sum(1 for r in rows if r.ok)
        table.add_row(
            fw,
            str(len(rows)),
            f"{ok / len(rows):.1%}" if rows else "-",
            _ms(percentile(lat, 50) if lat else None),
            _ms(percentile(lat, 99) if lat else None),
        )
    export: dict[str, Any] = run.middleware.failover.stats()["providers"]
    table.add_section()
    table.add_row("provider", "attempts", "during faults", "trips", "alerts")
    for pid in run.middleware.providers:
        records = run.sim.stats(pid).records
        in_fault = sum(1 for r in records if run.scenario.fault_label(pid, r.at) != "ok")
        table.add_row(
            pid,
            str(len(records)),
            str(in_fault),
            str(export[pid]["trips"]),
            str(sum(1 for a in alerts if a.provider_id == pid)),
        )
    return table
