"""Which 429 cooldowns travel between replicas: the provider's Retry-After does, a local backoff does not."""

from __future__ import annotations

import pytest
from redis_support import wait_until

from pi_builder_middleware import ErrorKind, ManualClock, MemoryStateStore, Middleware, Outcome
from pi_builder_middleware.redis_store import RedisStateStore

from .conftest import MakeReplica


def limited(pid: str = "x", retry_after_s: float | None = None) -> Outcome:
    return Outcome(pid, False, 0.01, error_kind=ErrorKind.RATE_LIMITED, retry_after_s=retry_after_s)


def cooldown(mw: Middleware, pid: str = "x") -> float:
    return float(mw.failover.breaker_info(pid)["cooldown_for_s"])


def test_a_backoff_stays_local_and_retry_after_is_shared(wall, make_replica: MakeReplica) -> None:
    store = MemoryStateStore(wall_clock=wall)
    a, b = make_replica(store, clock=ManualClock(10.0)), make_replica(store, clock=ManualClock(10.0))
    a.record(limited())
    assert cooldown(a) == 0.25
    assert cooldown(b) == 0.0  # A's guess; B finds its own with one 429 if it has to
    assert store.stats()["published"] == 0
    a.record(limited(retry_after_s=20.0))
    assert cooldown(b) == pytest.approx(20.0)
    assert store.stats()["published"] == 1


def test_a_local_success_does_not_lift_another_replicas_retry_after(wall, make_replica: MakeReplica) -> None:
    store = MemoryStateStore(wall_clock=wall)
    clock_b = ManualClock(10.0)
    a, b = make_replica(store, clock=ManualClock(10.0)), make_replica(store, clock=clock_b)
    a.record(limited(retry_after_s=8.0))
    b.record(limited())  # B's own backoff on top: shorter than the shared Retry-After
    b.record(Outcome("x", True, 0.1))  # a call B sent before the cooldown came back fine
    assert cooldown(b) == pytest.approx(8.0)
    assert b.failover.breaker_info("x")["rate_limit_streak"] == 0
    clock_b.advance(8.0)
    assert b.failover.unavailable_reason("x") is None


def test_retry_after_cooldowns_replicate_through_redis(redis_server, make_replica: MakeReplica, cluster: str) -> None:
    def replica() -> Middleware:
        store = RedisStateStore(redis_server.url, cluster=cluster, reconnect_max_s=0.2)
        mw = make_replica(store, clock=ManualClock(10.0))
        assert store.wait_connected(10.0), store.stats()
        return mw

    a, b = replica(), replica()
    a.record(limited("y"))  # backoff only: nothing to send
    a.record(limited("x", retry_after_s=30.0))
    wait_until(lambda: cooldown(b) > 0, 5.0, "B to see A's Retry-After")
    assert cooldown(b) == pytest.approx(30.0, abs=0.5)
    b.record(Outcome("x", True, 0.1))
    assert cooldown(b) == pytest.approx(30.0, abs=0.5)  # shared Retry-After: kept
    assert cooldown(b, "y") == 0.0
