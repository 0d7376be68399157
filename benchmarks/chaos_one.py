"""One chaos contender on one scenario, with the requests behind its tail: what ``pi-builder bench`` does for a
single cell, plus the slowest requests and this project's hedging counters.

Run: python benchmarks/chaos_one.py SCENARIO CONTENDER [--duration S] [--top N]

e.g. ``python benchmarks/chaos_one.py heavy-tail pbm-langchain-hedge --duration 60``. Prints attempts,
p50/p99, attempts per one-second bucket, the ``--top`` slowest successful requests (index, streamed or not,
the provider that answered, latency and time to first token from the scheduled time) and, for this
project's LangChain contenders, ``stats()["hedging"]``. Needs the ``bench`` extra (as ``pi-builder bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import Any

from pi_builder_middleware.tools.chaos.contenders import ContenderSpec, contender_specs
from pi_builder_middleware.tools.chaos.load import CallResult
from pi_builder_middleware.tools.chaos.metrics import ContenderMetrics
from pi_builder_middleware.tools.chaos.runner import run_contender
from pi_builder_middleware.tools.chaos.scenario import resolve_scenario
from pi_builder_middleware.tools.chaos.simproc import SimulatorProcess


class _Collect:
    """The runner's progress callbacks, keeping every request's result."""

    def __init__(self) -> None:
        self.results: list[CallResult] = []

    def run_started(self, scenario: str, contender: str, requests: int) -> None:
        pass

    def request_done(self, result: CallResult) -> None:
        self.results.append(result)

    def run_finished(self, scenario: str, contender: str, metrics: ContenderMetrics | None) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario")
    parser.add_argument("contender")
    parser.add_argument("--duration", type=float, default=None, help="seconds of traffic (default: the scenario's)")
    parser.add_argument("--top", type=int, default=12, help="slowest requests to list")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    logging.getLogger("pi_builder_middleware").setLevel(logging.ERROR)  # alerts are expected in chaos
    scenario = resolve_scenario(args.scenario)
    if args.duration is not None:
        scenario = scenario.scaled(args.duration)
    spec = contender_specs()[args.contender]
    runnables: list[Any] = []  # what the contender ran, kept past its stop() (which lets go of it)

    def build() -> Any:
        contender = spec.build()
        stop = contender.stop

        async def keep_then_stop() -> None:
            runnables.append(getattr(contender, "runnable", None))
            await stop()

        contender.stop = keep_then_stop  # type: ignore[method-assign]
        return contender

    collect = _Collect()

    async def run() -> ContenderMetrics:
        with SimulatorProcess() as sims:
            metrics, _ = await run_contender(
                scenario, ContenderSpec(spec.name, spec.label, spec.family, build), sims, collect
            )
        return metrics

    m = asyncio.run(run())
    print(
        f"{m.contender} on {scenario.name}: {m.successes}/{m.requests} answered, {m.attempts} attempts "
        f"({m.wasted_attempts} wasted), p50 {m.latency_p50_ms or 0:.0f} ms, p99 {m.latency_p99_ms or 0:.0f} ms"
    )
    buckets = zip(*m.attempts_by_provider.values(), strict=True)
    print("attempts per second:", [sum(b) for b in buckets])
    print("by provider:", {name: sum(v) for name, v in m.attempts_by_provider.items()})
    slowest = sorted((r for r in collect.results if r.ok), key=lambda r: -r.latency_s)[: args.top]
    for r in slowest:
        ttft = "" if r.ttft_s is None else f"  first token {r.ttft_s * 1000:5.0f} ms"
        kind = "stream" if r.stream else "call  "
        print(f"  #{r.index:<5d} {kind} {r.provider or '?':8s} {r.latency_s * 1000:6.0f} ms{ttft}")
    middleware = getattr(runnables[0], "middleware", None) if runnables else None
    if middleware is not None:
        print("hedging:", middleware.stats().get("hedging"))


if __name__ == "__main__":
    main()
