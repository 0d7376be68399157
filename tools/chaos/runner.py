"""Running contenders: each against a fresh simulator whose fault schedule starts with its own load.

Runs are sequential (one event loop for the whole bench, so LiteLLM's and httpx's loop-bound clients
stay valid); the simulator runs in a separate worker process (:mod:`.simproc`). A contender that cannot
start or breaks outside a request (an adapter or framework missing, a setup error) is reported as skipped
with the reason; the other runs go on. Failures of single requests are results, not errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .contenders import ContenderSpec
from .load import CallResult, LoadClock, drive, plan_requests
from .metrics import ContenderMetrics, compute_metrics, trouble_windows
from .scenario import ChaosScenario
from .simproc import SimulatorProcess

__all__ = ["BenchResult", "Progress", "ScenarioResult", "machine_info", "run_bench", "run_contender"]


class Progress(Protocol):
    """What the runner reports while it works (the CLI draws a progress bar from it)."""

    def run_started(self, scenario: str, contender: str, requests: int) -> None: ...
    def request_done(self, result: CallResult) -> None: ...
    def run_finished(self, scenario: str, contender: str, metrics: ContenderMetrics | None) -> None: ...


class _Silent:
    def run_started(self, scenario: str, contender: str, requests: int) -> None:
        pass

    def request_done(self, result: CallResult) -> None:
        pass

    def run_finished(self, scenario: str, contender: str, metrics: ContenderMetrics | None) -> None:
        pass


@dataclass
class ScenarioResult:
    """Every contender's metrics for one scenario."""

    scenario: ChaosScenario
    metrics: list[ContenderMetrics] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    settings: dict[str, dict[str, object]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: scenario definition, metrics, contender settings, skips."""
        troubles = trouble_windows(self.scenario)
        return {
            "scenario": self.scenario.model_dump(mode="json"),
            "trouble_windows": {n: [[w.start, w.end] for w in ws] for n, ws in troubles.items()},
            "contenders": [
                {
                    **dataclasses.asdict(m),
                    "label": self.labels.get(m.contender, m.contender),
                    "settings": self.settings.get(m.contender, {}),
                }
                for m in self.metrics
            ],
            "skipped": self.skipped,
        }


@dataclass
class BenchResult:
    """A whole bench: per scenario results, the machine, timings and the command line."""

    scenarios: list[ScenarioResult]
    machine: dict[str, object]
    command: str
    started_at: str
    total_s: float
    quick: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "command": self.command,
            "started_at": self.started_at,
            "total_s": round(self.total_s, 1),
            "quick": self.quick,
            "machine": self.machine,
            "scenarios": [s.to_dict() for s in self.scenarios],
        }


def machine_info() -> dict[str, object]:
    """CPU count, Python and framework versions, platform, load average (other work skews latencies)."""
    from importlib import metadata

    versions: dict[str, str] = {}
    for dist in ("litellm", "langchain-core", "langchain-openai", "openai", "aiohttp"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


async def run_contender(
    scenario: ChaosScenario, spec: ContenderSpec, sims: SimulatorProcess, progress: Progress | None = None
) -> tuple[ContenderMetrics, dict[str, object]]:
    """Run one contender against a fresh simulator in ``sims``; returns its metrics and the settings it used."""
    progress = progress or _Silent()
    clock = LoadClock()
    urls = await asyncio.to_thread(sims.start, scenario.sim_providers(), scenario.seed)
    try:
        contender = spec.build()
        await contender.start(scenario, urls, clock)
        try:
            plan = plan_requests(scenario)
            progress.run_started(scenario.name, spec.name, len(plan))
            await asyncio.to_thread(sims.go, clock.restart())
            began = time.monotonic()
            results = await drive(
                plan,
                contender.call,
                clock=clock,
                providers=scenario.provider_names,
                concurrency=scenario.load.concurrency,
                on_result=progress.request_done,
            )
            wall = time.monotonic() - began
        finally:
            await contender.stop()
        attempts = await asyncio.to_thread(sims.records)
        settings = contender.describe()
    finally:
        await asyncio.to_thread(sims.stop)
    return compute_metrics(spec.name, scenario, results, attempts, wall_s=wall), settings


async def run_scenario(
    scenario: ChaosScenario, specs: Sequence[ContenderSpec], sims: SimulatorProcess, progress: Progress | None = None
) -> ScenarioResult:
    """Every contender in turn on one scenario."""
    progress = progress or _Silent()
    result = ScenarioResult(scenario=scenario, labels={s.name: s.label for s in specs})
    for spec in specs:
        try:
            metrics, settings = await run_contender(scenario, spec, sims, progress)
        except ImportError as exc:
            result.skipped[spec.name] = f"cannot start: {type(exc).__name__}: {exc}"
            progress.run_finished(scenario.name, spec.name, None)
            continue
        except Exception as exc:  # one broken contender must not cost the rest of a long bench
            result.skipped[spec.name] = f"failed: {type(exc).__name__}: {exc}"
            progress.run_finished(scenario.name, spec.name, None)
            continue
        result.metrics.append(metrics)
        result.settings[spec.name] = settings
        progress.run_finished(scenario.name, spec.name, metrics)
    return result


def run_bench(
    scenarios: Sequence[ChaosScenario],
    specs: Sequence[ContenderSpec],
    *,
    command: str,
    progress: Progress | None = None,
    quick: bool = False,
) -> BenchResult:
    """Run every scenario with every contender (blocking; one event loop for the whole bench)."""
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_before = [round(v, 2) for v in os.getloadavg()]
    began = time.monotonic()

    async def main(sims: SimulatorProcess) -> list[ScenarioResult]:
        return [await run_scenario(s, specs, sims, progress) for s in scenarios]

    with SimulatorProcess() as sims:
        results = asyncio.run(main(sims))
    machine = {**machine_info(), "load_average_at_start": load_before}
    return BenchResult(
        scenarios=results,
        machine=machine,
        command=command,
        started_at=started_at,
        total_s=time.monotonic() - began,
        quick=quick,
    )
