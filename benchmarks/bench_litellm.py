"""Cost of the LiteLLM adapter, measured against LiteLLM itself (no network: ``mock_response``).

1. Overhead: ``Router.acompletion`` without and with ``install(...)`` on the same router, in
   rotating blocks within one run; reported as the median of the per-round ratios (target <= 1.03).
   Every candidate mode: ``install(candidates="auto")`` (the default: the group minus cooldowns where that
   equals LiteLLM's healthy list, as here), ``"healthy"`` (LiteLLM's healthy list on every pick, one extra
   LiteLLM selection) and ``"group"``. A second plain block per round ("plain A/A") shows the noise floor:
   its ratio to the first plain block would be 1.000 on a quiet machine.
2. Decision time: ``await router.select(group, {})`` (a pick without a call) with LiteLLM's built-in
   ``latency-based-routing`` vs with our strategy installed (each mode), at 10 and 100 deployments,
   all warmed with latency data; plus the middleware's own ``select()`` for reference.

Run: python benchmarks/bench_litellm.py [--quick]
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import argparse
import asyncio
import gc
import logging
import random
import statistics
import time
from collections import Counter
from typing import Any

import litellm
from _common import aper_op_us
from pi_builder_middleware.adapters.litellm import install

from pi_builder_middleware import RouteRequest

MESSAGES = [{"role": "user", "content": "Say hello."}]


def model_list(n: int) -> list[dict[str, Any]]:
    return [
        {
            "model_name": "g",
            "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-fake", "mock_response": f"hi from {i}"},
            "model_info": {"id": f"d{i}"},
        }
        for i in range(n)
    ]


async def _calls(router: Any, n: int) -> tuple[float, float]:
    """Median wall-clock and median CPU µs of ``n`` calls.

    Medians per call resist the spikes of a shared machine; CPU time (this process, all threads) is
    what the calls cost regardless of other processes competing for the cores.
    """
    wall, cpu = time.perf_counter, time.process_time
    walls, cpus = [], []
    for _ in range(n):
        w, c = wall(), cpu()
        await router.acompletion(model="g", messages=MESSAGES)
        cpus.append(cpu() - c)
        walls.append(wall() - w)
    return statistics.median(walls) * 1e6, statistics.median(cpus) * 1e6


MODES = ("auto", "healthy", "group")  # install(candidates=...)
CONTROL = "plain A/A"


async def overhead(blocks: int, calls: int) -> dict[str, dict[str, float]]:
    """µs per Router.acompletion plain and installed (each candidates mode), in shuffled blocks on one router.

    A round has one block per variant, in a seeded random order (a fixed rotation would always put the same
    variant after the same neighbour, whose leftover background logging then lands in it); before each block
    the previous one's background work is drained (short sleep + gc). Each block's figure is its median call.
    An installed block's ratio is taken against the mean of the round's two plain blocks; "plain A/A" is the
    ratio of the second plain block to the first, the noise floor of one-block references. Reported: the
    median over rounds, its interquartile range, and the ratio of the summed block medians.
    LiteLLM's success logging runs in background tasks on the same loop, so its cost (ours included) lands
    inside the measured calls.
    """
    router = litellm.Router(model_list=model_list(3), num_retries=0)
    for _ in range(200):  # warm-up: imports, clients, LiteLLM's first-call callback set-up
        await router.acompletion(model="g", messages=MESSAGES)
    for mode in MODES:
        handle = install(router, strategy="latency-optimal", candidates=mode)
        for _ in range(100):
            await router.acompletion(model="g", messages=MESSAGES)
        handle.uninstall()
    variants = ("plain", CONTROL, *MODES)
    compared = (CONTROL, *MODES)
    times: dict[str, dict[str, list[float]]] = {v: {"wall": [], "cpu": []} for v in variants}
    ratios: dict[str, dict[str, list[float]]] = {m: {"wall": [], "cpu": []} for m in compared}
    picks: Counter[str] = Counter()  # how the auto blocks' picks were made
    order = random.Random(20261126)
    for _ in range(blocks):
        measured: dict[str, tuple[float, float]] = {}
        for variant in order.sample(variants, len(variants)):
            await asyncio.sleep(0.03)  # let the previous block's background logging finish
            gc.collect()
            if variant in ("plain", CONTROL):
                measured[variant] = await _calls(router, calls)
            else:
                handle = install(router, strategy="latency-optimal", candidates=variant)
                measured[variant] = await _calls(router, calls)
                await asyncio.sleep(0.03)  # our recording of the block's last calls belongs to this block
                handle.uninstall()
                if variant == "auto":
                    picks.update({k: v for k, v in handle.stats().items() if k.startswith(("picks_", "auto_"))})
        for variant in variants:
            times[variant]["wall"].append(measured[variant][0])
            times[variant]["cpu"].append(measured[variant][1])
        for i, k in enumerate(("wall", "cpu")):
            first, second = measured["plain"][i], measured[CONTROL][i]
            ratios[CONTROL][k].append(second / first)
            for mode in MODES:
                ratios[mode][k].append(measured[mode][i] / ((first + second) / 2))
    out: dict[str, dict[str, float]] = {}
    for variant in variants:
        out[variant] = {f"{k}_us": statistics.median(v) for k, v in times[variant].items()}
    for mode in compared:
        for k, v in ratios[mode].items():
            out[mode][f"{k}_ratio"] = statistics.median(v)
            q1, _, q3 = statistics.quantiles(v, n=4)
            out[mode][f"{k}_ratio_q1"], out[mode][f"{k}_ratio_q3"] = q1, q3
            reference = (
                times["plain"][k]
                if mode == CONTROL
                else [(a + b) / 2 for a, b in zip(times["plain"][k], times[CONTROL][k], strict=True)]
            )
            out[mode][f"{k}_ratio_total"] = sum(times[mode][k]) / sum(reference)
    print(f"install(auto) picks: {dict(sorted(picks.items()))}")
    return out


async def own_time(calls: int) -> dict[str, float]:
    """Time spent in our own code per call (install(candidates="auto")): the pick and the outcome recording.

    The strategy's pick and the callback's success hook are timed through instance-level wrappers (LiteLLM
    looks both up on the objects at call time). Far less noisy than the end-to-end ratio; it leaves out
    LiteLLM's own dispatch to one more callback and what a custom strategy saves LiteLLM (its own pick).
    """
    router = litellm.Router(model_list=model_list(3), num_retries=0)
    handle = install(router, strategy="latency-optimal")
    spent = {"pick": 0.0, "record": 0.0}
    strategy, callback = handle.strategy, handle.callback
    assert strategy is not None
    pick, record = strategy.async_get_available_deployment, callback.async_log_success_event

    async def timed_pick(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await pick(*args, **kwargs)
        finally:
            spent["pick"] += time.perf_counter() - start

    async def timed_record(*args: Any, **kwargs: Any) -> None:
        start = time.perf_counter()
        try:
            await record(*args, **kwargs)
        finally:
            spent["record"] += time.perf_counter() - start

    strategy.async_get_available_deployment = timed_pick  # type: ignore[method-assign]
    callback.async_log_success_event = timed_record  # type: ignore[method-assign]
    for _ in range(100):
        await router.acompletion(model="g", messages=MESSAGES)
    await asyncio.sleep(0.05)
    spent.update(pick=0.0, record=0.0)
    before = handle.stats()["recorded_ok"]
    wall = time.perf_counter()
    for _ in range(calls):
        await router.acompletion(model="g", messages=MESSAGES)
    await asyncio.sleep(0.05)
    wall = time.perf_counter() - wall
    recorded = handle.stats()["recorded_ok"] - before
    handle.uninstall()
    return {
        "pick_us": spent["pick"] / calls * 1e6,
        "record_us": spent["record"] / max(recorded, 1) * 1e6,
        "call_us": wall / calls * 1e6,
        "recorded": recorded,
    }


async def _pick_us(router: Any, n: int, repeats: int) -> float:
    return await aper_op_us(lambda: router.select("g", {}), n, repeats)


async def decision(n_deployments: int, picks: int, repeats: int) -> dict[str, float]:
    """µs per pick: LiteLLM latency-based-routing vs our strategy (both modes), same deployments, all warmed."""
    routers = {
        "litellm": litellm.Router(
            model_list=model_list(n_deployments), num_retries=0, routing_strategy="latency-based-routing"
        )
    }
    handles = {}
    for mode in MODES:
        routers[mode] = litellm.Router(model_list=model_list(n_deployments), num_retries=0)
        handles[mode] = install(routers[mode], strategy="latency-optimal", candidates=mode)
    warm = max(3 * n_deployments, 60)
    for router in routers.values():
        for _ in range(warm):
            await router.acompletion(model="g", messages=MESSAGES)
    await asyncio.sleep(0.2)
    result = {name: float("inf") for name in routers}
    for _ in range(2):  # two passes, best of each: evens out drift on a busy machine
        for name, router in routers.items():
            result[name] = min(result[name], await _pick_us(router, picks, repeats))
    mw = handles["healthy"].middleware
    request = RouteRequest(candidates=frozenset(mw.providers))
    start = time.perf_counter()
    for _ in range(picks * repeats):
        mw.select(request)
    result["middleware_select"] = (time.perf_counter() - start) / (picks * repeats) * 1e6
    for handle in handles.values():
        handle.uninstall()
    return result


async def main(quick: bool) -> None:
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    logging.getLogger("LiteLLM Router").setLevel(logging.ERROR)
    blocks, calls = (10, 20) if quick else (60, 20)
    picks, repeats = (60, 3) if quick else (100, 5)
    print(
        f"overhead: {blocks} rounds of shuffled blocks x {calls} calls (plain | plain A/A | {' | '.join(MODES)}); "
        f"per-call medians, ratios per round (installed vs the mean of both plain blocks), median of ratios"
    )
    o = await overhead(blocks, calls)
    p = o["plain"]
    print(
        f"Router.acompletion (mock_response), plain               wall {p['wall_us']:8.1f} µs  "
        f"cpu {p['cpu_us']:8.1f} µs"
    )
    for mode in (CONTROL, *MODES):
        r = o[mode]
        label = mode if mode == CONTROL else f"install({mode})"
        print(
            f"Router.acompletion (mock_response), {label:19s} wall {r['wall_us']:8.1f} µs  "
            f"cpu {r['cpu_us']:8.1f} µs   ratio wall {r['wall_ratio']:.3f} "
            f"[IQR {r['wall_ratio_q1']:.3f}..{r['wall_ratio_q3']:.3f}, of totals {r['wall_ratio_total']:.3f}]  "
            f"cpu {r['cpu_ratio']:.3f} [IQR {r['cpu_ratio_q1']:.3f}..{r['cpu_ratio_q3']:.3f}, "
            f"of totals {r['cpu_ratio_total']:.3f}]"
        )
    own = await own_time(300 if quick else 1000)
    ours = own["pick_us"] + own["record_us"]
    print(
        f"our own code per call, install(auto): pick {own['pick_us']:.1f} µs + record {own['record_us']:.1f} µs "
        f"= {ours:.1f} µs ({ours / own['call_us'] * 100:.1f} % of a {own['call_us']:.0f} µs installed call; "
        f"{own['recorded']:.0f} outcomes recorded)"
    )
    for n in (10, 100):
        d = await decision(n, picks, repeats)
        base = d["litellm"]
        ours = " | ".join(f"ours {mode} {d[mode]:7.1f} µs ({d[mode] / base:.2f}x)" for mode in MODES)
        print(
            f"decision @ {n:3d} deployments (router.select): litellm latency-based-routing {base:7.1f} µs | "
            f"{ours} | middleware.select alone {d['middleware_select']:.1f} µs"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (~50 s)")
    asyncio.run(main(parser.parse_args().quick))
