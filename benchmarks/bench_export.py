"""Cost of reading health: ``export()`` and one ``health()`` call against the number of providers.

Run: python benchmarks/bench_export.py [--quick] [--sizes 100,400,1600]

Every provider gets 20 outcomes (some failed, so breakers and windows hold data); no routing decisions are
made, so the decision log (bounded by ``history_size``) does not weigh in. Median of ``repeats`` calls.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time

from pi_builder_middleware import ErrorKind, Middleware, Outcome, Provider


def build(n_providers: int) -> Middleware:
    rng = random.Random(1)
    providers = [Provider(id=f"p{i}", cost_per_1k_input=0.001, cost_per_1k_output=0.002) for i in range(n_providers)]
    mw = Middleware(providers=providers, failover="balanced", load_entrypoints=False, seed=1)
    for p in providers:
        for k in range(20):
            ok = k % 7 != 0
            mw.record(
                Outcome(
                    p.id,
                    ok,
                    rng.uniform(0.05, 2.0),
                    input_tokens=100,
                    output_tokens=50,
                    error_kind=None if ok else ErrorKind.SERVER_ERROR,
                )
            )
    return mw


def median_s(fn: object, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--sizes", default="100,400,1600", help="provider counts, comma-separated")
    args = parser.parse_args()
    logging.getLogger("pi_builder_middleware").setLevel(logging.ERROR)  # failures raise alerts (logged)
    repeats = 3 if args.quick else 5
    print(f"{'providers':>9} {'export ms':>10} {'export µs/provider':>19} {'health() µs':>12}")
    for size in (int(s) for s in args.sizes.split(",")):
        mw = build(size)
        export = median_s(mw.export, repeats)
        health = median_s(lambda mw=mw: [mw.health("p0") for _ in range(100)], repeats) / 100
        print(f"{size:>9} {export * 1e3:>10.1f} {export / size * 1e6:>19.1f} {health * 1e6:>12.1f}")


if __name__ == "__main__":
    main()
