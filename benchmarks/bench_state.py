"""Shared breaker state: hot-path cost per store, and how fast a trip travels between replicas over Redis.

Run: python benchmarks/bench_state.py [--quick] [--trips 200] [--redis-url redis://...]
Without --redis-url a throwaway redis-server (from PATH) is started on a free port and killed at the end.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pi_builder_middleware import (
    ErrorKind,
    EventKind,
    FailoverConfig,
    FailoverEvent,
    MemoryStateStore,
    Middleware,
    Outcome,
    Provider,
)
from pi_builder_middleware.redis_store import RedisStateStore
from pi_builder_middleware.state import StateStore

PROVIDERS = [Provider(id=f"p{i}", cost_per_1k_input=0.001 * (i + 1), quality=0.5 + i / 20) for i in range(5)]
FAILOVER = FailoverConfig.preset("aggressive", base_ejection_s=30.0, jitter=0.0)


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: install it (scripts/setup.sh does as root) or pass --redis-url")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait()


def build(store: StateStore | None) -> Middleware:
    mw = Middleware(
        PROVIDERS, strategy="latency-optimal", failover=FAILOVER, state_store=store, load_entrypoints=False, seed=1
    )
    for p in PROVIDERS:  # warm every provider so the strategy takes its full path
        for _ in range(20):
            mw.record(Outcome(p.id, True, 0.1 + int(p.id[1:]) / 100, input_tokens=100, output_tokens=50))
    return mw


def per_op_us(fn: Callable[[], object], n: int) -> float:
    """Process CPU time (every thread, so a store's background work counts) per call of ``fn``, in µs."""
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n * 1e6


def hot_path(url: str, n: int, rounds: int) -> None:
    """Interleaved rounds (the machine is shared: load drifts); best and median round per store."""
    memory = MemoryStateStore()
    stores: list[tuple[str, Callable[[], StateStore | None]]] = [
        ("no store", lambda: None),
        ("MemoryStateStore", lambda: memory),
        ("RedisStateStore", lambda: RedisStateStore(url, cluster="bench-hot")),
    ]
    cases = []
    for name, make in stores:
        mw, peer = build(make()), build(make())  # a second replica on the same store, as in production
        cases.append((name, mw, peer))
        replica_store = mw.failover._replica.store if mw.failover._replica is not None else None
        if isinstance(replica_store, RedisStateStore):
            assert replica_store.wait_connected(10.0), replica_store.stats()
    ok = Outcome("p0", True, 0.1, input_tokens=100, output_tokens=50)
    failure = Outcome("p4", False, 0.1, error_kind=ErrorKind.SERVER_ERROR)

    def trip_and_reset(mw: Middleware) -> None:  # two shared transitions: OPEN, then CLOSED by reset
        mw.record(failure)
        mw.record(failure)
        mw.failover.reset("p4")

    cycle: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    transitions: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _ in range(rounds):
        for name, mw, _ in cases:
            cycle[name].append(per_op_us(lambda mw=mw: (mw.select(), mw.record(ok)), n))
            transitions[name].append(per_op_us(lambda mw=mw: trip_and_reset(mw), n // 10))
    print(
        f"hot path, 5 providers, 2 replicas per store; CPU µs per op (all threads), best / median of {rounds} "
        f"interleaved rounds"
    )
    print(f"{'store':<18} {'select()+record()':>20} {'trip+reset (2 shared transitions)':>36}")
    for name, _, _ in cases:
        c, t = cycle[name], transitions[name]
        best_median = f"{min(c):>10.1f} / {statistics.median(c):>6.1f}"
        print(f"{name:<18} {best_median} {min(t):>26.1f} / {statistics.median(t):>6.1f}")
    for _, mw, peer in cases:
        mw.close()
        peer.close()


def propagation(url: str, trips: int) -> None:
    a = Middleware(
        PROVIDERS, failover=FAILOVER, state_store=RedisStateStore(url, cluster="bench-prop"), load_entrypoints=False
    )
    b_store = RedisStateStore(url, cluster="bench-prop")
    b = Middleware(PROVIDERS, failover=FAILOVER, state_store=b_store, load_entrypoints=False)
    assert b_store.wait_connected(10.0)
    arrived = {EventKind.BLACKLIST: threading.Event(), EventKind.RESET: threading.Event()}
    seen_at: dict[EventKind, float] = {}

    def on_event(event: FailoverEvent) -> None:  # runs on B's listener thread
        if event.provider_id == "p0" and event.kind in arrived:
            seen_at[event.kind] = time.perf_counter()
            arrived[event.kind].set()

    b.failover.subscribe(on_event)
    delays: dict[EventKind, list[float]] = {EventKind.BLACKLIST: [], EventKind.RESET: []}
    failure = Outcome("p0", False, 0.1, error_kind=ErrorKind.SERVER_ERROR)
    for _ in range(trips):
        for kind, act in (
            (EventKind.BLACKLIST, lambda: [a.record(failure) for _ in range(2)]),
            (EventKind.RESET, lambda: a.failover.reset("p0")),
        ):
            arrived[kind].clear()
            start = time.perf_counter()
            act()
            if not arrived[kind].wait(5.0):
                raise SystemExit(f"{kind.value} did not reach B within 5 s: {b_store.stats()}")
            delays[kind].append((seen_at[kind] - start) * 1000)
    print(f"\npropagation A -> B over Redis ({trips} trips and resets; separate connections, one process)")
    for kind, label in ((EventKind.BLACKLIST, "trip (OPEN)"), (EventKind.RESET, "reset (CLOSED)")):
        d = sorted(delays[kind])
        p99 = d[min(len(d) - 1, round(0.99 * (len(d) - 1)))]
        print(f"  {label:<15} median {statistics.median(d):.2f} ms   p99 {p99:.2f} ms   max {d[-1]:.2f} ms")
    a.close()
    b.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--trips", type=int, default=200)
    parser.add_argument("--redis-url", help="use this Redis instead of starting a throwaway redis-server")
    args = parser.parse_args()
    logging.getLogger("pi_builder_middleware.events").setLevel(logging.ERROR)  # alerts on every trip: not news here
    n, rounds = (2_000, 3) if args.quick else (10_000, 9)
    trips = 50 if args.quick else args.trips
    if args.redis_url:
        hot_path(args.redis_url, n, rounds)
        propagation(args.redis_url, trips)
        return
    with redis_server() as url:
        hot_path(url, n, rounds)
        propagation(url, trips)


if __name__ == "__main__":
    main()
