"""The ``pi-builder`` command: ``bench`` (chaos benchmark), ``simulate`` (provider simulator), ``demo``.

::

    pi-builder bench [--scenario NAME|PATH ...] [--contenders NAME ...] [--quick] [--out DIR]
    pi-builder simulate --provider a:50:0.1 ...      # same flags as python -m pi_builder_middleware.testing
    pi-builder demo [...]

Exit codes: 0 done, 1 something failed while running (a missing extra, an I/O error), 2 bad arguments
or a bad scenario file (the message on stderr names the field), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pi_builder_middleware.tools.chaos import CallResult, ContenderMetrics

__all__ = ["build_parser", "main"]

QUICK_DURATION_S = 6.0
"""Seconds of traffic per contender in ``bench --quick`` (scenarios are compressed in time to this)."""
QUICK_SCENARIO = "outage"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(prog="pi-builder", description="pi-builder-middleware tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = sub.add_parser(
        "bench",
        help="chaos benchmark against LiteLLM and LangChain",
        description="Run chaos scenarios (simulated providers on 127.0.0.1 with scripted faults) against "
        "LiteLLM's Router, LangChain's with_fallbacks, this project through both adapters and a "
        "schedule-aware oracle; write report.md, metrics.json and PNG plots.",
    )
    bench.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME|PATH",
        help="built-in scenario name or TOML file (repeatable; default: every built-in, "
        f"or {QUICK_SCENARIO!r} with --quick)",
    )
    bench.add_argument(
        "--contenders",
        nargs="+",
        default=None,
        metavar="NAME",
        help="contenders to run (default: all but quality-optimal; 'all' for every one)",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help=f"CI mode: {QUICK_DURATION_S:g} s of traffic per contender, a subset of contenders",
    )
    bench.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="compress or stretch every scenario to S seconds of traffic",
    )
    bench.add_argument("--out", default=None, metavar="DIR", help="report folder (default: chaos-report-<time>)")
    bench.add_argument("--list", action="store_true", help="list scenarios and contenders, then exit")
    bench.add_argument("-v", "--verbose", action="store_true", help="show the middleware's warnings and alerts")
    sub.add_parser("simulate", help="run simulated providers (python -m pi_builder_middleware.testing)", add_help=False)
    sub.add_parser("demo", help="live demo with simulated providers", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "simulate":
        from pi_builder_middleware.testing.cli import main as simulate

        return simulate(args_list[1:])
    if args_list and args_list[0] == "demo":
        from pi_builder_middleware.tools.demo import main as demo

        return int(demo(args_list[1:]) or 0)
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command != "bench":
        parser.print_help()
        return 2
    return _bench(args, args_list)


def _error(message: str, code: int) -> int:
    print(f"pi-builder bench: error: {message}", file=sys.stderr)
    return code


def _bench(args: argparse.Namespace, argv: list[str]) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from pi_builder_middleware.tools.chaos import (
        ChaosConfigError,
        builtin_scenarios,
        contender_specs,
        resolve_scenario,
        run_bench,
        select_contenders,
        write_report,
    )

    if args.list:
        print("scenarios:", ", ".join(builtin_scenarios()))
        print("contenders:", ", ".join(contender_specs()))
        return 0
    if args.duration is not None and not args.duration > 0:
        return _error("--duration must be a number of seconds > 0", 2)
    try:
        names = args.scenario or ([QUICK_SCENARIO] if args.quick else list(builtin_scenarios()))
        scenarios = [resolve_scenario(name) for name in names]
        specs = select_contenders(args.contenders, quick=args.quick)
    except ChaosConfigError as exc:
        return _error(str(exc), 2)
    duration = args.duration if args.duration is not None else (QUICK_DURATION_S if args.quick else None)
    if duration is not None:
        scenarios = [s.scaled(min(duration, s.load.duration_s) if args.quick else duration) for s in scenarios]
    out = Path(args.out or f"chaos-report-{time.strftime('%Y%m%d-%H%M%S')}")
    if not args.verbose:
        logging.getLogger("pi_builder_middleware").setLevel(logging.ERROR)
    command = "pi-builder " + shlex.join(argv)
    try:
        with _RichProgress(len(scenarios) * len(specs)) as progress:
            result = run_bench(scenarios, specs, command=command, progress=progress, quick=args.quick)
        report = write_report(result, out)
    except KeyboardInterrupt:
        return _error("interrupted", 130)
    except ImportError as exc:
        return _error(f"{exc}; install the extras: pip install 'pi-builder-middleware[litellm,langchain,cli]'", 1)
    except OSError as exc:
        return _error(f"cannot write the report: {exc}", 1)
    skipped = [f"{s.scenario.name}/{name}: {why}" for s in result.scenarios for name, why in s.skipped.items()]
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    print(f"report: {report} ({result.total_s:.0f} s)")
    return 0


class _RichProgress:
    """The runner's progress callbacks drawn as rich progress bars (overall runs, current run's requests)."""

    def __init__(self, runs: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self._overall = self._progress.add_task("runs", total=runs)
        self._current: Any = None

    def __enter__(self) -> _RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def run_started(self, scenario: str, contender: str, requests: int) -> None:
        self._current = self._progress.add_task(f"{scenario} / {contender}", total=requests)

    def request_done(self, result: CallResult) -> None:
        if self._current is not None:
            self._progress.advance(self._current)

    def run_finished(self, scenario: str, contender: str, metrics: ContenderMetrics | None) -> None:
        if self._current is not None:
            summary = (
                "skipped"
                if metrics is None
                else (f"{metrics.success_rate * 100:.1f} % ok, {metrics.wasted_attempts} wasted")
            )
            self._progress.remove_task(self._current)
            self._progress.console.print(f"{scenario} / {contender}: {summary}")
            self._current = None
        self._progress.advance(self._overall)


if __name__ == "__main__":
    sys.exit(main())
