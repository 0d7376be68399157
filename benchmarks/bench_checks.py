"""Hot-path cost of the bad-value checks and of the plugin time budget, in CPU time.

Run: python benchmarks/bench_checks.py [--quick]

``select()`` and ``record()`` (a success, a 429) with built-in plugins only and with one third-party observer
that does nothing, at 3 and 100 providers (latency-optimal, every provider warmed with 20 outcomes); then,
in one process, the same observer with the budget on (default) and off (``plugin_budget_s=None``).
CPU time (``time.process_time``), minimum of blocks: on a shared machine wall-clock figures move far more
than the few percent measured here. To compare two versions, run this file against each in turn (an older
checkout has no ``plugin_budget_s``: its budget rows read n/a).
"""

from __future__ import annotations

import argparse
import logging
import random
from typing import Any

from _common import cpu_us, warm

from pi_builder_middleware import ErrorKind, Middleware, Outcome, Provider, hookimpl


class NoOpObserver:
    """A third-party observer that does nothing: what remains is the host's cost of calling (and timing) it."""

    @hookimpl
    def pbm_on_outcome(self, outcome, error_kind):
        pass

    @hookimpl
    def pbm_on_decision(self, decision):
        pass


def build(n_providers: int, plugins: list[object], **kwargs: Any) -> Middleware:
    rng = random.Random(1)
    providers = [
        Provider(id=f"p{i}", cost_per_1k_input=rng.uniform(0.0001, 0.01), quality=rng.random())
        for i in range(n_providers)
    ]
    mw = Middleware(
        providers=providers,
        strategy="latency-optimal",
        failover="balanced",
        load_entrypoints=False,
        seed=1,
        plugins=plugins,
        **kwargs,
    )
    return warm(mw, rng)


def row(mw: Middleware, n: int, repeats: int) -> tuple[float, float, float]:
    ok = Outcome("p0", True, 0.2, input_tokens=100, output_tokens=50)
    limited = Outcome("p1", False, 0.2, error_kind=ErrorKind.RATE_LIMITED, retry_after_s=0.0)
    return (
        cpu_us(lambda: mw.select(reserve=False), n, repeats),
        cpu_us(lambda: mw.record(ok), n, repeats),
        cpu_us(lambda: mw.record(limited), n, repeats),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    logging.getLogger("pi_builder_middleware").setLevel(logging.ERROR)
    n, repeats = (5_000, 3) if args.quick else (20_000, 7)
    print(f"{'providers':>9} {'plugins':>18} {'select µs':>10} {'record ok µs':>13} {'record 429 µs':>14}")
    for size in (3, 100):
        for label, plugins in (("built-ins only", []), ("+ no-op observer", [NoOpObserver()])):
            select, ok, limited = row(build(size, plugins), n, repeats)
            print(f"{size:>9} {label:>18} {select:>10.2f} {ok:>13.2f} {limited:>14.2f}")
    try:
        on, off = build(3, [NoOpObserver()]), build(3, [NoOpObserver()], plugin_budget_s=None)
    except TypeError:  # a version without the plugin time budget
        print("budget on vs off: n/a")
        return
    best: dict[str, list[float]] = {"on": [float("inf")] * 3, "off": [float("inf")] * 3}
    for _ in range(3):  # alternated, so that both see the same machine
        for name, mw in (("on", on), ("off", off)):
            best[name] = [min(a, b) for a, b in zip(best[name], row(mw, n, max(repeats // 3, 1)), strict=True)]
    for name in ("off", "on"):
        select, ok, limited = best[name]
        print(
            f"3 providers + no-op observer, budget {name:>3}: select {select:.2f} µs, record ok {ok:.2f} µs, "
            f"record 429 {limited:.2f} µs"
        )


if __name__ == "__main__":
    main()
