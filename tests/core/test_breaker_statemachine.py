"""FailoverManager against a reference model of the breaker, driven by a hypothesis state machine.

The model below is written from the documented semantics, not from the implementation:

- CLOSED trips OPEN after ``consecutive_failures`` health failures in a row, or when the calls
  recorded in the last ``window_s`` seconds (at least ``minimum_calls``) failed at
  ``failure_rate_threshold`` or more;
- OPEN lasts ``base * multiplier^(trips-1)`` seconds, capped at ``max_ejection_s`` (jitter 0 here);
  the trip count is forgotten once the breaker has stayed CLOSED for longer than ``trip_memory_s``;
- then HALF_OPEN hands out at most ``half_open_max_calls`` trial permits (a permit whose outcome never
  comes back expires after ``half_open_permit_timeout_s``); ``recovery_successes`` successes close
  it, one health failure re-opens it;
- a 429 cools the provider down without touching the breaker: for its Retry-After (at most
  ``max_rate_limit_cooldown_s``), else for ``rate_limit_base_cooldown_s`` doubled per further 429 of
  the streak, at most ``default_rate_limit_cooldown_s``. A 429 after the cooldown ended but within
  ``rate_limit_streak_s`` of its end extends the streak; one during the cooldown leaves it; a later
  one starts again at 1. A success ends the streak and lifts the backoff cooldown (not a Retry-After);
- context-window, content-policy, auth and bad-request errors never touch the breaker either;
- with ``max_ejection_percent=50`` (two providers: one may be out), a CLOSED provider does not trip
  while the other one is OPEN or HALF_OPEN (a failed trial still re-opens).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from pi_builder_middleware.plugins.policies import DefaultPolicy

from pi_builder_middleware import (
    CircuitState,
    ErrorKind,
    EventKind,
    FailoverConfig,
    FailoverEvent,
    FailoverManager,
    ManualClock,
    Middleware,
    Outcome,
    Provider,
)

PIDS = ("a", "b")
HEALTH_FAILURES = (
    ErrorKind.SERVER_ERROR,
    ErrorKind.TIMEOUT,
    ErrorKind.CONNECTION,
    ErrorKind.OVERLOADED,
    ErrorKind.UNKNOWN,
)
NON_HEALTH = (ErrorKind.CONTEXT_WINDOW, ErrorKind.CONTENT_POLICY, ErrorKind.AUTH, ErrorKind.BAD_REQUEST)
CIRCUIT_EVENTS = (EventKind.BLACKLIST, EventKind.HALF_OPEN, EventKind.RECOVERY, EventKind.RESET)
# Dyadic numbers only, so that model and engine compute bit-identical deadlines.
STEPS = (0.25, 0.5, 1.0, 2.0, 4.0, 16.0, 64.0)


@st.composite
def breaker_configs(draw: st.DrawFn) -> FailoverConfig:
    base = draw(st.sampled_from([1.0, 2.0, 4.0]))
    default_cooldown = draw(st.sampled_from([0.0, 2.0, 5.0]))
    base_cooldown = draw(st.sampled_from([0.0, 0.25, 1.0, 4.0]))  # 4.0 > a 2.0 cap: the cap wins
    return FailoverConfig(
        consecutive_failures=draw(st.integers(1, 4)),
        failure_rate_threshold=draw(st.sampled_from([0.25, 0.5, 0.75, 1.0])),
        minimum_calls=draw(st.integers(1, 6)),
        window_s=draw(st.sampled_from([4.0, 16.0, 64.0])),
        base_ejection_s=base,
        ejection_multiplier=draw(st.sampled_from([1.0, 1.5, 2.0, 3.0])),
        max_ejection_s=base * draw(st.sampled_from([1.0, 4.0, 16.0, 64.0])),
        jitter=0.0,
        half_open_max_calls=draw(st.integers(1, 3)),
        recovery_successes=draw(st.integers(1, 3)),
        half_open_permit_timeout_s=draw(st.sampled_from([2.0, 8.0, 1000.0])),
        rate_limit_base_cooldown_s=base_cooldown,
        default_rate_limit_cooldown_s=default_cooldown,
        rate_limit_streak_s=draw(st.sampled_from([0.0, 2.0, 16.0])),
        max_rate_limit_cooldown_s=default_cooldown + draw(st.sampled_from([0.0, 8.0, 64.0])),
        # Shorter and longer than the ejections, so a memory shorter than one ejection is exercised.
        trip_memory_s=draw(st.sampled_from([0.0, 3.0, 20.0, 100.0, 10_000.0])),
        max_events=draw(st.sampled_from([5, 1000])),
        max_ejection_percent=draw(st.sampled_from([None, 50.0])),
    )


def expected_ejection(cfg: FailoverConfig, trips: int) -> float:
    """base × multiplier^(trips-1), capped; computed by repeated multiplication (no overflow)."""
    value = cfg.base_ejection_s
    for _ in range(trips - 1):
        if value >= cfg.max_ejection_s:
            break
        value *= cfg.ejection_multiplier
    return min(value, cfg.max_ejection_s)


@dataclass
class BreakerModel:
    """The expected breaker of one provider."""

    cfg: FailoverConfig
    state: CircuitState = CircuitState.CLOSED
    open_until: float = 0.0
    retry_after_until: float = 0.0  # Retry-After cooldowns: only time ends them
    backoff_until: float = 0.0  # cooldowns chosen without Retry-After: a success ends them
    streak: int = 0
    streak_until: float = -math.inf
    trips: int = 0
    closed_at: float = -math.inf  # when it last recovered; trips are forgotten trip_memory_s later
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    window: list[tuple[float, bool]] = field(default_factory=list)
    permits: list[float] = field(default_factory=list)
    last_ejection: float | None = None

    @property
    def cooldown_until(self) -> float:
        return max(self.retry_after_until, self.backoff_until)

    def refresh(self, now: float) -> None:
        if self.state is CircuitState.OPEN and now >= self.open_until:
            self.state = CircuitState.HALF_OPEN
            self.consecutive_successes = 0
            self.permits.clear()

    def reason(self, now: float) -> str | None:
        """'open', 'half-open', 'rate limited' or None (available)."""
        if self.state is CircuitState.OPEN:
            return "open"
        if self.state is CircuitState.HALF_OPEN:
            self.permits = [t for t in self.permits if t + self.cfg.half_open_permit_timeout_s > now]
            if len(self.permits) >= self.cfg.half_open_max_calls:
                return "half-open"
        if now < self.cooldown_until:
            return "rate limited"
        return None

    def acquire(self, now: float) -> bool:
        self.refresh(now)
        ok = self.reason(now) is None
        if ok and self.state is CircuitState.HALF_OPEN:
            self.permits.append(now)
        return ok

    def record(
        self,
        now: float,
        ok: bool,
        kind: ErrorKind | None = None,
        retry_after: float | None = None,
        probe: bool = False,
        may_eject: bool = True,
    ) -> float | None:
        """Apply one outcome; returns the ejection time if it tripped the breaker."""
        self.refresh(now)
        if self.state is CircuitState.HALF_OPEN and self.permits:
            self.permits.pop(0)
        if ok:
            self.consecutive_failures = 0
            self.streak = 0
            self.backoff_until = 0.0
            if self.state is CircuitState.CLOSED:
                self._push(now, failed=False)
            elif self.state is CircuitState.OPEN:
                if probe:
                    self.state = CircuitState.HALF_OPEN
                    self.consecutive_successes = 0
                    self.permits.clear()
            else:
                self.consecutive_successes += 1
                if self.consecutive_successes >= self.cfg.recovery_successes:
                    self.state = CircuitState.CLOSED
                    self.closed_at = now
                    self.window.clear()
                    self.permits.clear()
            return None
        assert kind is not None
        if kind is ErrorKind.RATE_LIMITED:
            if self.streak == 0 or now > self.streak_until:
                self.streak = 1
            elif now >= self.cooldown_until:
                self.streak += 1
            if retry_after is None:
                wait = min(
                    self.cfg.rate_limit_base_cooldown_s * 2 ** (self.streak - 1), self.cfg.default_rate_limit_cooldown_s
                )
                self.backoff_until = max(self.backoff_until, now + wait)
            else:
                wait = min(max(retry_after, 0.0), self.cfg.max_rate_limit_cooldown_s)
                self.retry_after_until = max(self.retry_after_until, now + wait)
            self.streak_until = self.cooldown_until + self.cfg.rate_limit_streak_s
            return None
        if not kind.is_health_failure:
            return None
        self.consecutive_failures += 1
        if self.state is CircuitState.OPEN:
            return None
        if self.state is CircuitState.HALF_OPEN:
            return self._trip(now)
        self._push(now, failed=True)
        failures = sum(1 for _, failed in self.window if failed)
        if may_eject and (
            self.consecutive_failures >= self.cfg.consecutive_failures
            or (
                len(self.window) >= self.cfg.minimum_calls
                and failures / len(self.window) >= self.cfg.failure_rate_threshold
            )
        ):
            return self._trip(now)
        return None

    def _push(self, now: float, *, failed: bool) -> None:
        self.window.append((now, failed))
        self.window = [(t, f) for t, f in self.window if t >= now - self.cfg.window_s]

    def _trip(self, now: float) -> float:
        if self.state is CircuitState.CLOSED and now - self.closed_at > self.cfg.trip_memory_s:
            self.trips = 0
            self.last_ejection = None
        self.trips += 1
        ejection = expected_ejection(self.cfg, self.trips)
        self.state = CircuitState.OPEN
        self.open_until = now + ejection
        self.consecutive_successes = 0
        self.window.clear()
        self.permits.clear()
        return ejection


class BreakerMachine(RuleBasedStateMachine):
    """Random outcomes, permits, time and resets against FailoverManager and the model."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(100.0)
        self.fm: FailoverManager
        self.cfg: FailoverConfig
        self.models: dict[str, BreakerModel] = {}
        self.seen_circuit: dict[str, CircuitState] = {}
        self.events: list[FailoverEvent] = []

    @initialize(cfg=breaker_configs())
    def setup(self, cfg: FailoverConfig) -> None:
        self.cfg = cfg
        self.fm = FailoverManager(cfg, policy=DefaultPolicy(), clock=self.clock)
        self.fm.subscribe(self._on_event)
        for pid in PIDS:
            self.fm.add_provider(pid)
            self.models[pid] = BreakerModel(cfg)
            self.seen_circuit[pid] = CircuitState.CLOSED

    def _on_event(self, event: FailoverEvent) -> None:
        self.events.append(event)
        if event.kind in CIRCUIT_EVENTS:
            self.seen_circuit[event.provider_id] = event.circuit

    @property
    def now(self) -> float:
        return self.clock()

    def _state_now(self, pid: str) -> CircuitState:
        model = self.models[pid]
        model.refresh(self.now)
        return model.state

    def _check_trip(self, pid: str, ejection: float | None) -> None:
        model = self.models[pid]
        info = self.fm.breaker_info(pid)
        assert info["trips"] == model.trips
        if ejection is None:
            return
        assert info["state"] == CircuitState.OPEN.value
        assert info["open_for_s"] == ejection == expected_ejection(self.cfg, model.trips)
        assert 0 < ejection <= self.cfg.max_ejection_s
        if model.last_ejection is not None:  # consecutive trips within the trip memory
            assert ejection >= model.last_ejection
        model.last_ejection = ejection
        assert self.events[-1].kind is EventKind.BLACKLIST and self.events[-1].provider_id == pid

    # -- rules ---------------------------------------------------------------------------------
    @rule(pid=st.sampled_from(PIDS), probe=st.booleans())
    def success(self, pid: str, probe: bool) -> None:
        self.fm.record(pid, True, probe=probe)
        self.models[pid].record(self.now, True, probe=probe)

    @rule(pid=st.sampled_from(PIDS), kind=st.sampled_from(HEALTH_FAILURES), probe=st.booleans())
    def health_failure(self, pid: str, kind: ErrorKind, probe: bool) -> None:
        other = self.models[PIDS[1 - PIDS.index(pid)]]
        may_eject = self.cfg.max_ejection_percent is None or other.state is CircuitState.CLOSED
        count = len(self.events)
        state = self.fm.record(pid, False, kind, probe=probe, detail="boom")
        ejection = self.models[pid].record(self.now, False, kind, probe=probe, may_eject=may_eject)
        if not may_eject and self.models[pid].state is CircuitState.CLOSED:
            assert EventKind.BLACKLIST not in [e.kind for e in self.events[count:]]
        assert state is self._state_now(pid)
        self._check_trip(pid, ejection)

    @rule(pid=st.sampled_from(PIDS), retry_after=st.sampled_from([None, 0.0, 0.5, 3.0, 10.0, 1000.0, -1.0]))
    def rate_limited(self, pid: str, retry_after: float | None) -> None:
        before = self.fm.state(pid)
        count = len(self.events)
        state = self.fm.record(pid, False, ErrorKind.RATE_LIMITED, retry_after)
        self.models[pid].record(self.now, False, ErrorKind.RATE_LIMITED, retry_after)
        assert state is before, "a 429 must not move the breaker"
        assert [e.kind for e in self.events[count:]] == [EventKind.RATE_LIMITED]

    @rule(pid=st.sampled_from(PIDS), kind=st.sampled_from(NON_HEALTH))
    def non_health_error(self, pid: str, kind: ErrorKind) -> None:
        before = self.fm.state(pid)
        info = self.fm.breaker_info(pid)
        count = len(self.events)
        state = self.fm.record(pid, False, kind, detail="nope")
        self.models[pid].record(self.now, False, kind)
        assert state is before, f"{kind} must not move the breaker"
        after = self.fm.breaker_info(pid)
        assert after["consecutive_failures"] == info["consecutive_failures"]
        assert after["trips"] == info["trips"]
        expected = [EventKind.CONFIG_ERROR] if kind.is_config_problem else []
        assert [e.kind for e in self.events[count:]] == expected

    @rule(pid=st.sampled_from(PIDS))
    def acquire(self, pid: str) -> None:
        expected = self.models[pid].acquire(self.now)
        state_before = self.models[pid].state
        got = self.fm.acquire(pid)
        assert got == expected
        if state_before is CircuitState.OPEN:
            assert not got, "an OPEN provider must never be acquirable"

    @rule(dt=st.sampled_from(STEPS))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule(pid=st.sampled_from((*PIDS, None)))
    def reset(self, pid: str | None) -> None:
        self.fm.reset(pid)
        for p in PIDS if pid is None else (pid,):
            self.models[p] = BreakerModel(self.cfg)
            assert self.seen_circuit[p] is CircuitState.CLOSED

    @rule()
    def read_stats(self) -> None:
        # Reading statistics may move OPEN to HALF_OPEN; subscribers must still hear about it.
        stats = self.fm.stats()
        for pid in PIDS:
            assert stats["providers"][pid]["state"] == self._state_now(pid).value

    @rule(pid=st.sampled_from(PIDS))
    def export_is_json_safe(self, pid: str) -> None:
        dumped = json.loads(json.dumps(self.fm.export(), allow_nan=False))
        assert dumped["providers"][pid]["state"] == self._state_now(pid).value
        assert len(dumped["event_log"]) <= self.cfg.max_events

    # -- invariants ----------------------------------------------------------------------------
    @invariant()
    def matches_model(self) -> None:
        if not self.models:
            return
        now = self.now
        for pid in PIDS:
            model = self.models[pid]
            expected_state = self._state_now(pid)
            assert self.fm.state(pid) is expected_state
            assert self.seen_circuit[pid] is expected_state, "subscribers missed a breaker transition"
            reason = self.fm.unavailable_reason(pid)
            expected_reason = model.reason(now)
            prefix = {None: None, "open": "circuit open", "half-open": "half-open", "rate limited": "rate limited"}
            if expected_reason is None:
                assert reason is None
            else:
                assert reason is not None and reason.startswith(prefix[expected_reason]), (reason, expected_reason)
            if expected_state is CircuitState.OPEN:
                assert reason is not None and "circuit open" in reason
            cooling = now < model.cooldown_until
            if expected_reason in (None, "rate limited"):
                assert cooling == ("rate limited" in (reason or ""))
            info = self.fm.breaker_info(pid)
            assert info["trips"] == model.trips
            assert info["consecutive_failures"] == model.consecutive_failures
            assert info["cooldown_for_s"] == max(model.cooldown_until - now, 0.0)
            assert info["rate_limit_streak"] == (model.streak if now <= model.streak_until else 0)
            assert 0.0 <= info["rate_limit_pressure"] < 1.0
            assert info["rate_limit_pressure"] == self.fm.rate_limit_pressure(pid)
            if expected_state is CircuitState.OPEN:
                assert 0 < info["open_for_s"] <= self.cfg.max_ejection_s
            # White-box: the engine's own permit queue never exceeds the limit.
            permits = self.fm._breakers[pid].permits
            assert len(permits) <= self.cfg.half_open_max_calls
            assert list(permits) == model.permits
        assert len(self.fm.events) <= self.cfg.max_events


BreakerMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestBreakerStateMachine = BreakerMachine.TestCase


# -- targeted regressions for what the machine found ------------------------------------------------


def _manager(clock: ManualClock, **overrides: float) -> FailoverManager:
    cfg = FailoverConfig(
        **{"consecutive_failures": 1, "base_ejection_s": 1.0, "max_ejection_s": 2.0, "jitter": 0.0, **overrides}
    )
    fm = FailoverManager(cfg, policy=DefaultPolicy(), clock=clock)
    fm.add_provider("a")
    return fm


def test_thousands_of_trips_do_not_overflow_the_ejection() -> None:
    """A provider down for days trips over and over; the ejection stays at the cap, record never raises."""
    clock = ManualClock()
    fm = _manager(clock)
    for _ in range(1500):
        fm.record("a", False, ErrorKind.TIMEOUT)
        assert fm.breaker_info("a")["open_for_s"] <= 2.0
        clock.advance(2.0)
        assert fm.state("a") is CircuitState.HALF_OPEN
    assert fm.breaker_info("a")["trips"] == 1500
    assert fm.record("a", False, ErrorKind.TIMEOUT) is CircuitState.OPEN
    assert fm.breaker_info("a")["open_for_s"] == 2.0


@pytest.mark.parametrize("multiplier", [1.0, 1.000001, 2.0, 1e6])
def test_policy_ejection_is_capped_for_any_trip_count(multiplier: float) -> None:
    import random

    cfg = FailoverConfig(base_ejection_s=1.0, ejection_multiplier=multiplier, max_ejection_s=50.0, jitter=0.5)
    policy, rng = DefaultPolicy(), random.Random(3)
    for trips in (1, 2, 10, 1_000, 10**6, 10**12):
        value = policy.ejection_s(trips, cfg, rng)
        assert 0 < value <= cfg.max_ejection_s
        assert math.isfinite(value)


def test_trip_count_survives_an_ejection_longer_than_the_trip_memory() -> None:
    """A provider that never recovered must not fall back to the base ejection (memory 3 s, ejections 1→2→4→8)."""
    clock = ManualClock()
    fm = _manager(clock, max_ejection_s=64.0, trip_memory_s=3.0)
    ejections = []
    for _ in range(5):
        fm.record("a", False, ErrorKind.SERVER_ERROR)
        ejections.append(fm.breaker_info("a")["open_for_s"])
        clock.advance(ejections[-1])
        assert fm.acquire("a")  # the trial call ...
    assert ejections == [1.0, 2.0, 4.0, 8.0, 16.0]  # ... fails each time
    fm.record("a", True)  # recovers (recovery_successes=2 by default: one more)
    fm.record("a", True)
    assert fm.state("a") is CircuitState.CLOSED
    clock.advance(2.0)  # healthy for less than the memory: the next trip keeps growing
    fm.record("a", False, ErrorKind.SERVER_ERROR)
    assert fm.breaker_info("a")["open_for_s"] == 32.0
    clock.advance(32.0)
    fm.record("a", True)
    fm.record("a", True)
    clock.advance(3.5)  # healthy for longer than the memory: back to the base ejection
    fm.record("a", False, ErrorKind.SERVER_ERROR)
    assert fm.breaker_info("a")["open_for_s"] == 1.0


def test_reading_stats_does_not_swallow_the_half_open_transition() -> None:
    """health()/stats()/export() move OPEN→HALF_OPEN lazily; the monitor must still learn about it."""
    clock = ManualClock()
    mw = Middleware(
        [Provider(id="a"), Provider(id="b")],
        clock=clock,
        load_entrypoints=False,
        failover=FailoverConfig.preset("aggressive", base_ejection_s=10.0, jitter=0.0),
    )
    for _ in range(2):
        mw.record(Outcome("a", False, error_kind=ErrorKind.SERVER_ERROR))
    assert mw.health("a").circuit is CircuitState.OPEN
    clock.advance(10.0)
    mw.stats()  # the first read after the ejection is a statistics read
    snapshot = mw.health("a")
    assert snapshot.circuit is CircuitState.HALF_OPEN
    assert mw.monitor.status("a").value == "unhealthy"  # not OFFLINE any more: it is being probed
    assert snapshot.status.value == "unhealthy"
    assert [e.kind for e in mw.failover.events if e.provider_id == "a"].count(EventKind.HALF_OPEN) == 1


@settings(max_examples=100, deadline=None)
@given(
    base=st.floats(0.01, 100.0),
    multiplier=st.floats(1.0, 10.0),
    cap=st.floats(1.0, 100.0),
    jitter=st.floats(0.0, 0.99),
    trips=st.integers(1, 5000),
    seed=st.integers(0, 2**32),
)
def test_jittered_ejection_stays_in_its_band(
    base: float, multiplier: float, cap: float, jitter: float, trips: int, seed: int
) -> None:
    import random

    cfg = FailoverConfig(base_ejection_s=base, ejection_multiplier=multiplier, max_ejection_s=base * cap, jitter=jitter)
    value = DefaultPolicy().ejection_s(trips, cfg, random.Random(seed))
    assert 0 < value <= cfg.max_ejection_s
    assert value >= min(base * (1 - jitter), cfg.max_ejection_s) * (1 - 1e-12)
