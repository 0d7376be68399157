"""Replicas that receive the same updates in different orders end with the same breakers (hypothesis)."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pi_builder_middleware import BreakerUpdate, CircuitState, EventKind, FailoverManager, ManualClock, MemoryStateStore
from pi_builder_middleware.state import MAX_CLOCK_AHEAD_S, MAX_SHARED_S, MAX_TRIPS, MalformedUpdate

WALL = 1_700_000_000.0
TRANSITIONS = {
    EventKind.BLACKLIST: CircuitState.OPEN,
    EventKind.HALF_OPEN: CircuitState.HALF_OPEN,
    EventKind.RECOVERY: CircuitState.CLOSED,
    EventKind.RESET: CircuitState.CLOSED,
}


@st.composite
def updates(draw: st.DrawFn) -> BreakerUpdate:
    kind = draw(st.sampled_from([*TRANSITIONS, EventKind.RATE_LIMITED]))
    state = TRANSITIONS.get(kind) or draw(st.sampled_from(list(CircuitState)))
    return BreakerUpdate(
        "x",
        kind,
        state,
        open_for_s=float(draw(st.integers(0, 30))) if state is CircuitState.OPEN else 0.0,
        cooldown_for_s=float(draw(st.integers(0, 30))),
        trips=draw(st.integers(0, 5)),
        origin=draw(st.sampled_from(["r1", "r2", "r3"])),
        sent_at=WALL - draw(st.integers(0, 20)),
        seq=draw(st.integers(1, 100)),
    )


def unique_versions(batch: list[BreakerUpdate]) -> list[BreakerUpdate]:
    # one origin never stamps two transitions alike (stamps strictly increase per replica)
    seen: set[tuple[bool, float, str]] = set()
    out = []
    for u in batch:
        key = (u.is_cooldown, u.sent_at, u.origin)
        if key not in seen:
            seen.add(key)
            out.append(u)
    return out


POLICY = FailoverManager("aggressive").policy  # looked up once: the plugin lookup is the slow part


def replica(store: MemoryStateStore, name: str) -> FailoverManager:
    m = FailoverManager("aggressive", policy=POLICY, store=store, replica_id=name, clock=ManualClock(500.0))
    m.add_provider("x")
    return m


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(updates(), min_size=1, max_size=12).map(unique_versions), data=st.data())
def test_any_delivery_order_gives_the_same_breaker(batch, data):
    store = MemoryStateStore(wall_clock=lambda: WALL)
    first, second = replica(store, "me-1"), replica(store, "me-2")
    for u in batch:
        first.apply_update(u)
    for u in data.draw(st.permutations(batch)):
        second.apply_update(u)
    a, b = first.breaker_info("x"), second.breaker_info("x")
    assert (a["state"], a["trips"]) == (b["state"], b["trips"])
    assert a["open_for_s"] == pytest.approx(b["open_for_s"])
    assert a["cooldown_for_s"] == pytest.approx(b["cooldown_for_s"])

    transitions = [u for u in batch if not u.is_cooldown]
    if transitions:  # and it is the newest transition's state, with its remaining time
        newest = max(transitions, key=lambda u: u.version)
        left = newest.open_for_s - (WALL - newest.sent_at)
        expected = newest.state
        if expected is CircuitState.OPEN and left <= 0:
            expected = CircuitState.HALF_OPEN  # its ejection is already over
        assert a["state"] == expected.value and a["trips"] == newest.trips
        if expected is CircuitState.OPEN:
            assert a["open_for_s"] == pytest.approx(left)
    cooldowns = [u.cooldown_ends_at - WALL for u in batch if u.is_cooldown]
    assert a["cooldown_for_s"] == pytest.approx(max([0.0, *cooldowns]))


@settings(max_examples=200)
@given(st.one_of(st.text(), st.binary(), st.dictionaries(st.text(max_size=12), st.none() | st.integers() | st.text())))
def test_parsing_foreign_messages_only_ever_raises_value_error(payload):
    text = json.dumps({**payload, "f": 1}) if isinstance(payload, dict) else payload
    with contextlib.suppress(ValueError):
        BreakerUpdate.from_json(text)


ANY_NUMBER = st.one_of(st.floats(), st.integers(-(10**30), 10**400), st.sampled_from([1e308, 10**400, -0.0]))


@settings(max_examples=300)
@given(
    fields=st.fixed_dictionaries(
        {
            "provider_id": st.sampled_from(["x", ""]) | st.integers(),
            "kind": st.sampled_from(["blacklist", "failure", 3]),
            "state": st.sampled_from(["open", "shut"]),
            "open_for_s": ANY_NUMBER,
            "cooldown_for_s": ANY_NUMBER,
            "trips": ANY_NUMBER,
            "origin": st.sampled_from(["r1", ""]),
            "sent_at": ANY_NUMBER | st.floats(WALL - 9, WALL + 9e3),
            "seq": ANY_NUMBER,
        }
    ),
    nested=st.integers(0, 3000),
)
def test_an_update_is_accepted_only_within_the_wire_rules(fields, nested):
    """Only MalformedUpdate ever escapes; what is accepted is finite, bounded, strict JSON."""
    for text in (json.dumps({"f": 1, **fields}), "[" * nested + "]" * nested):
        try:
            u = BreakerUpdate.from_json(text, wall_now=WALL)
        except MalformedUpdate:
            continue
        assert 0 <= u.open_for_s <= MAX_SHARED_S and 0 <= u.cooldown_for_s <= MAX_SHARED_S
        assert 0 <= u.sent_at <= WALL + MAX_CLOCK_AHEAD_S and 0 <= u.trips <= MAX_TRIPS
        assert BreakerUpdate.from_json(u.to_json()) == u


@pytest.mark.parametrize("text", [b"\xff\xfe", "NaN", '{"f": 1, "open_for_s": Infinity}', "[" * 100_000])
def test_bytes_that_are_not_strict_json_are_malformed(text):
    with pytest.raises(MalformedUpdate):
        BreakerUpdate.from_json(text)


@given(updates())
def test_wire_form_round_trips(u):
    assert BreakerUpdate.from_json(u.to_json()) == u
