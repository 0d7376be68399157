"""Property: whatever is written into the Redis hashes and channel, valid updates keep propagating.

Hypothesis writes arbitrary bytes, arbitrary JSON and well-formed updates with arbitrary numbers into
both hashes (under any field), onto the channel, and sometimes a key of another type where a hash
belongs, next to two live replicas on a real redis-server; then it cuts their connections (each
resyncs from the hashes) and checks that a reset and a trip made on one replica reach the other, and
that neither store is left disconnected, unbounded or unable to export strict JSON.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_support import wait_until

from pi_builder_middleware import CircuitState, EventKind, Middleware
from pi_builder_middleware.redis_store import RedisStateStore

from .conftest import PROVIDERS
from .test_redis_hardening import barrier, blip, entry, keys
from .test_redis_store import STORE_LOG, store_of, trip

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -0.0, 1e308, 2**53 + 1, 10**400, 366 * 86_400.0, 1e-300]),
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
provider_ids = st.sampled_from(PROVIDERS) | st.text(max_size=6)
NUMERIC = {"open_for_s", "cooldown_for_s", "trips", "seq", "sent_at"}


@st.composite
def updates_with_any_numbers(draw: st.DrawFn) -> str:
    """A well-formed update (stamped up to 12 days either side of now) with up to two fields replaced by
    any number or any JSON value."""
    fields: dict[str, Any] = {
        "provider_id": draw(st.sampled_from(PROVIDERS) | provider_ids),
        "kind": draw(st.sampled_from(["blacklist", "half_open", "recovery", "reset", "rate_limited"])),
        "state": draw(st.sampled_from(["open", "closed", "half_open"])),
        "open_for_s": draw(st.floats(0, 1e5)),
        "cooldown_for_s": draw(st.floats(0, 1e5)),
        "trips": draw(st.integers(0, 50)),
        "seq": draw(st.integers(0, 10**6)),
        "origin": "elsewhere",
        "sent_at": time.time() + draw(st.floats(-1e6, 1e6) | st.floats(-100, 400)),
    }
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=2)):
        fields[name] = draw(numbers if name in NUMERIC else json_values)
    return json.dumps(entry(**fields))


payloads = st.one_of(
    st.binary(max_size=64),
    json_values.map(json.dumps),
    updates_with_any_numbers(),
    updates_with_any_numbers(),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),  # nesting deeper than either JSON parser allows
)
junk = st.lists(
    st.tuples(
        st.sampled_from(["breakers", "cooldowns", "channel"]),
        st.sampled_from([p.encode() for p in PROVIDERS]) | st.binary(min_size=1, max_size=8),
        payloads,
    ),
    min_size=1,
    max_size=6,
)
wrong_type = st.sampled_from([None, None, None, "breakers-string", "cooldowns-list", "breakers-set"])


def inject(raw: Any, cluster: str, writes: list[tuple[str, bytes, bytes | str]], replace: str | None) -> None:
    breakers, cooldowns, channel = keys(cluster)
    raw.delete(breakers, cooldowns)  # each example starts from clean hashes: failures shrink to their cause
    if replace is not None:
        key = breakers if replace.startswith("breakers") else cooldowns
        raw.delete(key)
        {
            "string": lambda: raw.set(key, b"\x00junk"),
            "list": lambda: raw.rpush(key, b"a"),
            "set": lambda: raw.sadd(key, b"a"),
        }[replace.partition("-")[2]]()
    for target, field, payload in writes:
        if target == "channel":
            raw.publish(channel, payload)
            continue
        key = breakers if target == "breakers" else cooldowns
        if raw.type(key) in (b"hash", b"none"):
            raw.hset(key, field, payload)


def blacklists_from(receiver: Middleware, sender: Middleware, pid: str) -> int:
    origin = f"from replica {sender.failover.replica_id}"
    return sum(
        1
        for e in list(receiver.failover.events)
        if e.kind is EventKind.BLACKLIST and e.provider_id == pid and e.detail.startswith(origin)
    )


def test_valid_updates_still_propagate_whatever_sits_in_redis(redis_server, make_replica, cluster, raw, caplog):
    caplog.set_level(logging.WARNING, logger=STORE_LOG)
    pair = []
    for _ in range(2):
        store = RedisStateStore(redis_server.url, cluster=cluster, reconnect_max_s=0.2)
        pair.append(make_replica(store))
        assert store.wait_connected(10.0)
    blips = 0

    @settings(
        max_examples=50,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(writes=junk, replace=wrong_type, pid=st.sampled_from(PROVIDERS), forward=st.booleans())
    def check(writes: list[tuple[str, bytes, bytes | str]], replace: str | None, pid: str, forward: bool) -> None:
        nonlocal blips
        inject(raw, cluster, writes, replace)
        blip(raw, *pair)  # both resync from whatever the hashes hold now
        blips += 1
        barrier(raw, keys(cluster)[2], *pair)  # and have read whatever was put on the channel
        sender, receiver = pair if forward else pair[::-1]

        sender.reset(pid)
        wait_until(lambda: receiver.failover.state(pid) is CircuitState.CLOSED, 5.0, "the reset to arrive")
        seen = blacklists_from(receiver, sender, pid)
        trip(sender, pid)
        wait_until(lambda: blacklists_from(receiver, sender, pid) > seen, 5.0, "the trip to arrive")
        assert receiver.failover.state(pid) is CircuitState.OPEN
        assert receiver.failover.breaker_info(pid)["trips"] == sender.failover.breaker_info(pid)["trips"]

        for mw in pair:
            stats = store_of(mw)
            assert stats["connected"] and stats["errors"] <= 2 * blips, stats
            json.dumps(mw.export(), allow_nan=False)
            cfg = mw.failover.config
            for info in mw.failover.stats()["providers"].values():
                assert 0 <= info["open_for_s"] <= cfg.max_ejection_s
                assert 0 <= info["cooldown_for_s"] <= cfg.max_rate_limit_cooldown_s

    check()
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) <= 2 * blips
    assert not [r for r in caplog.records if "listener error" in r.getMessage()]
