"""What the benchmarks share: timing loops, warmed middlewares, and the phased outage runs and their tables.

Imported by the ``bench_*.py`` scripts, each still one command (``python benchmarks/bench_x.py``: the
script's directory is on ``sys.path``). Imports ``pi_builder_middleware`` only inside functions, so
``bench_telemetry.py --base REV`` can run on an older checkout of the package.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI
    from pi_builder_middleware.testing import Simulator

    from pi_builder_middleware import Middleware, Provider

__all__ = [
    "Phases",
    "Result",
    "aper_op_us",
    "cpu_us",
    "outage_table",
    "pct",
    "per_op_us",
    "random_providers",
    "run_phases",
    "warm",
    "with_outage",
]


def per_op_us(fn: Callable[[], object], n: int, repeats: int) -> float:
    """Median over ``repeats`` blocks of ``n`` calls, wall-clock µs per call."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


async def aper_op_us(fn: Callable[[], Awaitable[object]], n: int, repeats: int) -> float:
    """Async :func:`per_op_us`: median over ``repeats`` blocks of ``n`` awaited calls, µs per call."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            await fn()
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


def cpu_us(fn: Callable[[], object], n: int, repeats: int, *, warmup: int = 0) -> float:
    """Minimum over ``repeats`` blocks of ``n`` calls (after ``warmup`` calls), CPU µs per call.

    CPU time (``time.process_time``), least disturbed block: on a shared machine wall-clock figures
    move far more than the differences measured.
    """
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - start) / n * 1e6)
    return best


def warm(mw: Middleware, rng: random.Random, outcomes: int = 20, *, ttft: bool = True) -> Middleware:
    """``mw`` with ``outcomes`` successes recorded per provider, so strategies take their full path."""
    from pi_builder_middleware import Outcome

    for p in list(mw.providers.values()):
        for _ in range(outcomes):
            latency = rng.uniform(0.05, 2.0)
            ttft_s = rng.uniform(0.01, 0.3) if ttft else None
            mw.record(Outcome(p.id, True, latency, ttft_s=ttft_s, input_tokens=100, output_tokens=50))
    return mw


# -- phased outage runs (bench_langchain, bench_agent) ----------------------------------------------
@dataclass
class Phases:
    """Healthy, outage and recovered phases of one run, in seconds since its start."""

    healthy_s: float
    outage_s: float
    recovered_s: float
    start: float = 0.0

    @property
    def total_s(self) -> float:
        return self.healthy_s + self.outage_s + self.recovered_s

    def phase(self, now: float) -> str:
        t = now - self.start
        if t < self.healthy_s:
            return "healthy"
        return "outage" if t < self.healthy_s + self.outage_s else "recovered"


@dataclass
class Result:
    """One contender's run: latency and who served, per phase; errors; attempts sent to the dead provider."""

    name: str
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"healthy": [], "outage": [], "recovered": []})
    served_by: dict[str, list[str]] = field(default_factory=lambda: {"healthy": [], "outage": [], "recovered": []})
    errors: int = 0
    dead_attempts: int = 0


def run_phases(name: str, call: Callable[[str], str], phases: Phases) -> Result:
    """Call ``call(phase)`` one call after another through the phases; it returns who served."""
    result = Result(name)
    phases.start = time.perf_counter()
    while (now := time.perf_counter()) - phases.start < phases.total_s:
        phase = phases.phase(now)
        try:
            served = call(phase)
        except Exception:
            served = "error"
            result.errors += 1
        result.latencies[phase].append(time.perf_counter() - now)
        result.served_by[phase].append(served)
    return result


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (seconds) in ms; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def outage_table(
    title: str, columns: list[str], results: list[Result], cells: Callable[[Result], list[object]], unit: str, verb: str
) -> str:
    """A markdown table of phased runs, a row per result: ``columns`` with ``cells(result)``, then the latency
    of every call and of the outage's (p50 / p99) and the share of recovered calls ``a`` served (``unit``:
    what a call is called, ``verb``: how it was served)."""
    titles = [*columns, f"p50 / p99 ms, all {unit}", "p50 / p99 ms, outage", f"recovered {unit} {verb} by `a`"]
    lines = [f"### {title}", "", "| " + " | ".join(titles) + " |", "|---" * len(titles) + "|"]
    for r in results:
        every = [x for xs in r.latencies.values() for x in xs]
        outage = r.latencies["outage"]
        recovered = r.served_by["recovered"]
        share = f"{recovered.count('a') / len(recovered):.0%}" if recovered else "n/a"
        latency = [
            f"{pct(every, 0.5):.1f} / {pct(every, 0.99):.1f}",
            f"{pct(outage, 0.5):.1f} / {pct(outage, 0.99):.1f}",
            share,
        ]
        lines.append("| " + " | ".join(map(str, [*cells(r), *latency])) + " |")
    return "\n".join(lines)


def random_providers(n: int, rng: random.Random, *, tools_on_odd: bool = False) -> list[Provider]:
    """``p0`` .. ``p<n-1>`` with random costs and quality (and the ``tools`` capability on odd ones)."""
    from pi_builder_middleware import Provider

    return [
        Provider(
            id=f"p{i}",
            cost_per_1k_input=rng.uniform(0.0001, 0.01),
            cost_per_1k_output=rng.uniform(0.0001, 0.03),
            quality=rng.random(),
            capabilities={"tools"} if tools_on_odd and i % 2 else set(),
        )
        for i in range(n)
    ]


def with_outage(sim: Any, provider: str, call: Callable[[], str]) -> Callable[[str], str]:
    """``call`` (for :func:`run_phases`) behind a switch that takes ``provider`` of the simulator ``sim`` down
    when the outage phase starts and up again when it ends."""
    down = [False]

    def switched(phase: str) -> str:
        if (phase == "outage") != down[0]:
            down[0] = phase == "outage"
            (sim.down if down[0] else sim.up)(provider)
        return call()

    return switched


@contextmanager
def simulated_chats() -> Iterator[tuple[Simulator, Callable[[str], ChatOpenAI]]]:
    """The provider simulator serving ``a`` and ``b`` (30 ms lognormal latency, seed 3), and ``chat(name)``:
    a new ``ChatOpenAI`` (no retries, 5 s timeout) on that provider."""
    from langchain_openai import ChatOpenAI
    from pi_builder_middleware.testing import Behaviour, Latency, SimProvider, Simulator

    behaviour = Behaviour(latency=Latency.lognormal(30, 0.25, max_ms=200))
    with Simulator(
        [SimProvider(name="a", behaviour=behaviour), SimProvider(name="b", behaviour=behaviour)], seed=3
    ) as sim:

        def chat(name: str) -> ChatOpenAI:
            return ChatOpenAI(
                base_url=sim.base_url(name),
                api_key="sk-fake",
                model="sim",  # type: ignore[arg-type]
                max_retries=0,
                timeout=5,
            )

        yield sim, chat
