"""Hot-path cost of the core: select(), record() and execute() in µs/op.

Run: python benchmarks/bench_core.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import random

from _common import per_op_us, random_providers, warm

from pi_builder_middleware import ErrorKind, Middleware, Outcome, RouteRequest


def build(n_providers: int, strategy: str) -> Middleware:
    rng = random.Random(1)
    providers = random_providers(n_providers, rng, tools_on_odd=True)
    mw = Middleware(providers=providers, strategy=strategy, failover="balanced", load_entrypoints=False, seed=1)
    return warm(mw, rng)  # every provider with data, so strategies take their full path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    logging.getLogger("pi_builder_middleware").setLevel(logging.ERROR)  # recording errors raises alerts (logged)
    n, repeats = (2_000, 3) if args.quick else (20_000, 5)
    request = RouteRequest(required_capabilities={"tools"}, min_availability=0.9)
    print(
        f"{'providers':>9} {'strategy':>16} {'select µs':>10} {'select+filters µs':>18} {'record ok µs':>13} "
        f"{'record err µs':>14} {'execute µs':>11}"
    )
    for size in (3, 10, 100):
        for strategy in ("latency-optimal", "cost-optimal", "quality-optimal", "failover"):
            mw = build(size, strategy)
            ok = Outcome("p0", True, 0.2, input_tokens=100, output_tokens=50)
            err = Outcome("p1", False, 0.2, error_kind=ErrorKind.RATE_LIMITED, retry_after_s=0.0)
            sel = per_op_us(lambda mw=mw: mw.select(reserve=False), n, repeats)
            sel_f = per_op_us(lambda mw=mw: mw.select(request, reserve=False), n, repeats)
            rec = per_op_us(lambda mw=mw, ok=ok: mw.record(ok), n, repeats)
            rec_e = per_op_us(lambda mw=mw, err=err: mw.record(err), n, repeats)
            exe = per_op_us(lambda mw=mw: mw.execute(lambda p: p.id), n // 2, repeats)
            print(f"{size:>9} {strategy:>16} {sel:>10.2f} {sel_f:>18.2f} {rec:>13.2f} {rec_e:>14.2f} {exe:>11.2f}")


if __name__ == "__main__":
    main()
