"""A replica in its own OS process, driven over stdin/stdout by test_redis_cross_process.py.

Commands, one per line: ``trip <id>``, ``reset <id>``, ``wait-open <id>``, ``quit``. Answers ``ready
<replica id>`` once synced with Redis, then ``ok <command>`` (or ``error <why>``) per command.
"""

from __future__ import annotations

import sys
import time

from pi_builder_middleware import CircuitState, ErrorKind, FailoverConfig, ManualClock, Middleware, Outcome, Provider
from pi_builder_middleware.redis_store import RedisStateStore


def main(url: str, cluster: str) -> int:
    store = RedisStateStore(url, cluster=cluster, reconnect_max_s=0.2)
    failover = FailoverConfig.preset("aggressive", base_ejection_s=10.0, jitter=0.0)
    with Middleware(
        [Provider(id=p) for p in ("x", "y", "z")],
        failover=failover,
        clock=ManualClock(0.0),
        state_store=store,
        load_entrypoints=False,
    ) as mw:
        if not store.wait_connected(10.0):
            print("error not connected", flush=True)
            return 1
        print(f"ready {mw.failover.replica_id}", flush=True)
        for line in sys.stdin:
            command, _, pid = line.strip().partition(" ")
            if command == "quit":
                break
            if command == "trip":
                for _ in range(failover.consecutive_failures):
                    mw.record(Outcome(pid, False, 0.1, error_kind=ErrorKind.SERVER_ERROR))
            elif command == "reset":
                mw.reset(pid)
            elif command == "wait-open":
                deadline = time.monotonic() + 10.0
                while mw.failover.state(pid) is not CircuitState.OPEN:
                    if time.monotonic() > deadline:
                        print(f"error {pid} never opened", flush=True)
                        break
                    time.sleep(0.002)
            print(f"ok {line.strip()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
