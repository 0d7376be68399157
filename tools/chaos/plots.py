"""PNG plots of one scenario's results (matplotlib, Agg backend, imported only here)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .metrics import ContenderMetrics, trouble_windows
from .scenario import ChaosScenario

__all__ = ["plot_scenario"]

_DPI = 80


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _shade(ax: Any, scenario: ChaosScenario, colors: dict[str, Any], *, label: bool) -> None:
    for name, windows in trouble_windows(scenario).items():
        for i, w in enumerate(windows):
            ax.axvspan(
                w.start,
                w.end,
                color=colors[name],
                alpha=0.15,
                lw=0,
                label=f"{name} in trouble" if label and i == 0 else None,
            )


def _hatch(ax: Any, scenario: ChaosScenario) -> None:
    troubles = trouble_windows(scenario)
    for index, (name, windows) in enumerate(troubles.items()):
        for w in windows:
            ax.axvspan(w.start, w.end, facecolor="none", edgecolor="black", hatch="//", lw=0, alpha=0.3, zorder=5)
            y = (index + 0.5) / len(troubles)
            ax.text(
                (w.start + w.end) / 2,
                y,
                name,
                ha="center",
                va="center",
                fontsize=6,
                zorder=6,
                bbox={"facecolor": "white", "alpha": 0.6, "lw": 0, "pad": 1},
            )


def _colors(plt: Any, scenario: ChaosScenario) -> dict[str, Any]:
    palette = plt.get_cmap("tab10")
    return {name: palette(i % 10) for i, name in enumerate(scenario.provider_names)}


def _latency(plt: Any, scenario: ChaosScenario, metrics: list[ContenderMetrics], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 4.2))
    _shade(ax, scenario, _colors(plt, scenario), label=True)
    palette = plt.get_cmap("tab20")
    for i, m in enumerate(metrics):
        xs = [(k + 0.5) * m.bucket_s for k in range(len(m.latency_p95_by_bucket_ms))]
        ys = [math.nan if v is None else v for v in m.latency_p95_by_bucket_ms]
        ax.plot(xs, ys, marker=".", lw=1.4, color=palette(i % 20), label=m.contender)
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("p95 latency of successful requests (ms)")
    ax.set_title(f"{scenario.name}: latency over time (shaded: providers in trouble)")
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)


def _traffic(plt: Any, scenario: ChaosScenario, metrics: list[ContenderMetrics], path: Path) -> None:
    cols = 2 if len(metrics) > 1 else 1
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.6 * cols, 1.9 * rows + 0.6), sharex=True, sharey=True, squeeze=False
    )
    colors = _colors(plt, scenario)
    names = list(scenario.provider_names)
    for index, m in enumerate(metrics):
        ax = axes[index // cols][index % cols]
        buckets = len(next(iter(m.attempts_by_provider.values()), []))
        xs = [(k + 0.5) * m.bucket_s for k in range(buckets)]
        totals = [sum(m.attempts_by_provider[n][k] for n in names) for k in range(buckets)]
        shares = [
            [m.attempts_by_provider[n][k] / totals[k] if totals[k] else 0.0 for k in range(buckets)] for n in names
        ]
        ax.stackplot(xs, shares, colors=[colors[n] for n in names], alpha=0.85, labels=names, step="mid")
        _hatch(ax, scenario)
        ax.set_title(m.contender, fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    for index in range(len(metrics), rows * cols):
        axes[index // cols][index % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=7, ncol=len(names))
    fig.suptitle(
        f"{scenario.name}: share of attempts per provider (hatched: the named provider is in trouble)",
        fontsize=9,
        x=0.02,
        ha="left",
    )
    fig.supxlabel("seconds since the load started", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)


def _success(plt: Any, scenario: ChaosScenario, metrics: list[ContenderMetrics], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(metrics) + 1.2))
    names = [m.contender for m in metrics][::-1]
    rates = [m.success_rate * 100 for m in metrics][::-1]
    bars = ax.barh(names, rates, color=["#4c72b0" if not n.startswith("pbm") else "#55a868" for n in names])
    for bar, rate in zip(bars, rates, strict=True):
        ax.text(bar.get_width() + 0.3, bar.get_y() + bar.get_height() / 2, f"{rate:.1f} %", va="center", fontsize=7)
    ax.set_xlim(max(0.0, min(rates, default=0) - 10), 103)
    ax.set_xlabel("success rate of the caller's requests (%)")
    ax.set_title(f"{scenario.name}: success rate", fontsize=9)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)


def plot_scenario(scenario: ChaosScenario, metrics: list[ContenderMetrics], folder: Path) -> dict[str, str]:
    """Write ``<name>-latency.png``, ``<name>-traffic.png``, ``<name>-success.png``; returns kind -> file name."""
    plt = _pyplot()
    files = {kind: f"{scenario.name}-{kind}.png" for kind in ("latency", "traffic", "success")}
    if not metrics:
        return {}
    _latency(plt, scenario, metrics, folder / files["latency"])
    _traffic(plt, scenario, metrics, folder / files["traffic"])
    _success(plt, scenario, metrics, folder / files["success"])
    return files
