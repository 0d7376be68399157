"""The report folder: ``report.md`` (tables, targets, plots), ``metrics.json`` (raw), PNG plots."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pi_builder_middleware.testing import Behaviour

from .metrics import ContenderMetrics, WindowMetrics, trouble_windows
from .runner import BenchResult, ScenarioResult
from .scenario import Objective, load_chaos_scenario

__all__ = [
    "COLUMNS",
    "Target",
    "read_metrics",
    "render_markdown",
    "scenario_section",
    "scenario_sections",
    "scenario_table",
    "targets",
    "traffic_share_table",
    "write_report",
]

COLUMNS = (
    "contender",
    "success",
    "wasted",
    "attempts",
    "failed att.",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "TTFT p50",
    "TTFT p95",
    "TTFT p99",
    "cost $",
    "detect s",
    "recover s",
    "back to share s",
)
"""Columns of every scenario table in report.md."""

METRIC_NOTES = """\
- **success**: share of the caller's requests that got an answer. **wasted**: attempts that reached a
  provider while it was in a fault window (from the simulator's log, by arrival time), of **attempts**
  in total; **failed att.**: attempts answered with an error (including base-rate errors outside windows).
- **p50/p95/p99 ms**, **TTFT**: latency (and time to first token, streams) of successful requests, from
  the moment the caller scheduled them.
- **cost $**: scenario prices times the usage reported in successful responses.
- **detect s**: mean over fault windows of the time from the window's start until the contender
  stopped sending to that provider (no attempt for the scenario's `quiet_s`); `never` counts windows
  where it did not stop. **recover s**: mean time from a window's end to the first successful request
  at that provider; `never` counts windows after which it got none before the run ended (a contender
  that prefers another provider may have had no reason to go back). **back to share s**: mean time from
  a window's end until the provider carries its share of attempts again: at least 80 % (the scenario's
  `share_fraction`) of the share it had in the 2 s (`share_lookback_s`) before the window, over one
  bucket; `never` counts windows after which it did not; windows the contender had not used the
  provider before are not counted.
- **Traffic share**: each provider's part of all attempts and, in brackets, of the successful answers.
"""


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _timing(mean: float | None, missing: int) -> str:
    text = "–" if mean is None else f"{mean:.2f}"
    return f"{text} ({missing} never)" if missing else text


def _row(m: ContenderMetrics) -> list[str]:
    return [
        f"`{m.contender}`",
        f"{m.success_rate * 100:.1f} %",
        str(m.wasted_attempts),
        str(m.attempts),
        str(m.failed_attempts),
        _num(m.latency_p50_ms),
        _num(m.latency_p95_ms),
        _num(m.latency_p99_ms),
        _num(m.ttft_p50_ms),
        _num(m.ttft_p95_ms),
        _num(m.ttft_p99_ms),
        f"{m.cost:.4f}",
        _timing(m.detect_mean_s, m.undetected),
        _timing(m.recover_mean_s, m.unrecovered),
        _timing(m.share_return_mean_s, m.share_unreturned),
    ]


def scenario_table(result: ScenarioResult) -> str:
    """The Markdown table of one scenario: a row per contender, :data:`COLUMNS` as columns."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_row(m)) + " |" for m in result.metrics]
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    """One of the project's targets for one of its contenders in one scenario."""

    contender: str
    name: str
    met: bool | None
    detail: str


def _is_baseline(name: str) -> bool:
    return name.startswith(("litellm-", "langchain-"))


def targets(result: ScenarioResult) -> list[Target]:
    """The project's targets, checked for each ``pbm-*`` contender.

    Success rate >= every baseline (LiteLLM and LangChain contenders); wasted attempts (sent into fault
    windows) <= 1/3 of the best (lowest) LiteLLM contender's; p99 <= the best (lowest) LiteLLM p99; on a
    cost scenario, cost within 5 % of the oracle's. ``met`` is None when there is nothing to compare with.
    """
    by_name = {m.contender: m for m in result.metrics}
    baselines = [m for m in result.metrics if _is_baseline(m.contender)]
    litellm = [m for m in result.metrics if m.contender.startswith("litellm-")]
    oracle = by_name.get("oracle")
    out: list[Target] = []

    def met(m: ContenderMetrics, name: str, ok: bool, detail: str) -> None:
        out.append(Target(m.contender, name, ok, detail))

    for m in result.metrics:
        if not m.contender.startswith("pbm-"):
            continue
        if baselines:
            best = max(baselines, key=lambda b: b.success_rate)
            met(
                m,
                "success >= every baseline",
                m.success_rate >= best.success_rate,
                f"{m.success_rate * 100:.1f} % vs {best.success_rate * 100:.1f} % ({best.contender})",
            )
        if litellm:
            least = min(litellm, key=lambda b: b.wasted_attempts)
            met(
                m,
                "wasted <= 1/3 of LiteLLM",
                m.wasted_attempts * 3 <= least.wasted_attempts,
                f"{m.wasted_attempts} vs {least.wasted_attempts} ({least.contender})",
            )
            p99s = [b for b in litellm if b.latency_p99_ms is not None]
            if p99s and m.latency_p99_ms is not None:
                fastest = min(p99s, key=lambda b: b.latency_p99_ms or 0.0)
                assert fastest.latency_p99_ms is not None
                met(
                    m,
                    "p99 <= LiteLLM",
                    m.latency_p99_ms <= fastest.latency_p99_ms,
                    f"{m.latency_p99_ms:,.0f} vs {fastest.latency_p99_ms:,.0f} ms ({fastest.contender})",
                )
        if result.scenario.bench.objective is Objective.COST and oracle is not None and oracle.cost > 0:
            ratio = m.cost / oracle.cost
            met(
                m,
                "cost within 5 % of oracle",
                ratio <= 1.05,
                f"{m.cost:.4f} vs {oracle.cost:.4f} $ ({(ratio - 1) * 100:+.1f} %)",
            )
    return out


def _targets_table(items: list[Target]) -> str:
    if not items:
        return "_No targets to check (no pi-builder contender or no baseline ran)._"
    names = list(dict.fromkeys(t.name for t in items))
    rows: dict[str, dict[str, Target]] = {}
    for t in items:
        rows.setdefault(t.contender, {})[t.name] = t
    lines = ["| contender | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for contender, cells in rows.items():
        text = []
        for name in names:
            cell = cells.get(name)
            if cell is None:
                text.append("–")
                continue
            mark = "–" if cell.met is None else ("✅" if cell.met else "❌")
            text.append(f"{mark} {cell.detail}")
        lines.append(f"| `{contender}` | " + " | ".join(text) + " |")
    return "\n".join(lines)


def _limits(b: Behaviour) -> str:
    parts = []
    if b.max_concurrent is not None:
        parts.append(f"{b.max_concurrent} in flight (429 beyond)")
    if b.cold_start is not None:
        parts.append(f"first {b.cold_start.requests} +{b.cold_start.extra_ms:g} ms")
    return ", ".join(parts) or "–"


def _providers_table(result: ScenarioResult) -> str:
    troubles = trouble_windows(result.scenario)
    lines = [
        "| provider | $ / 1k in | $ / 1k out | latency p50 | TTFT p50 | base errors | limits | in trouble (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in result.scenario.providers:
        b = p.behaviour
        ttft = (b.ttft or b.latency).median_ms
        spans = ", ".join(f"{w.start:g}–{w.end:g}" for w in troubles[p.name]) or "never"
        lines.append(
            f"| {p.name} | {p.cost_per_1k_input:g} | {p.cost_per_1k_output:g} | {b.latency.median_ms:g} ms | "
            f"{ttft:g} ms | {b.error_rate * 100:g} % | {_limits(p.behaviour)} | {spans} |"
        )
    return "\n".join(lines)


def _pct(part: int, whole: int) -> str:
    return f"{part / whole * 100:.0f} %" if whole else "–"


def traffic_share_table(result: ScenarioResult) -> str:
    """Per contender, each provider's share of attempts (and of successful answers, in brackets)."""
    names = result.scenario.provider_names
    lines = ["| contender | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for m in result.metrics:
        attempts = {n: sum(m.attempts_by_provider.get(n, ())) for n in names}
        served = {n: sum(m.served_by_provider.get(n, ())) for n in names}
        total_attempts, total_served = sum(attempts.values()), sum(served.values())
        cells = [f"{_pct(attempts[n], total_attempts)} ({_pct(served[n], total_served)})" for n in names]
        lines.append(f"| `{m.contender}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scenario_section(result: ScenarioResult, plots: dict[str, str], *, level: int = 2, link_prefix: str = "") -> str:
    """The Markdown section of one scenario: description, providers, load, table, targets, plots."""
    s = result.scenario
    load = s.load
    head = "#" * level
    parts = [
        f"{head} {s.name}",
        s.description,
        f"Load: {load.duration_s:g} s at {load.rate_rps:g} req/s ({load.arrival}), {load.stream_share * 100:g} % "
        f"streamed, {load.input_tokens} tokens in / {load.output_tokens} out, timeout {load.timeout_s:g} s; "
        f"cooldown/ejection {s.bench.cooldown_s:g} s; seed {s.seed}.",
        _providers_table(result),
        scenario_table(result),
        f"{head}# Traffic share ({s.name})",
        traffic_share_table(result),
        f"{head}# Targets ({s.name})",
        _targets_table(targets(result)),
    ]
    if plots:
        parts.append(" ".join(f"![{s.name} {kind}]({link_prefix}{name})" for kind, name in plots.items()))
    if result.skipped:
        parts.append("Skipped: " + "; ".join(f"`{n}`: {why}" for n, why in result.skipped.items()))
    return "\n\n".join(parts)


def render_markdown(result: BenchResult, plots: dict[str, dict[str, str]]) -> str:
    """The whole report.md."""
    m = result.machine
    versions = ", ".join(f"{k} {v}" for k, v in dict(m.get("versions", {})).items())  # type: ignore[call-overload]
    parts = [
        "# Chaos benchmark report",
        f"Command: `{result.command}`  \nStarted {result.started_at}, took {result.total_s:.0f} s"
        f"{' (quick mode)' if result.quick else ''}.  \nMachine: {m.get('nproc')} CPUs, Python {m.get('python')}, "
        f"{m.get('platform')}; {versions}.  \nLoad average (1/5/15 min) at start {m.get('load_average_at_start')}, "
        f"at end {m.get('load_average')}: other work on the machine stretches latencies; attempt counts do not "
        "depend on it.",
        METRIC_NOTES,
    ]
    parts += [scenario_section(s, plots.get(s.scenario.name, {})) for s in result.scenarios]
    return "\n\n".join(parts) + "\n"


def scenario_sections(result: BenchResult, *, level: int = 3, link_prefix: str = "") -> str:
    """Every scenario's section at heading ``level``, plot links prefixed (for embedding, e.g. BENCHMARKS.md)."""
    return "\n\n".join(
        scenario_section(
            s,
            {kind: f"{s.scenario.name}-{kind}.png" for kind in ("latency", "traffic", "success")} if s.metrics else {},
            level=level,
            link_prefix=link_prefix,
        )
        for s in result.scenarios
    )


def read_metrics(path: str | Path) -> BenchResult:
    """Rebuild a :class:`BenchResult` from a ``metrics.json`` (to re-render a report or embed its tables)."""
    data = json.loads(Path(path).read_text())
    scenarios: list[ScenarioResult] = []
    for entry in data["scenarios"]:
        result = ScenarioResult(scenario=load_chaos_scenario(entry["scenario"]), skipped=dict(entry["skipped"]))
        for raw in entry["contenders"]:
            fields = {k: v for k, v in raw.items() if k not in ("label", "settings")}
            fields["windows"] = [WindowMetrics(**w) for w in fields.get("windows", [])]
            result.metrics.append(ContenderMetrics(**fields))
            result.labels[raw["contender"]] = raw.get("label", raw["contender"])
            result.settings[raw["contender"]] = raw.get("settings", {})
        scenarios.append(result)
    return BenchResult(
        scenarios=scenarios,
        machine=data["machine"],
        command=data["command"],
        started_at=data["started_at"],
        total_s=data["total_s"],
        quick=data.get("quick", False),
    )


def write_report(result: BenchResult, folder: str | Path) -> Path:
    """Write report.md, metrics.json and the plots into ``folder`` (created); returns the report.md path."""
    from .plots import plot_scenario

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    plots = {s.scenario.name: plot_scenario(s.scenario, s.metrics, out) for s in result.scenarios}
    (out / "metrics.json").write_text(json.dumps(result.to_dict(), indent=1, sort_keys=False) + "\n")
    report = out / "report.md"
    report.write_text(render_markdown(result, plots))
    return report
