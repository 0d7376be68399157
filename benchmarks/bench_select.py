"""Decision speed at scale: the middleware's ``select()`` at 10 / 100 / 1,000 providers against LiteLLM's
own pick in the same run, ``record()``, and memory over 1 M outcomes.

1. ``select()`` per strategy, every provider warmed with data, two requests: a plain one and one
   naming its candidates (what the LiteLLM adapter sends). µs per call, median of blocks.
2. LiteLLM: ``await router.select("g", {})`` with ``routing_strategy="latency-based-routing"`` on the
   same number of deployments (warmed with mock calls) — LiteLLM's pick without a call.
3. ``record()`` of a success, µs per call.
4. Memory: traced allocations held by the middleware after 50 k and after 1 M outcomes on a
   ManualClock (10 providers, 100 outcomes per simulated second); flat means no growth with count.

Targets (issue "Routing that learns and forgets"): select <= 10 / 30 / 300 µs at 10 / 100 / 1,000.
Run: python benchmarks/bench_select.py [--quick]
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import argparse
import asyncio
import gc
import logging
import random
import tracemalloc
from typing import Any

from _common import aper_op_us, per_op_us, random_providers, warm

from pi_builder_middleware import ManualClock, Middleware, Outcome, Provider, RouteRequest

SIZES = (10, 100, 1000)
STRATEGIES = ("latency-optimal", "cost-optimal", "quality-optimal", "failover")
TARGET_US = {10: 10.0, 100: 30.0, 1000: 300.0}


def build(n: int, strategy: str) -> Middleware:
    rng = random.Random(1)
    providers = random_providers(n, rng)
    mw = Middleware(providers=providers, strategy=strategy, load_entrypoints=False, seed=1)
    return warm(mw, rng, 5, ttft=False)


def core_select(quick: bool) -> dict[tuple[int, str], tuple[float, float]]:
    out = {}
    for n in SIZES:
        calls = max(50, (2_000 if quick else 20_000) // n)
        for strategy in STRATEGIES:
            mw = build(n, strategy)
            named = RouteRequest(candidates=frozenset(mw.providers))
            plain = per_op_us(lambda mw=mw: mw.select(reserve=False), calls, 5)
            with_candidates = per_op_us(lambda mw=mw, r=named: mw.select(r, reserve=False), calls, 5)
            out[(n, strategy)] = (plain, with_candidates)
    return out


def model_list(n: int) -> list[dict[str, Any]]:
    return [
        {
            "model_name": "g",
            "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-fake", "mock_response": "hi"},
            "model_info": {"id": f"d{i}"},
        }
        for i in range(n)
    ]


async def litellm_pick(n: int, quick: bool) -> float:
    import litellm

    router = litellm.Router(model_list=model_list(n), num_retries=0, routing_strategy="latency-based-routing")
    for _ in range(min(3 * n, 300) if quick else 3 * n):  # latency data for the deployments
        await router.acompletion(model="g", messages=[{"role": "user", "content": "hi"}])
    await asyncio.sleep(0.2)
    picks = max(10, (200 if quick else 2_000) // n)
    return await aper_op_us(lambda: router.select("g", {}), picks, 5)


def record_us(quick: bool) -> float:
    mw = build(10, "latency-optimal")
    ok = Outcome("p0", True, 0.2, input_tokens=100, output_tokens=50)
    return per_op_us(lambda: mw.record(ok), 2_000 if quick else 20_000, 5)


def memory(quick: bool) -> tuple[int, int, int]:
    """Traced bytes after the first and the last block of outcomes, and how many outcomes in all."""
    clock = ManualClock()
    total = 100_000 if quick else 1_000_000
    checkpoint = 50_000  # past the point where every window is full (10 x max_samples = 20,480)
    gc.collect()
    tracemalloc.start()
    mw = Middleware(providers=[Provider(id=f"p{i}") for i in range(10)], load_entrypoints=False, clock=clock, seed=1)
    rng = random.Random(2)
    first = 0
    for i in range(total):
        pid = f"p{i % 10}"
        mw.record(Outcome(pid, rng.random() > 0.02, rng.uniform(0.05, 0.5)))
        if i % 100 == 99:
            clock.advance(1.0)
        if i + 1 == checkpoint:
            gc.collect()
            first = tracemalloc.get_traced_memory()[0]
    gc.collect()
    last = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return first, last, total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer iterations, 100 k outcomes for memory")
    args = parser.parse_args()
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    logging.getLogger("LiteLLM Router").setLevel(logging.ERROR)
    logging.getLogger("pi_builder_middleware").setLevel(logging.ERROR)  # the memory run raises alerts
    ours = core_select(args.quick)
    theirs = {n: asyncio.run(litellm_pick(n, args.quick)) for n in SIZES}
    print(
        f"{'providers':>9} {'strategy':>16} {'select µs':>10} {'w/ candidates µs':>17} {'target µs':>10} "
        f"{'LiteLLM pick µs':>16} {'ours/LiteLLM':>13}"
    )
    for (n, strategy), (plain, named) in ours.items():
        print(
            f"{n:>9} {strategy:>16} {plain:>10.1f} {named:>17.1f} {TARGET_US[n]:>10.0f} {theirs[n]:>16.1f} "
            f"{plain / theirs[n]:>13.3f}"
        )
    print(f"record(): {record_us(args.quick):.1f} µs per outcome")
    first, last, total = memory(args.quick)
    print(
        f"memory: {first / 1e6:.2f} MB after 50,000 outcomes, {last / 1e6:.2f} MB after {total:,} "
        f"(ratio {last / first:.2f})"
    )


if __name__ == "__main__":
    main()
