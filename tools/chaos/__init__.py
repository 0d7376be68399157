"""Chaos benchmark: this project against LiteLLM's Router and LangChain's with_fallbacks under provider trouble.

Each scenario (``scenarios/*.toml``) describes simulated providers (real OpenAI-compatible HTTP on
127.0.0.1, prices, latency, a fault schedule), the request load and a seed. Every contender runs the
same request plan against a fresh simulator; the bench measures success rate, attempts wasted on
providers in trouble, latency and TTFT percentiles, cost, time to detect and to recover, and traffic per
provider over time. Run it with ``pi-builder bench``; use it from code::

    from pi_builder_middleware.tools.chaos import resolve_scenario, run_bench, select_contenders, write_report

    result = run_bench([resolve_scenario("outage")], select_contenders(None, quick=True), command="...")
    write_report(result, "out/")

Not imported by ``pi_builder_middleware``; LiteLLM, LangChain, rich and matplotlib load only when used.
"""

from __future__ import annotations

from .contenders import (
    DEFAULT_CONTENDERS,
    QUICK_CONTENDERS,
    Contender,
    ContenderSpec,
    contender_specs,
    select_contenders,
)
from .load import CallResult, PlannedRequest, Reply, plan_requests
from .metrics import ContenderMetrics, Window, WindowMetrics, compute_metrics, trouble_windows
from .report import write_report
from .runner import BenchResult, ScenarioResult, run_bench, run_contender
from .scenario import (
    BenchSettings,
    ChaosConfigError,
    ChaosProvider,
    ChaosScenario,
    LoadSpec,
    Objective,
    builtin_scenarios,
    load_chaos_scenario,
    load_chaos_scenario_file,
    resolve_scenario,
)
from .simproc import SimulatorProcess

__all__ = [
    "DEFAULT_CONTENDERS",
    "QUICK_CONTENDERS",
    "BenchResult",
    "BenchSettings",
    "CallResult",
    "ChaosConfigError",
    "ChaosProvider",
    "ChaosScenario",
    "Contender",
    "ContenderMetrics",
    "ContenderSpec",
    "LoadSpec",
    "Objective",
    "PlannedRequest",
    "Reply",
    "ScenarioResult",
    "SimulatorProcess",
    "Window",
    "WindowMetrics",
    "builtin_scenarios",
    "compute_metrics",
    "contender_specs",
    "load_chaos_scenario",
    "load_chaos_scenario_file",
    "plan_requests",
    "resolve_scenario",
    "run_bench",
    "run_contender",
    "select_contenders",
    "trouble_windows",
    "write_report",
]
