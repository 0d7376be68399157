"""FailoverManager: one circuit breaker per provider, fed by classified outcomes.

States: CLOSED → (policy trips) → OPEN for an ejection time that grows on repeat trips (with jitter)
→ HALF_OPEN, which lets a limited number of trial calls through → CLOSED after enough successes in a
row, or OPEN again on a failure. A 429 puts the provider in a cooldown (its Retry-After, else a short
backoff that grows while it keeps refusing; see :class:`FailoverConfig`) without touching the breaker.
OPEN → HALF_OPEN happens lazily when the state is next read. A policy with peer ejections (``outlier``)
compares each group's CLOSED providers at most every ``outlier.interval_s``, when outcomes are recorded;
``max_ejection_percent`` caps how many of a group are out at once.

With a ``store`` (:mod:`pi_builder_middleware.state`), transitions and cooldowns are shared with the
other replicas attached to it: local ones are handed to the store after the lock is released, remote
ones are applied under the lock (see :mod:`pi_builder_middleware._replication` for the rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

from ._clock import Clock, monotonic_clock
from ._guard import CallbackFailures
from ._ratelimit import RateLimitTracker
from ._replication import Replicator
from ._validation import is_number, require
from .config import FailoverConfig
from .enums import CircuitState, ErrorKind, EventKind, FailoverPreset
from .errors import ConfigError
from .interfaces import BreakerWindow, FailoverPolicy, PeerEjection
from .models import FailoverEvent
from .probes import ProbeFn, check_loop, probe_all
from .state import BreakerUpdate, StateStore

__all__ = ["FailoverManager", "ProbeFn"]

_log = logging.getLogger(__name__)
_NUM = (float, int)
_INF = math.inf


def _check_record(ok: object, kind: object, retry_after_s: object) -> None:
    """The arguments of :meth:`FailoverManager.record` that its fast check did not accept, named."""
    require("ok", isinstance(ok, bool), "True or False", ok)
    require("kind", kind is None or isinstance(kind, ErrorKind), "an ErrorKind or None", kind)
    require("retry_after_s", retry_after_s is None or is_number(retry_after_s), "a finite number of seconds or None",
            retry_after_s)


class _Breaker:
    __slots__ = ("closed_at", "consecutive_failures", "consecutive_successes", "cooldown_until", "counts",
                 "open_until", "permits", "rl", "state", "trips", "window", "window_failures")

    def __init__(self) -> None:
        self.state = CircuitState.CLOSED
        self.open_until = 0.0
        self.cooldown_until = 0.0
        self.trips = 0
        self.closed_at = float("-inf")  # when it last recovered (trip memory counts from there)
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        self.window: deque[tuple[float, bool]] = deque()
        self.window_failures = 0
        self.permits: deque[float] = deque()
        self.counts: Counter[str] = Counter()
        self.rl = RateLimitTracker()


class FailoverManager:
    """Per-provider circuit breakers, rate-limit cooldowns, an event log and optional health checks.

    ``policy`` decides trips and ejection times; without one, the policy named in the config is
    looked up through the plugin hooks. ``subscribe`` receives every :class:`FailoverEvent` (the
    Middleware uses it to keep the monitor's view of breaker states current); a subscriber that
    raises is counted in :attr:`callback_failures`, never raised into the call that made the event.
    ``store`` shares breaker transitions with other replicas (``replica_id`` names this one; default:
    pid and a random suffix); :meth:`close` detaches from it.
    """

    def __init__(
        self,
        config: FailoverConfig | FailoverPreset | str | None = None,
        *,
        policy: FailoverPolicy | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        classify: Callable[[BaseException, str], ErrorKind] | None = None,
        store: StateStore | None = None,
        replica_id: str | None = None,
    ) -> None:
        self.config = FailoverConfig.coerce(config)
        if policy is None:
            from ._registries import build_registries

            policy = build_registries().policies.get(self.config.policy)
        self.policy = policy
        pct = self.config.max_ejection_percent
        self.max_ejection_percent = pct if pct is not None else policy.default_max_ejection_percent
        # Peer checks only for policies that override peer_ejections: others pay nothing per record.
        self._peer_checks = type(policy).peer_ejections is not FailoverPolicy.peer_ejections
        self._next_peer_check = float("-inf")
        self.peer_check_errors = 0  # peer_ejections calls that raised
        self.clock: Clock = clock or monotonic_clock
        self.rng = rng or random.Random()
        self._classify = classify or (lambda _e, _p: ErrorKind.UNKNOWN)
        self._breakers: dict[str, _Breaker] = {}
        self._groups: dict[str, str | None] = {}  # provider id -> its group (peers for outliers and the cap)
        self._lock = threading.Lock()
        self.events: deque[FailoverEvent] = deque(maxlen=self.config.max_events)
        self.event_counts: Counter[EventKind] = Counter()
        self._subscribers: list[Callable[[FailoverEvent], None]] = []
        self.callback_failures = CallbackFailures(_log)
        #: Providers that may be out (breaker not CLOSED, or cooling down): every other provider may
        #: be called, so the router asks :meth:`unavailable_reason` only about these. Entries are
        #: added with each state-changing event and dropped by :meth:`settle` once back in service.
        self.suspects: dict[str, None] = {}
        self._checker: asyncio.Task[None] | None = None
        self._replica: Replicator | None = None
        if store is not None:
            self._replica = Replicator(self, store, replica_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
            store.attach(self._replica)

    # -- providers -----------------------------------------------------------------------------
    def add_provider(self, provider_id: str, *, group: str | None = None) -> None:
        """Start a breaker (CLOSED) for ``provider_id``.

        ``group`` (e.g. ``Provider.group``, a model group) sets its peers for outlier detection and
        ``max_ejection_percent``; providers without one form one group together.
        """
        with self._lock:
            self._breakers.setdefault(provider_id, _Breaker())
            self._groups[provider_id] = group
        replica = self._replica
        if replica is not None:
            replica.adopt_cached(provider_id)

    def remove_provider(self, provider_id: str) -> None:
        """Forget a provider's breaker."""
        with self._lock:
            self._breakers.pop(provider_id, None)
            self._groups.pop(provider_id, None)
            self.suspects.pop(provider_id, None)
        replica = self._replica
        if replica is not None:
            replica.forget(provider_id)

    def subscribe(self, callback: Callable[[FailoverEvent], None]) -> Callable[[], None]:
        """Call ``callback`` for every event; returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    # -- hot path ------------------------------------------------------------------------------
    def state(self, provider_id: str) -> CircuitState:
        """The breaker state now (OPEN turns HALF_OPEN here once its ejection time is over)."""
        now = self.clock()
        with self._lock:
            b = self._breaker(provider_id)
            pending = self._refresh(provider_id, b, now)
            state = b.state
        self._emit(pending)
        return state

    def unavailable_reason(self, provider_id: str, now: float | None = None) -> str | None:
        """None if a call may be sent to the provider now, else why not."""
        b = self._breakers.get(provider_id)
        if now is None:
            now = self.clock()
        if b is not None and b.state is CircuitState.CLOSED and b.cooldown_until <= now:
            return None  # lock-free fast path: each field is replaced atomically; a racing trip is seen next call
        with self._lock:
            b = self._breaker(provider_id)
            pending = self._refresh(provider_id, b, now)
            reason = self._reason(b, now)
        self._emit(pending)
        return reason

    def available_at(self, provider_id: str) -> float:
        """When (the manager's clock) a call may next be sent to the provider: now if it may be sent now.

        An open breaker: the end of its ejection; a 429 cooldown: its end; a half-open provider whose
        trial permits are all taken: when the oldest permit times out (sooner if its outcome comes back).
        """
        now = self.clock()
        with self._lock:
            b = self._breaker(provider_id)
            pending = self._refresh(provider_id, b, now)
            at = b.open_until if b.state is CircuitState.OPEN else now
            if self._reason(b, now) is not None and b.state is CircuitState.HALF_OPEN and b.permits:
                at = b.permits[0] + self.config.half_open_permit_timeout_s
            at = max(at, b.cooldown_until)
        self._emit(pending)
        return at

    def acquire(self, provider_id: str) -> bool:
        """Claim the right to send one call: always for CLOSED, a trial permit for HALF_OPEN."""
        now = self.clock()
        b = self._breakers.get(provider_id)
        if b is not None and b.state is CircuitState.CLOSED and b.cooldown_until <= now:
            return True
        with self._lock:
            b = self._breaker(provider_id)
            pending = self._refresh(provider_id, b, now)
            ok = self._reason(b, now) is None
            if ok and b.state is CircuitState.HALF_OPEN:
                b.permits.append(now)
        self._emit(pending)
        return ok

    def settle(self, provider_id: str) -> None:
        """Drop ``provider_id`` from :attr:`suspects` if it is CLOSED with no cooldown (checked under the lock)."""
        now = self.clock()
        with self._lock:
            b = self._breakers.get(provider_id)
            if b is None or (b.state is CircuitState.CLOSED and b.cooldown_until <= now):
                self.suspects.pop(provider_id, None)

    def admit_early(self, provider_id: str) -> None:
        """Let one call through now although the provider is out (every other provider is out too).

        An OPEN breaker turns HALF_OPEN at once and the call is its trial (its outcome closes or
        re-opens the breaker as usual); a half-open provider whose permits are taken gets one more;
        a 429 cooldown is ignored for this call. The router calls this instead of failing a request
        with :class:`NoProviderAvailableError` (``RoutingConfig.when_all_out = "soonest"``).
        """
        now = self.clock()
        with self._lock:
            b = self._breaker(provider_id)
            pending = self._refresh(provider_id, b, now)
            b.counts["admitted_early"] += 1
            if b.state is CircuitState.OPEN:
                b.state = CircuitState.HALF_OPEN
                b.consecutive_successes = 0
                b.permits.clear()
                pending.append(self._event(EventKind.HALF_OPEN, provider_id, now,
                                           "every provider out: trial call ahead of schedule", b))
            if b.state is CircuitState.HALF_OPEN:
                b.permits.append(now)
        self._emit(pending)

    def release(self, provider_id: str) -> None:
        """Give back a half-open trial permit whose call never produced an outcome (e.g. cancelled).

        Without it the permit stays taken until ``half_open_permit_timeout_s``, and with the default
        single permit the provider gets no trial call for that long.
        """
        with self._lock:
            b = self._breakers.get(provider_id)
            if b is not None and b.state is CircuitState.HALF_OPEN and b.permits:
                b.permits.pop()

    def record(self, provider_id: str, ok: bool, kind: ErrorKind | None = None,
               retry_after_s: float | None = None, *, probe: bool = False, detail: str = "") -> CircuitState:
        """Feed one outcome to the provider's breaker; returns the state after it.

        ``ok`` is True or False, ``kind`` an :class:`ErrorKind` or None, ``retry_after_s`` a finite number
        of seconds (below 0 counts as 0) or None; anything else raises :class:`ConfigError` and changes
        nothing.
        """
        if (type(ok) is not bool or (kind is not None and type(kind) is not ErrorKind)
                or (retry_after_s is not None and not (type(retry_after_s) in _NUM and -_INF < retry_after_s < _INF))):
            _check_record(ok, kind, retry_after_s)
        return self._record(provider_id, ok, kind, retry_after_s, probe, detail)

    def _record(self, provider_id: str, ok: bool, kind: ErrorKind | None, retry_after_s: float | None, probe: bool,
                detail: str) -> CircuitState:
        """:meth:`record` with arguments already checked (the Middleware checks them once)."""
        now = self.clock()
        cfg = self.config
        with self._lock:
            b = self._breaker(provider_id)
            pending = self._refresh(provider_id, b, now)
            if b.state is CircuitState.HALF_OPEN and b.permits:
                b.permits.popleft()
            if not probe:
                b.rl.count(now, not ok and kind is ErrorKind.RATE_LIMITED, cfg.rate_limit_pressure_half_life_s)
            if ok:
                b.counts["successes"] += 1
                if b.rl.streak or b.cooldown_until > now:
                    b.cooldown_until = b.rl.on_success(b.cooldown_until)
                pending += self._on_success(provider_id, b, now, probe)
            else:
                kind = kind or ErrorKind.UNKNOWN
                b.counts[kind.value] += 1
                if probe:
                    pending.append(self._event(EventKind.PROBE, provider_id, now, f"probe failed: {detail}", b))
                if kind is ErrorKind.RATE_LIMITED:
                    b.cooldown_until, wait, why = b.rl.on_rate_limited(now, b.cooldown_until, retry_after_s, cfg)
                    # Only the provider's own Retry-After travels to other replicas: a backoff is this
                    # replica's guess, and shared it could not be lifted by a success seen elsewhere.
                    pending.append(self._event(EventKind.RATE_LIMITED, provider_id, now,
                                               f"cooling down {wait:.2f} s ({why})", b,
                                               share=retry_after_s is not None))
                elif kind.is_config_problem:
                    pending.append(self._event(EventKind.CONFIG_ERROR, provider_id, now,
                                               f"{kind.value}: {detail}".rstrip(": "), b))
                elif kind.is_health_failure:
                    pending += self._on_failure(provider_id, b, now, kind, detail)
            state = b.state
            if self._peer_checks and now >= self._next_peer_check:
                self._next_peer_check = now + cfg.outlier.interval_s
                pending += self._peer_check(now)
                state = b.state
        self._emit(pending)
        return state

    def rate_limit_pressure(self, provider_id: str, now: float | None = None) -> float:
        """Share of the provider's recent outcomes that were 429s, in [0, 1); 0 for an unknown id.

        Decayed with ``rate_limit_pressure_half_life_s`` (it fades without traffic too), lock-free and
        O(1): for strategies that lower a rate-limited provider's share before anything is ejected.
        """
        b = self._breakers.get(provider_id)
        if b is None:
            return 0.0
        return b.rl.pressure(self.clock() if now is None else now, self.config.rate_limit_pressure_half_life_s)

    def note_switch(self, from_id: str, to_id: str, why: str) -> None:
        """Log that a request moved from one provider to the next in its chain (nothing if ``from_id`` is gone)."""
        now = self.clock()
        with self._lock:
            b = self._breakers.get(from_id)
            if b is None:  # removed while its attempt ran
                return
            b.counts["switched_away"] += 1
            event = self._event(EventKind.SWITCH, from_id, now, f"-> {to_id}: {why}", b)
        self._emit([event])

    # -- management ----------------------------------------------------------------------------
    def reset(self, provider_id: str | None = None) -> None:
        """Close breakers and forget their history (one provider, or all)."""
        now = self.clock()
        pending = []
        with self._lock:
            ids = [provider_id] if provider_id is not None else list(self._breakers)
            for pid in ids:
                self._breaker(pid)
                self._breakers[pid] = fresh = _Breaker()
                pending.append(self._event(EventKind.RESET, pid, now, "breaker reset", fresh))
        self._emit(pending)

    def stats(self) -> dict[str, Any]:
        """Counts per provider and event kind, and current states."""
        now = self.clock()
        pending: list[FailoverEvent] = []
        with self._lock:
            providers = {}
            for pid, b in self._breakers.items():
                pending += self._refresh(pid, b, now)
                providers[pid] = self._info(b, now)
            out = {"providers": providers, "events": {k.value: n for k, n in self.event_counts.items()}}
            if self._peer_checks:
                out["peer_check_errors"] = self.peer_check_errors
        self._emit(pending)  # a transition made here must reach subscribers: _refresh will not repeat it
        replica = self._replica
        if replica is not None:
            out["store"] = replica.stats()
        return out

    def export(self) -> dict[str, Any]:
        """JSON-safe state: config, per-provider breakers, event log."""
        out = self.stats()
        out["config"] = self.config.model_dump(mode="json")
        out["policy"] = self.policy.name
        with self._lock:  # events are appended under the lock by other threads
            log = list(self.events)
        out["event_log"] = [e.to_dict() for e in log]
        return out

    def breaker_info(self, provider_id: str) -> dict[str, Any]:
        """State, trips and remaining times of one breaker (its entry of :meth:`stats`; O(1))."""
        now = self.clock()
        with self._lock:
            b = self._breaker(provider_id)
            pending = self._refresh(provider_id, b, now)
            info = self._info(b, now)
        self._emit(pending)
        return info

    def _info(self, b: _Breaker, now: float) -> dict[str, Any]:
        return {
            "state": b.state.value, "trips": b.trips, "consecutive_failures": b.consecutive_failures,
            "open_for_s": max(b.open_until - now, 0.0) if b.state is CircuitState.OPEN else 0.0,
            "cooldown_for_s": max(b.cooldown_until - now, 0.0),
            "rate_limit_streak": b.rl.streak if now <= b.rl.streak_until else 0,
            "rate_limit_pressure": b.rl.pressure(now, self.config.rate_limit_pressure_half_life_s),
            **dict(b.counts),
        }

    # -- shared state --------------------------------------------------------------------------
    @property
    def replica_id(self) -> str | None:
        """This replica's id in the shared store (None without a store)."""
        replica = self._replica
        return replica.replica_id if replica is not None else None

    def apply_update(self, update: BreakerUpdate) -> bool:
        """Apply another replica's breaker update (stores call this); True if it was news."""
        replica = self._replica
        if replica is None:
            raise ConfigError("store", "this FailoverManager has no state store; pass store=...")
        return replica.apply_update(update)

    def shared_updates(self) -> list[BreakerUpdate]:
        """The latest transition and live cooldown per provider, for a store to resync."""
        replica = self._replica
        return replica.shared_updates() if replica is not None else []

    def close(self) -> None:
        """Hand over staged updates and detach from the state store (its threads stop with its last replica)."""
        with self._lock:
            replica, self._replica = self._replica, None
        if replica is not None:
            replica.flush()
            replica.store.detach(replica)

    # -- health checks -------------------------------------------------------------------------
    def start_health_checks(self, probe: ProbeFn, interval_s: float, timeout_s: float | None = None) -> None:
        """Start an asyncio task that probes every provider each ``interval_s`` seconds.

        Must be called from a running event loop. Each provider's probe runs in its own task, so one that
        hangs holds back no other provider (see :mod:`pi_builder_middleware.probes`). A probe that returns
        False, raises or exceeds ``timeout_s`` (default: ``FailoverConfig.health_check_timeout_s``) counts
        as a failure of that provider; a successful probe of an OPEN provider moves it to HALF_OPEN early.
        """
        require("interval_s", is_number(interval_s) and interval_s > 0, "a finite number of seconds > 0", interval_s)
        require("timeout_s", timeout_s is None or (is_number(timeout_s) and timeout_s > 0),
                "a finite number of seconds > 0, or None", timeout_s)
        timeout = self._probe_timeout(timeout_s)
        if self._checker is not None and not self._checker.done():
            raise ConfigError("health_checks", "already running; call stop_health_checks() first")
        self._checker = asyncio.get_running_loop().create_task(check_loop(self, probe, interval_s, timeout))

    async def stop_health_checks(self) -> None:
        """Stop the health-check task (and the probes it is running) and wait for it to end."""
        task, self._checker = self._checker, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_health_checks_once(self, probe: ProbeFn, timeout_s: float | None = None) -> None:
        """Probe every provider once, concurrently, each within ``timeout_s`` (default: the config's)."""
        await probe_all(self, probe, self._probe_timeout(timeout_s))

    def provider_ids(self) -> list[str]:
        """Providers with a breaker, in the order they were added."""
        return list(self._breakers)

    def classify(self, error: BaseException, provider_id: str) -> ErrorKind:
        """What ``error`` from ``provider_id`` means, by the classifier given at construction."""
        return self._classify(error, provider_id)

    def count(self, provider_id: str, counter: str) -> None:
        """Add one to a per-provider counter shown in :meth:`stats` (e.g. ``probe_overruns``); unknown ids: none."""
        with self._lock:
            b = self._breakers.get(provider_id)
            if b is not None:
                b.counts[counter] += 1

    def _probe_timeout(self, timeout_s: float | None) -> float:
        if timeout_s is None:
            return self.config.health_check_timeout_s
        if not isinstance(timeout_s, int | float) or isinstance(timeout_s, bool) or not 0 < timeout_s < math.inf:
            raise ConfigError("timeout_s", f"must be a number of seconds > 0, or None for "
                                           f"FailoverConfig.health_check_timeout_s (got {timeout_s!r})")
        return float(timeout_s)

    # -- internals -----------------------------------------------------------------------------
    def _known(self, provider_id: str) -> str:
        if provider_id not in self._breakers:
            raise ConfigError("provider_id", f"unknown provider {provider_id!r}; add it first")
        return provider_id

    def _breaker(self, provider_id: str) -> _Breaker:
        try:
            return self._breakers[provider_id]
        except KeyError:
            raise ConfigError("provider_id", f"unknown provider {provider_id!r}; add it first") from None

    def _reason(self, b: _Breaker, now: float) -> str | None:
        if b.state is CircuitState.OPEN:
            return f"circuit open for {b.open_until - now:.1f} s more"
        if b.state is CircuitState.HALF_OPEN:
            timeout = self.config.half_open_permit_timeout_s
            while b.permits and b.permits[0] + timeout <= now:
                b.permits.popleft()  # a trial whose outcome never came back
            if len(b.permits) >= self.config.half_open_max_calls:
                return f"half-open with {len(b.permits)} trial call(s) in flight"
        if now < b.cooldown_until:
            return f"rate limited for {b.cooldown_until - now:.1f} s more"
        return None

    def _refresh(self, provider_id: str, b: _Breaker, now: float) -> list[FailoverEvent]:
        if b.state is CircuitState.OPEN and now >= b.open_until:
            b.state = CircuitState.HALF_OPEN
            b.consecutive_successes = 0
            b.permits.clear()
            return [self._event(EventKind.HALF_OPEN, provider_id, now, "ejection over; allowing trial calls", b)]
        return []

    def _on_success(self, provider_id: str, b: _Breaker, now: float, probe: bool) -> list[FailoverEvent]:
        b.consecutive_failures = 0
        if b.state is CircuitState.CLOSED:
            self._push_window(b, now, failed=False)
            return []
        if b.state is CircuitState.OPEN:
            if not probe:
                return []  # a call that started before the trip; says nothing about recovery
            b.state = CircuitState.HALF_OPEN
            b.consecutive_successes = 0
            b.permits.clear()
            return [self._event(EventKind.HALF_OPEN, provider_id, now, "probe succeeded during ejection", b)]
        b.consecutive_successes += 1
        if b.consecutive_successes < self.config.recovery_successes:
            return []
        b.state = CircuitState.CLOSED
        b.closed_at = now
        b.window.clear()
        b.window_failures = 0
        b.permits.clear()
        return [self._event(EventKind.RECOVERY, provider_id, now,
                            f"{b.consecutive_successes} successful trial call(s)", b)]

    def _on_failure(self, provider_id: str, b: _Breaker, now: float, kind: ErrorKind,
                    detail: str) -> list[FailoverEvent]:
        b.consecutive_failures += 1
        out = [self._event(EventKind.FAILURE, provider_id, now, f"{kind.value} {detail}".strip(), b)]
        if b.state is CircuitState.OPEN:
            return out
        if b.state is CircuitState.HALF_OPEN:
            return out + self._trip(provider_id, b, now, f"trial call failed ({kind.value})")
        self._push_window(b, now, failed=True)
        try:
            why = self.policy.should_trip(self._window(provider_id, b), self.config)
        except Exception as exc:  # a policy plugin must not fail the request: no verdict, no trip
            self.callback_failures.failed("failover_policy", exc)
            why = None
        if why:
            blocked = self._cap_blocks(provider_id)
            if blocked is None:
                out += self._trip(provider_id, b, now, why)
            else:
                b.counts["ejections_capped"] += 1
                out.append(self._event(EventKind.EJECTION_CAPPED, provider_id, now, f"{why}; not ejected: {blocked}",
                                       b))
        return out

    def _window(self, provider_id: str, b: _Breaker) -> BreakerWindow:
        return BreakerWindow(provider_id, b.consecutive_failures, len(b.window), b.window_failures, b.trips)

    def _peers(self, provider_id: str) -> Iterable[tuple[str, _Breaker]]:
        group = self._groups.get(provider_id)
        return ((pid, b) for pid, b in self._breakers.items() if self._groups.get(pid) == group)

    def _cap_blocks(self, provider_id: str) -> str | None:
        """Why ejecting this CLOSED provider would exceed ``max_ejection_percent`` (None: it may go)."""
        pct = self.max_ejection_percent
        if pct is None:
            return None
        size = out = 0
        for _pid, other in self._peers(provider_id):
            size += 1
            out += other.state is not CircuitState.CLOSED
        allowed = max(1, math.floor(size * pct / 100.0 + 1e-9))  # Envoy: one may always be ejected
        if out + 1 <= allowed:
            return None
        return f"max_ejection_percent {pct:g} % allows {allowed} of {size} out, {out} already are"

    def _peer_check(self, now: float) -> list[FailoverEvent]:
        """Ask the policy about each group's CLOSED providers; eject what it names while the cap allows."""
        cutoff = now - self.config.window_s
        groups: dict[str | None, dict[str, BreakerWindow]] = {}
        for pid, b in self._breakers.items():
            if b.state is CircuitState.CLOSED:
                self._expire_window(b, cutoff)
                groups.setdefault(self._groups.get(pid), {})[pid] = self._window(pid, b)
        out: list[FailoverEvent] = []
        for windows in groups.values():
            try:  # read whole (a generator may raise half-way) and checked before anyone is ejected
                ejections = list(self.policy.peer_ejections(windows, self.config, now))
                for ejection in ejections:
                    if not isinstance(ejection, PeerEjection):
                        raise TypeError(f"peer_ejections gave {type(ejection).__name__}, not a PeerEjection")
            except Exception:  # a plugin must not break the request: log, count, carry on
                _log.exception("failover policy %r raised in peer_ejections; nobody ejected", self.policy.name)
                self.peer_check_errors += 1
                continue
            for ejection in ejections:
                target = self._breakers.get(ejection.provider_id)
                if target is None or ejection.provider_id not in windows or target.state is not CircuitState.CLOSED:
                    continue  # not a CLOSED member of this group (maybe ejected a moment ago)
                blocked = self._cap_blocks(ejection.provider_id)
                if blocked is None:
                    target.counts["peer_ejections"] += 1
                    out += self._trip(ejection.provider_id, target, now, ejection.reason)
                else:
                    target.counts["ejections_capped"] += 1
                    out.append(self._event(EventKind.EJECTION_CAPPED, ejection.provider_id, now,
                                           f"{ejection.reason}; not ejected: {blocked}", target))
        return out

    def _trip(self, provider_id: str, b: _Breaker, now: float, why: str) -> list[FailoverEvent]:
        if b.state is CircuitState.CLOSED and now - b.closed_at > self.config.trip_memory_s:
            b.trips = 0  # long healthy since it last recovered: start again from the base ejection time
        b.trips += 1
        held = not self.config.escalate_when_all_out and all(
            other.state is not CircuitState.CLOSED for pid, other in self._breakers.items() if pid != provider_id)
        ejection = self._ejection_s(1 if held else b.trips)
        b.state = CircuitState.OPEN
        b.open_until = now + ejection
        b.consecutive_successes = 0
        b.window.clear()
        b.window_failures = 0
        b.permits.clear()
        return [self._event(EventKind.BLACKLIST, provider_id, now,
                            f"{why}; ejected for {ejection:.1f} s (trip {b.trips}"
                            f"{', every provider out: base ejection' if held else ''})", b)]

    def _ejection_s(self, trips: int) -> float:
        """The policy's ejection time; if it raises or gives no finite number >= 0, the configured one (no jitter)."""
        try:
            seconds = float(self.policy.ejection_s(trips, self.config, self.rng))
            if 0.0 <= seconds < math.inf:
                return seconds
            raise ValueError(f"ejection_s returned {seconds!r}, not a finite number of seconds >= 0")
        except Exception as exc:  # NaN would keep the provider out for good, a raise would fail the request
            self.callback_failures.failed("failover_policy", exc)
        cfg = self.config
        try:
            base = cfg.base_ejection_s * cfg.ejection_multiplier ** (trips - 1)
        except OverflowError:
            base = math.inf
        return min(base, cfg.max_ejection_s)

    def _push_window(self, b: _Breaker, now: float, *, failed: bool) -> None:
        b.window.append((now, failed))
        b.window_failures += failed
        self._expire_window(b, now - self.config.window_s)

    @staticmethod
    def _expire_window(b: _Breaker, cutoff: float) -> None:
        while b.window and (b.window[0][0] < cutoff or len(b.window) > 10_000):
            _, old_failed = b.window.popleft()
            b.window_failures -= old_failed

    def _event(self, kind: EventKind, provider_id: str, now: float, detail: str, b: _Breaker, *,
               share: bool = True) -> FailoverEvent:
        event = FailoverEvent(kind, provider_id, now, detail, b.state)
        if b.state is not CircuitState.CLOSED or b.cooldown_until > now:
            self.suspects[provider_id] = None
        self.events.append(event)
        self.event_counts[kind] += 1
        replica = self._replica
        if share and replica is not None:
            replica.stage(event, b, now)
        return event

    def _emit(self, events: list[FailoverEvent]) -> None:
        replica = self._replica
        if replica is not None and replica.outbox:  # hand transitions to the store, outside the lock
            replica.flush()
        guard = self.callback_failures
        for event in events:
            for cb in list(self._subscribers):
                guard.call("failover_subscriber", cb, event)
