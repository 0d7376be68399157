"""``pi-builder demo``: live traffic through a real LiteLLM Router and a LangChain Runnable that share one
Middleware, against simulated providers on 127.0.0.1 that go down, rate-limit and brown out.

Needs the ``all`` extra (litellm, langchain, aiohttp, rich). Not imported by ``pi_builder_middleware``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .scenario import DemoScenario

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="pi-builder demo", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds of traffic (default 60, or the scenario's own length)"
    )
    parser.add_argument(
        "--scenario",
        default=None,
        help="a chaos scenario (built-in name such as 'outage', or a TOML path) instead of the embedded one",
    )
    parser.add_argument("--rate", type=float, default=None, help="requests per second (default 10)")
    parser.add_argument("--no-live", action="store_true", help="print a snapshot every few seconds instead")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="N",
        help="serve Prometheus /metrics on 127.0.0.1:N while the demo runs (needs the prometheus extra)",
    )
    args = parser.parse_args(argv)
    if (args.duration is not None and args.duration <= 0) or (args.rate is not None and args.rate <= 0):
        print("pi-builder demo: --duration and --rate must be > 0", file=sys.stderr)
        return 2
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        print("pi-builder demo: --metrics-port must be a port number 0-65535", file=sys.stderr)
        return 2
    from .scenario import default_scenario, from_chaos

    if args.scenario is None:
        scenario = default_scenario(args.duration or 60.0)
    else:
        try:
            scenario = from_chaos(args.scenario, args.duration)
        except (ValueError, OSError) as exc:  # ChaosConfigError names the field
            print(f"pi-builder demo: bad --scenario: {exc}", file=sys.stderr)
            return 2
    if args.rate is not None:
        scenario = dataclasses.replace(scenario, rate_per_s=args.rate)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    server = None
    if args.metrics_port is not None:
        from pi_builder_middleware.errors import ConfigError
        from pi_builder_middleware.telemetry import serve_metrics

        try:
            server = serve_metrics(args.metrics_port)
        except (ConfigError, OSError) as exc:
            print(f"pi-builder demo: cannot serve /metrics: {exc}", file=sys.stderr)
            return 2
        print(f"Prometheus metrics on http://127.0.0.1:{server.server_port}/metrics")
    try:
        return asyncio.run(_run(scenario, live=not args.no_live))
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


async def _run(scenario: DemoScenario, *, live: bool) -> int:
    import logging

    # alerts are shown in the view; the loggers get their levels back afterwards (an embedding program
    # or a test suite keeps its own logging)
    quiet = {"pi_builder_middleware": logging.ERROR, "LiteLLM": logging.CRITICAL, "LiteLLM Router": logging.CRITICAL}
    before = {name: logging.getLogger(name).level for name in quiet}
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)
    try:
        return await _show(scenario, live=live)
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


async def _show(scenario: DemoScenario, *, live: bool) -> int:
    from pi_builder_middleware.testing import Simulator
    from rich.console import Console
    from rich.live import Live

    from pi_builder_middleware import Alert

    from .traffic import DemoRun, build_middleware, preload, run_traffic
    from .view import render, summary

    console = Console() if Console().is_terminal else Console(width=150)
    alerts: list[Alert] = []
    console.print("loading litellm and langchain ...")
    preload()
    with Simulator.from_scenario(scenario.sim_scenario()) as sim:
        run = DemoRun(scenario=scenario, sim=sim, middleware=build_middleware(scenario))
        run.middleware.subscribe_alerts(alerts.append)
        traffic = asyncio.create_task(run_traffic(run))
        live = live and console.is_terminal
        if live:
            with Live(render(run, alerts), console=console, refresh_per_second=4) as view:
                while not traffic.done():
                    await asyncio.sleep(0.25)
                    view.update(render(run, alerts))
        else:
            last = -10.0
            while not traffic.done():
                await asyncio.sleep(0.25)
                if run.elapsed() - last >= 10:
                    last = run.elapsed()
                    console.print(render(run, alerts))
        await traffic
        if not live:
            console.print(render(run, alerts))
        console.print(summary(run, alerts))
    failed = sum(1 for r in run.results if not r.ok)
    console.print(f"{len(run.results)} requests, {failed} failed, {len(alerts)} alerts.")
    return 0
