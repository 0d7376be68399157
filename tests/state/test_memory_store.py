"""Shared breaker state between replicas in one process (MemoryStateStore): the rules, on injected clocks."""

from __future__ import annotations

import json
import math

import pytest

from pi_builder_middleware import (
    BreakerUpdate,
    CircuitState,
    ConfigError,
    ErrorKind,
    EventKind,
    FailoverManager,
    HealthStatus,
    ManualClock,
    MemoryStateStore,
    Middleware,
    Outcome,
    Provider,
    StateStore,
)

FAIL = Outcome("x", False, 0.1, error_kind=ErrorKind.SERVER_ERROR)


def trip(mw: Middleware, pid: str = "x") -> None:
    for _ in range(mw.failover.config.consecutive_failures):
        mw.record(Outcome(pid, False, 0.1, error_kind=ErrorKind.SERVER_ERROR))
    assert mw.failover.state(pid) is CircuitState.OPEN


def update(
    pid: str = "x",
    *,
    kind: EventKind = EventKind.BLACKLIST,
    state: CircuitState = CircuitState.OPEN,
    open_for_s: float = 10.0,
    cooldown_for_s: float = 0.0,
    trips: int = 1,
    origin: str = "other",
    sent_at: float,
    seq: int = 1,
) -> BreakerUpdate:
    return BreakerUpdate(pid, kind, state, open_for_s, cooldown_for_s, trips, origin, sent_at, seq)


@pytest.fixture
def store(wall) -> MemoryStateStore:
    return MemoryStateStore(wall_clock=wall)


def test_stores_satisfy_the_protocol(store):
    assert isinstance(store, StateStore)


def test_trip_on_one_replica_opens_the_breaker_on_the_other(store, make_replica):
    a, b = make_replica(store, clock=ManualClock(100.0)), make_replica(store, clock=ManualClock(5000.0))
    assert b.select().provider.id == "x"
    trip(a)
    assert b.failover.state("x") is CircuitState.OPEN
    assert b.failover.breaker_info("x")["open_for_s"] == pytest.approx(10.0)  # on B's own clock
    assert b.select().provider.id != "x"
    assert "x" in b.select().excluded
    event = [e for e in b.failover.events if e.kind is EventKind.BLACKLIST][-1]
    assert event.detail.startswith(f"from replica {a.failover.replica_id}")
    assert b.health("x").status is HealthStatus.OFFLINE  # the monitor heard it through the event subscription
    assert b.failover.event_counts[EventKind.FAILURE] == 0  # B saw no failures itself


def test_remaining_time_is_converted_by_the_time_in_flight(wall, make_replica):
    clock = ManualClock(50.0)
    b = make_replica(MemoryStateStore(wall_clock=wall), clock=clock)
    assert b.failover.apply_update(update(open_for_s=10.0, sent_at=wall() - 3.0))
    assert b.failover.breaker_info("x")["open_for_s"] == pytest.approx(7.0)
    clock.advance(6.9)
    assert b.failover.state("x") is CircuitState.OPEN
    clock.advance(0.2)
    assert b.failover.state("x") is CircuitState.HALF_OPEN


def test_sender_clock_ahead_does_not_extend_the_ejection(wall, make_replica):
    b = make_replica(MemoryStateStore(wall_clock=wall))
    b.failover.apply_update(update(open_for_s=10.0, sent_at=wall() + 2.0))  # sender's clock 2 s ahead
    assert b.failover.breaker_info("x")["open_for_s"] == pytest.approx(10.0)


def test_a_stale_open_arrives_already_over(wall, make_replica):
    b = make_replica(MemoryStateStore(wall_clock=wall))
    b.failover.apply_update(update(open_for_s=10.0, sent_at=wall() - 30.0))
    assert b.failover.state("x") is CircuitState.HALF_OPEN  # ejection ended elsewhere long ago: trial calls
    assert b.select().trial


def test_replica_started_later_gets_the_current_view_with_elapsed_time(store, wall, make_replica):
    a = make_replica(store)
    trip(a)
    wall.advance(4.0)
    late = make_replica(store, clock=ManualClock(9000.0))
    assert late.failover.state("x") is CircuitState.OPEN
    assert late.failover.breaker_info("x")["open_for_s"] == pytest.approx(6.0)
    assert late.failover.breaker_info("x")["trips"] == 1


def test_rate_limit_cooldown_is_shared_and_only_extends(store, wall, make_replica):
    a, b = make_replica(store), make_replica(store)
    a.record(Outcome("x", False, 0.1, error_kind=ErrorKind.RATE_LIMITED, retry_after_s=20.0))
    assert b.failover.breaker_info("x")["cooldown_for_s"] == pytest.approx(20.0)
    assert "rate limited" in (b.failover.unavailable_reason("x") or "")
    assert b.failover.state("x") is CircuitState.CLOSED  # a 429 is not a breaker failure, here or there
    b.record(Outcome("y", False, 0.1, error_kind=ErrorKind.RATE_LIMITED, retry_after_s=50.0))
    wall.advance(1.0)
    a.record(Outcome("y", False, 0.1, error_kind=ErrorKind.RATE_LIMITED, retry_after_s=5.0))  # shorter: no effect
    assert b.failover.breaker_info("y")["cooldown_for_s"] == pytest.approx(50.0)
    assert a.failover.breaker_info("y")["cooldown_for_s"] == pytest.approx(50.0)  # B's (local clocks stood still)


def test_a_burst_of_429s_is_shared_once(store, wall, make_replica):
    a, b = make_replica(store), make_replica(store)
    limited = Outcome("x", False, 0.1, error_kind=ErrorKind.RATE_LIMITED, retry_after_s=20.0)
    for _ in range(10):  # calls that were in flight together all come back 429
        a.record(limited)
        wall.advance(0.001)
    assert store.stats()["published"] == 1
    assert b.failover.breaker_info("x")["cooldown_for_s"] == pytest.approx(20.0)
    a.record(Outcome("x", False, 0.1, error_kind=ErrorKind.RATE_LIMITED, retry_after_s=40.0))  # a longer one is news
    assert store.stats()["published"] == 2
    assert b.failover.breaker_info("x")["cooldown_for_s"] == pytest.approx(40.0)


def test_recovery_propagates(store, make_replica):
    ca, cb = ManualClock(0.0), ManualClock(0.0)
    a, b = make_replica(store, clock=ca), make_replica(store, clock=cb)
    trip(a)
    ca.advance(10.0)
    decision = a.select()
    assert decision.trial and decision.provider.id == "x"
    a.record(Outcome("x", True, 0.1))
    assert a.failover.state("x") is CircuitState.CLOSED
    assert b.failover.state("x") is CircuitState.CLOSED  # B's own ejection would have lasted 10 s more
    assert b.select().provider.id == "x"
    assert [e.kind for e in b.failover.events][-1] is EventKind.RECOVERY
    assert b.health("x").status is not HealthStatus.OFFLINE


def test_reset_propagates(store, make_replica):
    a, b = make_replica(store), make_replica(store)
    trip(a)
    a.failover.reset("x")
    assert b.failover.state("x") is CircuitState.CLOSED
    assert b.failover.breaker_info("x")["trips"] == 0


def test_later_timestamp_wins_and_older_news_is_ignored(wall, make_replica):
    b = make_replica(MemoryStateStore(wall_clock=wall))
    now = wall()
    assert b.failover.apply_update(update(sent_at=now, origin="r1"))
    closed = dict(kind=EventKind.RECOVERY, state=CircuitState.CLOSED, open_for_s=0.0)
    assert not b.failover.apply_update(update(sent_at=now - 1.0, origin="r2", **closed))  # older: ignored
    assert b.failover.state("x") is CircuitState.OPEN
    assert not b.failover.apply_update(update(sent_at=now, origin="r0", **closed))  # same time: origin breaks tie
    assert b.failover.state("x") is CircuitState.OPEN
    assert b.failover.apply_update(update(sent_at=now, origin="r3", **closed))
    assert b.failover.state("x") is CircuitState.CLOSED
    assert b.failover.stats()["store"]["replica_ignored_stale"] == 2


def test_local_transition_after_remote_news_wins_even_against_a_fast_clock(store, wall, make_replica):
    a, b = make_replica(store), make_replica(store)
    future = update(
        kind=EventKind.RECOVERY, state=CircuitState.CLOSED, open_for_s=0.0, origin="fast-clock", sent_at=wall() + 100.0
    )
    a.failover.apply_update(future)
    b.failover.apply_update(future)
    trip(b)  # after seeing the recovery, so later than it whatever the clocks say
    assert a.failover.state("x") is CircuitState.OPEN
    latest = [u for u in b.failover.shared_updates() if u.provider_id == "x"]
    assert latest[0].origin == b.failover.replica_id and latest[0].sent_at > future.sent_at


def test_own_echoes_and_unknown_providers_are_ignored(wall, make_replica):
    b = make_replica(MemoryStateStore(wall_clock=wall))
    assert not b.failover.apply_update(update(origin=b.failover.replica_id, sent_at=wall()))
    assert b.failover.state("x") is CircuitState.CLOSED
    assert not b.failover.apply_update(update("nobody-knows", sent_at=wall()))
    assert "nobody-knows" not in b.providers
    store_stats = b.failover.stats()["store"]
    assert store_stats["replica_ignored_echo"] == 1
    assert store_stats["replica_ignored_unknown"] == 1


def test_provider_added_later_adopts_the_shared_state(store, make_replica):
    a = make_replica(store, providers=("x", "late"))
    b = make_replica(store, providers=("x",))
    trip(a, "late")
    assert "late" not in b.providers
    b.add_provider(Provider(id="late"))
    assert b.failover.state("late") is CircuitState.OPEN
    assert b.health("late").status is HealthStatus.OFFLINE


def test_half_open_trial_permits_stay_local(store, make_replica):
    ca, cb = ManualClock(0.0), ManualClock(0.0)
    a, b = make_replica(store, clock=ca), make_replica(store, clock=cb)
    trip(a)
    ca.advance(10.0)
    cb.advance(10.0)
    assert a.select().provider.id == "x"  # takes A's only trial permit (half_open_max_calls=1)
    assert a.select().provider.id != "x"
    assert b.select().provider.id == "x"  # B probes with its own allowance
    assert b.failover.state("x") is CircuitState.HALF_OPEN


def test_a_failed_trial_elsewhere_reopens_with_the_grown_ejection(store, make_replica):
    ca, cb = ManualClock(0.0), ManualClock(0.0)
    a, b = make_replica(store, clock=ca), make_replica(store, clock=cb)
    trip(a)
    ca.advance(10.0)
    cb.advance(10.0)
    assert b.failover.state("x") is CircuitState.HALF_OPEN
    a.select()
    a.record(FAIL)
    info = b.failover.breaker_info("x")
    assert info["state"] == "open" and info["trips"] == 2 and info["open_for_s"] == pytest.approx(20.0)


def test_a_broken_subscriber_on_the_receiver_never_fails_the_sender(store, make_replica):
    a, b = make_replica(store), make_replica(store)

    def broken(_event: object) -> None:
        raise RuntimeError("observer bug")

    b.failover.subscribe(broken)
    trip(a)  # would raise here if delivery errors leaked into the request
    assert b.failover.state("x") is CircuitState.OPEN
    # the manager guards its subscribers itself: the store sees no error, b counts the subscriber's
    assert store.stats()["errors"] == 0
    assert b.failover.callback_failures.snapshot()["failover_subscriber"] >= 1


def test_close_detaches_the_replica(store, make_replica):
    a, b = make_replica(store), make_replica(store)
    assert store.stats()["replicas"] == 2
    b.close()
    assert store.stats()["replicas"] == 1
    assert b.failover.replica_id is None
    trip(a)
    assert b.failover.state("x") is CircuitState.CLOSED


def test_context_manager_closes(store):
    with Middleware([Provider(id="x")], state_store=store, load_entrypoints=False) as mw:
        assert store.stats()["replicas"] == 1
        assert mw.select().provider.id == "x"
    assert store.stats()["replicas"] == 0


def test_without_a_store_nothing_changes():
    mw = Middleware([Provider(id="x")], load_entrypoints=False)
    assert "store" not in mw.failover.stats()
    assert mw.failover.replica_id is None
    assert mw.failover.shared_updates() == []
    with pytest.raises(ConfigError, match="no state store"):
        mw.failover.apply_update(update(sent_at=0.0))
    mw.close()  # harmless


def test_a_store_must_be_a_store():
    with pytest.raises(ConfigError, match="state_store"):
        Middleware([Provider(id="x")], state_store="redis://localhost", load_entrypoints=False)  # type: ignore[arg-type]


def test_failover_manager_shares_directly(wall):
    store = MemoryStateStore(wall_clock=wall)
    a = FailoverManager("aggressive", store=store, replica_id="api-1", clock=ManualClock(0.0))
    b = FailoverManager("aggressive", store=store, replica_id="api-2", clock=ManualClock(0.0))
    for m in (a, b):
        m.add_provider("x")
    a.record("x", False, ErrorKind.TIMEOUT)
    a.record("x", False, ErrorKind.TIMEOUT)
    assert b.state("x") is CircuitState.OPEN
    assert b.events[-1].detail.startswith("from replica api-1")
    assert b.stats()["store"]["replica_id"] == "api-2"
    a.close()
    b.close()


@pytest.mark.parametrize(
    "bad",
    [
        {"open_for_s": math.nan},
        {"open_for_s": math.inf},
        {"cooldown_for_s": -1.0},
        {"sent_at": math.nan},
        {"trips": -1},
        {"origin": ""},
    ],
)
def test_an_update_breaking_the_wire_rules_is_ignored_whatever_store_delivers_it(store, make_replica, wall, bad):
    b = make_replica(store)
    assert not b.failover.apply_update(update(**{"sent_at": wall(), **bad}))
    assert b.failover.state("x") is CircuitState.CLOSED
    assert b.failover.stats()["store"]["replica_ignored_invalid"] == 1
    json.dumps(b.export(), allow_nan=False)


def test_an_update_stamped_far_ahead_of_this_clock_is_ignored(store, make_replica, wall):
    b = make_replica(store)
    assert not b.failover.apply_update(update(sent_at=wall() + 3600.0))
    assert b.failover.apply_update(update(sent_at=wall() + 5.0))  # a few seconds of skew are fine


def test_remote_times_are_clamped_to_this_replicas_bounds(store, make_replica, wall, fast_failover):
    b = make_replica(store)
    assert b.failover.apply_update(update(open_for_s=86_400.0, sent_at=wall()))
    assert b.failover.apply_update(
        update(
            "y",
            kind=EventKind.RATE_LIMITED,
            state=CircuitState.CLOSED,
            open_for_s=0.0,
            cooldown_for_s=86_400.0,
            sent_at=wall(),
        )
    )
    assert b.failover.breaker_info("x")["open_for_s"] == pytest.approx(fast_failover.max_ejection_s)
    assert b.failover.breaker_info("y")["cooldown_for_s"] == pytest.approx(fast_failover.max_rate_limit_cooldown_s)
    assert b.failover.stats()["store"]["replica_clamped"] == 2
    shared = {(u.provider_id, u.is_cooldown): u for u in b.failover.shared_updates()}
    assert shared["x", False].open_for_s == fast_failover.max_ejection_s  # a resync passes on the clamped times
    assert shared["y", True].cooldown_for_s == fast_failover.max_rate_limit_cooldown_s
