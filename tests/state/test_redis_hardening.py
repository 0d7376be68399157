"""Whatever sits in Redis, sharing carries on: invalid entries are skipped, counted and logged once.

Every test writes bad data into a real redis-server (never a mock) next to two live replicas, then
checks that valid transitions still travel between them.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

import pytest
from redis_support import RedisServer, require_redis_server, wait_until

from pi_builder_middleware import CircuitState, ConfigError, ErrorKind, FailoverConfig, Middleware, Outcome
from pi_builder_middleware.redis_store import RedisStateStore
from pi_builder_middleware.state import MAX_CLOCK_AHEAD_S

from .conftest import MakeReplica
from .test_redis_store import STORE_LOG, store_of, trip


@pytest.fixture
def replica_on(make_replica: MakeReplica, cluster: str):
    """``replica_on(url)``: a synced replica over its own store in this test's cluster."""

    def make(url: str) -> Middleware:
        store = RedisStateStore(url, cluster=cluster, reconnect_max_s=0.2)
        mw = make_replica(store)
        assert store.wait_connected(10.0), store.stats()
        return mw

    return make


@pytest.fixture
def pair(redis_server: RedisServer, replica_on) -> tuple[Middleware, Middleware]:
    """Two synced replicas in this test's cluster on the session's server."""
    return replica_on(redis_server.url), replica_on(redis_server.url)


def keys(cluster: str) -> tuple[str, str, str]:
    return f"pbm:{cluster}:breakers", f"pbm:{cluster}:cooldowns", f"pbm:{cluster}:updates"


def entry(pid: str = "x", **changes: Any) -> dict[str, Any]:
    """A well-formed wire entry (a trip by replica 'elsewhere', now), with ``changes``."""
    return {
        "f": 1,
        "provider_id": pid,
        "kind": "blacklist",
        "state": "open",
        "open_for_s": 10.0,
        "cooldown_for_s": 0.0,
        "trips": 1,
        "origin": "elsewhere",
        "sent_at": time.time(),
        "seq": 1,
        **changes,
    }


def blip(raw: Any, *replicas: Middleware) -> None:
    """Cut every subscriber's connection (a network blip): each store reconnects and resyncs from the hashes."""
    before = [store_of(mw)["resyncs"] for mw in replicas]
    raw.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    for mw, n in zip(replicas, before, strict=True):
        wait_until(
            lambda mw=mw, n=n: store_of(mw)["resyncs"] > n and store_of(mw)["connected"],
            5.0,
            "the store to resync after the blip",
        )


def barrier(raw: Any, channel: str, *replicas: Middleware) -> None:
    """Publish a valid update for an unknown provider; once every store has it, it has what came before."""
    marker = f"marker-{time.monotonic_ns()}"
    raw.publish(channel, json.dumps(entry(marker)))
    for mw in replicas:
        store = mw.failover._replica.store  # type: ignore[union-attr]
        wait_until(lambda store=store: store.cached(marker), 5.0, "the marker to arrive")


def store_warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == STORE_LOG and text in r.getMessage()]


def test_a_non_utf8_value_in_the_breakers_hash_is_skipped_and_the_resync_goes_on(pair, raw, cluster, caplog):
    caplog.set_level(logging.WARNING, logger=STORE_LOG)
    a, b = pair
    breakers, _, _ = keys(cluster)
    raw.hset(breakers, "y", b'\xff\xfe{"f": 1}')
    raw.hset(breakers, "z", json.dumps(entry("z")).encode())  # a valid neighbour is still read
    blip(raw, a, b)
    assert b.failover.state("z") is CircuitState.OPEN
    assert store_of(b)["malformed"] >= 1 and store_of(b)["malformed_reasons"]["encoding"] >= 1
    trip(a, "x")
    wait_until(lambda: b.failover.state("x") is CircuitState.OPEN, 5.0, "B to see A's trip")
    blip(raw, a, b)  # the same bad value again: counted again, not logged again
    assert store_of(b)["malformed_reasons"]["encoding"] >= 2
    assert len(store_warnings(caplog, "not UTF-8")) == 2  # once per store
    assert store_of(a)["errors"] <= 2 and store_of(b)["errors"] <= 2  # one per blip at most: no retry storm


def test_a_key_of_another_type_in_place_of_the_cooldowns_hash_is_skipped_then_replaced(pair, raw, cluster):
    a, b = pair
    _, cooldowns, _ = keys(cluster)
    raw.delete(cooldowns)
    raw.rpush(cooldowns, b"not", b"a", b"hash")
    blip(raw, a, b)
    assert store_of(b)["malformed_reasons"]["key_type"] >= 1
    trip(a, "x")  # transitions still travel
    wait_until(lambda: b.failover.state("x") is CircuitState.OPEN, 5.0, "B to see A's trip")
    a.record(Outcome("y", False, 0.1, error_kind=ErrorKind.RATE_LIMITED, retry_after_s=30.0))
    wait_until(lambda: b.failover.breaker_info("y")["cooldown_for_s"] > 25, 5.0, "B to cool y down")
    assert raw.type(cooldowns) == b"hash"  # the write replaced the foreign key
    assert store_of(a)["repaired"] == 1 and store_of(a)["errors"] <= 1  # the blip's


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e308", "1e999", "-5", '"10"', "1" + "0" * 400])
def test_a_bad_ejection_time_on_the_channel_is_rejected(pair, raw, cluster, bad):
    a, b = pair
    _, _, channel = keys(cluster)
    text = json.dumps(entry("x", open_for_s=0.0)).replace('"open_for_s":0.0', f'"open_for_s":{bad}')
    text = text.replace('"open_for_s": 0.0', f'"open_for_s": {bad}')
    assert bad in text
    raw.publish(channel, text)
    barrier(raw, channel, a, b)
    assert b.failover.state("x") is CircuitState.CLOSED
    assert store_of(b)["malformed"] == 1 and store_of(b)["connected"] and store_of(b)["errors"] == 0
    json.dumps(b.export(), allow_nan=False)  # still strict JSON
    trip(a, "x")
    wait_until(lambda: b.failover.state("x") is CircuitState.OPEN, 5.0, "B to see A's trip")


def test_remote_times_are_clamped_to_the_local_bounds(pair, raw, cluster, fast_failover):
    a, b = pair
    _, _, channel = keys(cluster)
    raw.publish(channel, json.dumps(entry("x", open_for_s=86_400.0)))
    raw.publish(channel, json.dumps(entry("y", kind="rate_limited", state="closed", cooldown_for_s=86_400.0)))
    barrier(raw, channel, a, b)
    for mw in (a, b):
        assert mw.failover.state("x") is CircuitState.OPEN
        assert 0 < mw.failover.breaker_info("x")["open_for_s"] <= fast_failover.max_ejection_s
        assert 0 < mw.failover.breaker_info("y")["cooldown_for_s"] <= fast_failover.max_rate_limit_cooldown_s


def test_a_republished_update_never_breaks_the_store_or_floods_the_log(pair, raw, cluster, caplog):
    caplog.set_level(logging.WARNING, logger=STORE_LOG)
    a, b = pair
    _, _, channel = keys(cluster)
    raw.publish(channel, json.dumps(entry("x", open_for_s=1e308)))
    raw.publish(channel, json.dumps(entry("y", open_for_s=math.inf)))
    barrier(raw, channel, a, b)
    blip(raw, a, b)  # each replica republishes its view
    time.sleep(0.5)  # what used to be a reconnect storm happens in this time
    for mw in (a, b):
        assert store_of(mw)["connected"] and store_of(mw)["errors"] <= 1
    assert len(store_warnings(caplog, "unreachable")) <= 2  # at most one per store for the blip
    trip(a, "z")
    wait_until(lambda: b.failover.state("z") is CircuitState.OPEN, 5.0, "B to see A's trip")


def test_a_huge_local_ejection_is_shared_within_bounds(redis_server, make_replica, cluster, caplog):
    """A config allowing 1e308 s used to overflow the TTL computation and disconnect the store in a loop."""
    caplog.set_level(logging.WARNING, logger=STORE_LOG)
    huge = FailoverConfig.preset("aggressive", base_ejection_s=1e308, max_ejection_s=1e308, jitter=0.0)
    stores = [RedisStateStore(redis_server.url, cluster=cluster, reconnect_max_s=0.2) for _ in range(2)]
    a, b = make_replica(stores[0], failover=huge), make_replica(stores[1])
    assert all(s.wait_connected(10.0) for s in stores)
    trip(a, "x")
    wait_until(lambda: b.failover.state("x") is CircuitState.OPEN, 5.0, "B to see A's trip")
    assert b.failover.breaker_info("x")["open_for_s"] <= b.failover.config.max_ejection_s
    time.sleep(0.3)
    assert store_of(a)["errors"] == 0 and store_of(a)["connected"]
    assert not [r for r in caplog.records if r.name == STORE_LOG]


@pytest.mark.parametrize(
    "poison",
    [
        {"sent_at": 1e300},
        {"sent_at": 1e300, "open_for_s": "NaN"},
        {"sent_at": "Infinity"},
        {"sent_at": None},
        {"sent_at": time.time() + 86_400.0},  # well-formed but a day ahead of every clock
        {"sent_at": 1e300, "provider_id": "another"},
    ],
)
def test_the_write_script_overwrites_a_stored_entry_with_an_insane_sent_at(pair, raw, cluster, poison):
    a, b = pair
    breakers, cooldowns, _ = keys(cluster)
    bad = {**entry("x", kind="reset", state="closed", open_for_s=0.0), **poison}
    text = json.dumps(bad).replace('"NaN"', "NaN").replace('"Infinity"', "Infinity")
    raw.hset(breakers, "x", text.encode())
    raw.hset(cooldowns, "y", text.replace('"reset"', '"rate_limited"').replace('"x"', '"y"').encode())
    trip(a, "x")
    wait_until(lambda: b.failover.state("x") is CircuitState.OPEN, 5.0, "B to see A's trip")
    a.record(Outcome("y", False, 0.1, error_kind=ErrorKind.RATE_LIMITED, retry_after_s=30.0))
    wait_until(lambda: b.failover.breaker_info("y")["cooldown_for_s"] > 25, 5.0, "B to cool y down")
    assert store_of(a)["stale"] == 0 and store_of(a)["repaired"] == 2
    for key, pid in ((breakers, b"x"), (cooldowns, b"y")):
        assert json.loads(raw.hget(key, pid))["origin"] == a.failover.replica_id


def test_a_clock_far_ahead_is_refused_on_the_channel_and_logged_once(pair, raw, cluster, caplog):
    caplog.set_level(logging.WARNING, logger=STORE_LOG)
    a, b = pair
    _, _, channel = keys(cluster)
    for pid in ("x", "y"):
        raw.publish(channel, json.dumps(entry(pid, sent_at=time.time() + MAX_CLOCK_AHEAD_S + 60.0)))
    barrier(raw, channel, a, b)
    assert b.failover.state("x") is CircuitState.CLOSED and b.failover.state("y") is CircuitState.CLOSED
    assert store_of(b)["malformed_reasons"] == {"clock": 2}
    assert len(store_warnings(caplog, "ahead of this host's clock")) == 2  # once per store
    raw.publish(channel, json.dumps(entry("z", sent_at=time.time() + 5.0)))  # small skew is fine
    wait_until(lambda: b.failover.state("z") is CircuitState.OPEN, 5.0, "B to accept a small skew")


@pytest.mark.parametrize(
    "url",
    [
        "redis://TOKEN-s3cr3t@127.0.0.1:{port}/0",
        "redis://TOKEN-s3cr3t:@127.0.0.1:{port}/0",
        "redis://user:TOKEN-s3cr3t@127.0.0.1:{port}/0",
        "redis://127.0.0.1:{port}/0?password=TOKEN-s3cr3t",
    ],
)
def test_a_token_anywhere_in_the_url_never_reaches_stats_or_logs(tmp_path, make_replica, caplog, url):
    server = RedisServer(require_redis_server(), tmp_path)  # nothing listens: the outage warning is logged
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="pi_builder_middleware")  # whatever level an earlier test left it at
    store = RedisStateStore(url.format(port=server.port), reconnect_max_s=0.05)
    mw = make_replica(store)
    wait_until(lambda: store_warnings(caplog, "unreachable"), 5.0, "the outage warning")  # logged after counting
    assert "TOKEN" not in json.dumps(mw.stats(), default=str) and "TOKEN" not in caplog.text
    assert store.url == f"redis://***@127.0.0.1:{server.port}/0" or "@" not in url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://tok@[::1]:6379/0", "redis://***@[::1]:6379/0"),
        ("rediss://default:pw@cache.internal/2?ssl_cert_reqs=none", "rediss://***@cache.internal/2"),
        ("unix:///run/redis.sock?password=pw", "unix:///run/redis.sock"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
    ],
)
def test_the_url_is_shown_without_user_info_or_query(url, shown):
    assert RedisStateStore(url).url == shown


def test_a_write_redis_refuses_is_counted_and_logged_once_and_the_store_stays_up(own_redis, replica_on, caplog):
    """A refused write used to count as an outage: resync, republish, refused again — a warning storm."""
    caplog.set_level(logging.WARNING, logger=STORE_LOG)
    a, b = replica_on(own_redis.url), replica_on(own_redis.url)
    client = own_redis.client()
    client.config_set("maxmemory", "1")  # every write is refused with OOM from now on
    try:
        trip(a, "x")
        trip(a, "y")
        wait_until(lambda: store_of(a)["write_errors"] >= 2, 5.0, "the refused writes to be counted")
        time.sleep(0.5)  # what used to be a reconnect storm happens in this time
        stats = store_of(a)
        assert stats["connected"] and stats["disconnects"] == 0 and stats["last_error"] == "OutOfMemoryError"
        logged = [r.getMessage() for r in caplog.records if r.name == STORE_LOG]
        assert len(logged) == 1 and "OutOfMemoryError" in logged[0]
    finally:
        client.config_set("maxmemory", "0")
    # the refused trips are sent again by a resync (reconnect_max_s later), and new ones go through
    wait_until(
        lambda: b.failover.state("x") is CircuitState.OPEN and b.failover.state("y") is CircuitState.OPEN,
        5.0,
        "B to get the trips Redis refused once it takes writes again",
    )
    trip(a, "z")
    wait_until(lambda: b.failover.state("z") is CircuitState.OPEN, 5.0, "B to see A's next trip")
    assert store_of(a)["disconnects"] == 0


@pytest.mark.parametrize("setting", ["ttl_s", "connect_timeout_s", "reconnect_max_s", "max_queue"])
@pytest.mark.parametrize("value", [math.inf, math.nan, -1.0])
def test_settings_must_be_finite_numbers(setting, value):
    with pytest.raises(ConfigError, match=setting):
        RedisStateStore("redis://127.0.0.1:1/0", **{setting: value})


def test_the_ttl_is_at_most_a_year():
    with pytest.raises(ConfigError, match="ttl_s"):
        RedisStateStore("redis://127.0.0.1:1/0", ttl_s=1e300)  # would overflow PEXPIRE
