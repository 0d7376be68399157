"""Cost of hedging's bookkeeping per call, in µs/op: off (the default), budget only, hedging on.

The provider answers at once, so no hedge ever starts: what is measured is what a call pays for the
option (the retry budget's accounting on every record, the hedged driver's race set-up on async calls).

Run: python benchmarks/bench_hedge.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio

from _common import aper_op_us, per_op_us

from pi_builder_middleware import HedgePolicy, Middleware, Outcome, Provider, RouteRequest

REQUEST = RouteRequest()


def build(hedge: HedgePolicy | None) -> Middleware:
    mw = Middleware(
        [Provider(id=f"p{i}") for i in range(3)],
        strategy="latency-optimal",
        failover="balanced",
        load_entrypoints=False,
        seed=1,
        hedge=hedge,
    )
    for i in range(3):
        for _ in range(20):
            mw.record(Outcome(f"p{i}", True, 0.1 + i * 0.01))
    return mw


def answer(provider: Provider) -> str:
    return provider.id


async def aanswer(provider: Provider) -> str:
    return provider.id


def sync_us(mw: Middleware, n: int, repeats: int) -> float:
    return per_op_us(lambda: mw.execute(answer, REQUEST), n, repeats)


def async_us(mw: Middleware, n: int, repeats: int) -> float:
    return asyncio.run(aper_op_us(lambda: mw.aexecute(aanswer, REQUEST), n, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls (CI)")
    args = parser.parse_args()
    n, repeats = (2_000, 3) if args.quick else (20_000, 5)
    setups = [("off", None), ("budget only", HedgePolicy(max_hedges=0)), ("hedging on", HedgePolicy(delay_s=1.0))]
    rows = []
    for name, policy in setups:
        mw = build(policy)
        rows.append((name, sync_us(mw, n, repeats), async_us(mw, n, repeats)))
    base_sync, base_async = rows[0][1], rows[0][2]
    print(f"{'setting':<12} {'execute µs':>11} {'× off':>6} {'aexecute µs':>12} {'× off':>6}")
    for name, s, a in rows:
        print(f"{name:<12} {s:>11.2f} {s / base_sync:>6.2f} {a:>12.2f} {a / base_async:>6.2f}")


if __name__ == "__main__":
    main()
