"""Replicas sharing breakers through a real redis-server (started per session or per test, never mocked)."""

from __future__ import annotations

import json
import logging

import pytest
from redis_support import RedisServer, require_redis_server, wait_until

from pi_builder_middleware import (
    CircuitState,
    ConfigError,
    ErrorKind,
    EventKind,
    ManualClock,
    Middleware,
    Outcome,
    RouteRequest,
)
from pi_builder_middleware.redis_store import RedisStateStore

from .conftest import MakeReplica

STORE_LOG = "pi_builder_middleware.redis_store"


def trip(mw: Middleware, pid: str = "x") -> None:
    for _ in range(mw.failover.config.consecutive_failures):
        mw.record(Outcome(pid, False, 0.1, error_kind=ErrorKind.SERVER_ERROR))
    assert mw.failover.state(pid) is CircuitState.OPEN


def store_of(mw: Middleware) -> dict:
    return mw.failover.stats()["store"]


@pytest.fixture
def replica(make_replica: MakeReplica, cluster: str):
    """``replica(url)``: a Middleware over its own RedisStateStore in this test's cluster."""

    def make(url: str, *, wait: bool = True, clock: ManualClock | None = None, **store_options) -> Middleware:
        store = RedisStateStore(
            url, cluster=store_options.pop("cluster", cluster), reconnect_max_s=0.2, **store_options
        )
        mw = make_replica(store, clock=clock)
        if wait:
            assert store.wait_connected(10.0), store.stats()
        return mw

    return make


def test_trip_on_a_opens_b(redis_server, replica):
    a, b = replica(redis_server.url), replica(redis_server.url)
    trip(a)
    wait_until(lambda: b.failover.state("x") is CircuitState.OPEN, 5.0, "B to see A's trip")
    assert b.select().provider.id != "x"
    assert b.select(RouteRequest(candidates=frozenset({"x", "y"}))).provider.id == "y"
    assert b.failover.breaker_info("x")["open_for_s"] == pytest.approx(10.0, abs=0.5)
    assert b.failover.breaker_info("x")["trips"] == 1
    event = [e for e in b.failover.events if e.kind is EventKind.BLACKLIST][-1]
    assert event.detail.startswith(f"from replica {a.failover.replica_id}")
    assert store_of(b)["connected"] is True and store_of(b)["errors"] == 0


def test_retry_after_on_a_cools_b_down_for_about_the_same_time(redis_server, replica):
    a, b = replica(redis_server.url), replica(redis_server.url)
    a.record(Outcome("y", False, 0.1, error_kind=ErrorKind.RATE_LIMITED, retry_after_s=30.0))
    wait_until(lambda: b.failover.breaker_info("y")["cooldown_for_s"] > 0, 5.0, "B to cool down")
    assert b.failover.breaker_info("y")["cooldown_for_s"] == pytest.approx(30.0, abs=0.5)
    assert "rate limited" in (b.failover.unavailable_reason("y") or "")
    assert b.failover.state("y") is CircuitState.CLOSED


def test_recovery_on_a_closes_b(redis_server, replica):
    ca = ManualClock(0.0)
    a, b = replica(redis_server.url, clock=ca), replica(redis_server.url)
    trip(a)
    wait_until(lambda: b.failover.state("x") is CircuitState.OPEN, 5.0, "B to see the trip")
    ca.advance(10.0)  # A's ejection is over; B's clock stands still, so only A's news can close it
    assert a.select().trial
    a.record(Outcome("x", True, 0.1))
    wait_until(lambda: b.failover.state("x") is CircuitState.CLOSED, 5.0, "B to see the recovery")
    assert b.select().provider.id == "x"


def test_a_replica_started_later_reads_the_current_state(redis_server, replica):
    a = replica(redis_server.url)
    trip(a, "x")
    a.record(Outcome("z", False, 0.1, error_kind=ErrorKind.RATE_LIMITED, retry_after_s=60.0))
    wait_until(lambda: store_of(a)["published"] >= 2, 5.0, "A's updates to be written")
    late = replica(redis_server.url)  # returns once synced: the hashes are applied by then
    assert late.failover.state("x") is CircuitState.OPEN
    assert late.failover.breaker_info("x")["open_for_s"] == pytest.approx(10.0, abs=0.5)
    assert late.failover.breaker_info("z")["cooldown_for_s"] == pytest.approx(60.0, abs=0.5)
    assert late.select().provider.id == "y"


def test_clusters_on_one_redis_do_not_mix(redis_server, replica):
    a, same = replica(redis_server.url), replica(redis_server.url)
    other = replica(redis_server.url, cluster="another-app")
    trip(a)
    wait_until(lambda: same.failover.state("x") is CircuitState.OPEN, 5.0, "the same cluster to see it")
    assert other.failover.state("x") is CircuitState.CLOSED
    assert store_of(other)["received"] == 0
    assert redis_server.client().exists("pbm:another-app:breakers") == 0


def test_two_middlewares_can_share_one_store(redis_server, make_replica, cluster):
    store = RedisStateStore(redis_server.url, cluster=cluster)
    a, b = make_replica(store), make_replica(store)
    assert store.wait_connected(10.0)
    trip(a)
    wait_until(lambda: b.failover.state("x") is CircuitState.OPEN, 5.0, "B to see A's trip")
    a.close()
    assert store.stats()["replicas"] == 1
    trip(b, "y")
    wait_until(lambda: store.cached("y"), 5.0, "the store to keep working for B")


def test_close_sends_what_is_queued_then_stops(redis_server, replica, cluster):
    a = replica(redis_server.url)
    trip(a)
    a.close()  # right after the trip: the publisher drains its queue before stopping
    raw = redis_server.client().hget(f"pbm:{cluster}:breakers", "x")
    assert raw is not None and json.loads(raw)["state"] == "open"
    assert 0 < redis_server.client().pttl(f"pbm:{cluster}:breakers") <= 3600 * 1000  # the view expires


def test_ttl_is_configurable(redis_server, replica, cluster):
    a = replica(redis_server.url, ttl_s=120.0)
    trip(a)
    wait_until(lambda: store_of(a)["published"] >= 1, 5.0, "the trip to be written")
    assert 60_000 < redis_server.client().pttl(f"pbm:{cluster}:breakers") <= 120_000


def test_foreign_messages_on_the_channel_are_ignored(redis_server, replica, cluster):
    a, b = replica(redis_server.url), replica(redis_server.url)
    redis_server.client().publish(f"pbm:{cluster}:updates", "not json at all")
    redis_server.client().publish(f"pbm:{cluster}:updates", json.dumps({"f": 1, "provider_id": "x"}))
    wait_until(lambda: store_of(b)["malformed"] == 2, 5.0, "the garbage to be counted")
    trip(a)
    wait_until(lambda: b.failover.state("x") is CircuitState.OPEN, 5.0, "real updates to still arrive")


def test_a_broken_observer_on_the_receiver_is_counted_and_logged_once(redis_server, replica, caplog):
    a, b = replica(redis_server.url), replica(redis_server.url)

    def broken(_event: object) -> None:
        raise RuntimeError("observer bug")

    b.failover.subscribe(broken)
    trip(a, "x")
    trip(a, "y")
    wait_until(
        lambda: b.failover.state("x") is CircuitState.OPEN and b.failover.state("y") is CircuitState.OPEN,
        5.0,
        "both updates to be applied",
    )
    # the manager guards its subscribers itself: counted there (the store sees no apply error), logged once
    assert store_of(b)["apply_errors"] == 0
    assert b.failover.callback_failures.snapshot()["failover_subscriber"] >= 2
    assert len([r for r in caplog.records if "observer bug" in (r.exc_text or "")]) == 1
    trip(a, "z")  # the listener is still alive
    wait_until(lambda: b.failover.state("z") is CircuitState.OPEN, 5.0, "later updates to arrive")


def test_no_redis_at_start_keeps_working_logs_once_and_syncs_when_it_comes(tmp_path, replica, caplog):
    server = RedisServer(require_redis_server(), tmp_path)  # its port is chosen, nothing listens there yet
    caplog.set_level(logging.WARNING, logger=STORE_LOG)
    a = replica(server.url, wait=False)
    wait_until(lambda: store_of(a)["errors"] >= 3, 5.0, "a few failed connection attempts")
    trip(a)  # local state works
    a.record(Outcome("y", False, 0.1, error_kind=ErrorKind.RATE_LIMITED, retry_after_s=30.0))
    assert a.execute(lambda p: p.id) == "z"
    assert store_of(a)["connected"] is False
    warnings = [r for r in caplog.records if r.name == STORE_LOG]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
    server.start()
    try:
        wait_until(lambda: store_of(a)["connected"], 5.0, "the store to connect")
        wait_until(lambda: store_of(a)["published"] >= 2, 5.0, "A to republish its trip and cooldown")
        late = replica(server.url)  # reads them from the hashes
        assert late.failover.state("x") is CircuitState.OPEN  # A republished its view on connecting
        assert late.failover.breaker_info("y")["cooldown_for_s"] == pytest.approx(30.0, abs=1.0)
    finally:
        server.stop()


def test_redis_killed_mid_run_then_restarted(own_redis, replica, caplog):
    caplog.set_level(logging.WARNING, logger=STORE_LOG)
    a, b = replica(own_redis.url), replica(own_redis.url)
    trip(a, "z")
    wait_until(lambda: b.failover.state("z") is CircuitState.OPEN, 5.0, "B to see the first trip")
    own_redis.stop()
    wait_until(lambda: not store_of(a)["connected"] and not store_of(b)["connected"], 5.0, "both to notice")
    for _ in range(50):  # requests keep working on local state, nothing raises
        assert b.execute(lambda p: p.id) in ("x", "y")
    trip(a, "x")  # while Redis is down: B cannot know yet
    assert b.failover.state("x") is CircuitState.CLOSED
    wait_until(lambda: store_of(a)["errors"] >= 5, 5.0, "more failed reconnection attempts")
    down_warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(down_warnings) == 2  # one per store, however many attempts failed

    own_redis.start()  # empty: no persistence
    wait_until(lambda: store_of(a)["connected"] and store_of(b)["connected"], 10.0, "both to reconnect")
    wait_until(lambda: b.failover.state("x") is CircuitState.OPEN, 5.0, "B to get A's trip after the resync")
    assert store_of(a)["resyncs"] >= 2 and store_of(a)["disconnects"] == 1
    assert own_redis.client().hexists(f"pbm:{a.failover.stats()['store']['cluster']}:breakers", "x")
    assert len([r for r in caplog.records if "reachable again" in r.getMessage()]) == 2
    trip(b, "y")  # and live propagation is back
    wait_until(lambda: a.failover.state("y") is CircuitState.OPEN, 5.0, "A to see B's trip")


def test_secrets_never_reach_redis_stats_or_logs(tmp_path, replica, caplog):
    password = "s3cret-redis-pw"
    server = RedisServer(require_redis_server(), tmp_path, password=password)
    server.start()
    try:
        caplog.set_level(logging.DEBUG)
        caplog.set_level(logging.DEBUG, logger="pi_builder_middleware")  # the demo tests leave it at ERROR
        a, b = replica(server.url), replica(server.url)
        secret = "sk-live-0123456789abcdef"

        class ProviderAPIError(Exception):
            pass

        for _ in range(2):
            a.record(
                Outcome(
                    "x",
                    False,
                    0.1,
                    error=ProviderAPIError(f"Incorrect API key provided: {secret}"),
                    error_kind=ErrorKind.SERVER_ERROR,
                )
            )
        a.record(
            Outcome(
                "y",
                False,
                0.1,
                error=ProviderAPIError(f"429 for key {secret}"),
                error_kind=ErrorKind.RATE_LIMITED,
                retry_after_s=5.0,
            )
        )
        wait_until(lambda: b.failover.state("x") is CircuitState.OPEN, 5.0, "the trip to propagate")
        client = server.client()
        written = []
        for key in client.scan_iter("*"):
            written.append(key)
            written.extend(f"{k}={v}" for k, v in client.hgetall(key).items())
        assert any("x=" in w for w in written)  # the scan did see the state
        blob = "\n".join(written)
        assert secret not in blob and "API key" not in blob and "ProviderAPIError" not in blob
        stats_blob = json.dumps(b.export(), default=str) + json.dumps(a.stats(), default=str)
        assert password not in stats_blob and "//***@" in store_of(a)["url"]
        assert password not in caplog.text
    finally:
        server.stop()


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="cluster"):
        RedisStateStore("redis://localhost:1/0", cluster="")
    with pytest.raises(ConfigError, match="ttl_s"):
        RedisStateStore("redis://localhost:1/0", ttl_s=0)
    with pytest.raises(ConfigError, match="url"):
        RedisStateStore("http://not-redis")
