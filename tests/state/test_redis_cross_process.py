"""A replica in another OS process (its own monotonic clock, its own Redis connections) shares breakers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from redis_support import wait_until

from pi_builder_middleware import CircuitState, ErrorKind, Outcome
from pi_builder_middleware.redis_store import RedisStateStore

CHILD = Path(__file__).with_name("_replica_proc.py")


class Child:
    def __init__(self, url: str, cluster: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), url, cluster],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
        )

    def read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()  # bounded by the suite's per-test timeout
        assert line and not line.startswith("error"), f"child replica said {line!r}"
        return line

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        assert self.read() == f"ok {command}"

    def close(self) -> int:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise
        finally:
            assert self.proc.stdout is not None
            self.proc.stdout.close()


@pytest.mark.timeout(60)
def test_trip_reset_and_back_across_processes(redis_server, make_replica, cluster):
    child = Child(redis_server.url, cluster)
    try:
        ready = child.read()
        assert ready.startswith("ready ")
        child_id = ready.split()[1]
        store = RedisStateStore(redis_server.url, cluster=cluster, reconnect_max_s=0.2)
        here = make_replica(store)
        assert store.wait_connected(10.0)
        assert here.failover.replica_id != child_id

        child.send("trip x")
        wait_until(lambda: here.failover.state("x") is CircuitState.OPEN, 5.0, "the child's trip to arrive")
        assert here.select().provider.id != "x"
        assert f"from replica {child_id}" in here.failover.events[-1].detail
        assert here.failover.breaker_info("x")["open_for_s"] == pytest.approx(10.0, abs=0.5)

        child.send("reset x")
        wait_until(lambda: here.failover.state("x") is CircuitState.CLOSED, 5.0, "the child's reset to arrive")

        for _ in range(here.failover.config.consecutive_failures):  # and the other way round
            here.record(Outcome("y", False, 0.1, error_kind=ErrorKind.TIMEOUT))
        child.send("wait-open y")
    finally:
        assert child.close() == 0
