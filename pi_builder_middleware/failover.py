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

import logging
import math
import random
import threading
from collections.abc import Callable
from typing import Any

from ._breaker import Blocked, Breaker, check_record_args
from ._clock import Clock, monotonic_clock
from ._ejection import EjectionMethods, Ejector
from ._events import EventLog
from ._guard import CallbackFailures
from ._replication import SharedState
from .config import FailoverConfig
from .enums import CircuitState, ErrorKind, EventKind, FailoverPreset
from .errors import UnknownProviderError
from .interfaces import FailoverPolicy
from .models import FailoverEvent
from .probes import HealthCheckMethods, HealthChecks, ProbeFn
from .state import StateStore

__all__ = ["FailoverManager", "ProbeFn"]

_log = logging.getLogger(__name__)
_NUM = (float, int)
_INF = math.inf


class FailoverManager(EjectionMethods, HealthCheckMethods, SharedState):
    """Per-provider circuit breakers, rate-limit cooldowns, an event log and optional health checks.

    ``policy`` decides trips and ejection times; without one, the policy named in the config is
    looked up among the built-in ones (the Middleware passes the one its plugins registered).
    ``subscribe`` receives every :class:`FailoverEvent` (the Middleware uses it to keep the monitor's
    view of breaker states current); a subscriber that raises is counted in :attr:`callback_failures`,
    never raised into the call that made the event. ``store`` shares breaker transitions with other
    replicas (``replica_id`` names this one; default: pid and a random suffix); :meth:`close` detaches
    from it. The methods for shared state, health checks and the ejector's figures are mixins kept
    beside what they serve: ``_replication.SharedState``, ``probes.HealthCheckMethods``,
    ``_ejection.EjectionMethods``.
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
        self.clock: Clock = clock or monotonic_clock
        self.rng = rng or random.Random()
        self._classify = classify or (lambda _e, _p: ErrorKind.UNKNOWN)
        self._breakers: dict[str, Breaker] = {}
        self._groups: dict[str, str | None] = {}  # provider id -> its group (peers for outliers and the cap)
        self._lock = threading.Lock()
        self.callback_failures = CallbackFailures(_log)
        self._log = log = EventLog(self.config.max_events, self.callback_failures)
        self.events, self.event_counts = log.events, log.counts
        #: Providers that may be out (breaker not CLOSED, or cooling down): every other provider may
        #: be called, so the router asks :meth:`unavailable_reason` only about these. Entries are
        #: added with each state-changing event and dropped by :meth:`settle` once back in service.
        self.suspects = log.suspects
        self._ejector = Ejector(
            self.config, policy, self.rng, self.callback_failures, self._breakers, self._groups, log.add
        )
        self.health_checks = HealthChecks(self)
        if store is not None:
            self._attach(store, replica_id)

    # -- providers -----------------------------------------------------------------------------
    def add_provider(self, provider_id: str, *, group: str | None = None) -> None:
        """Start a breaker (CLOSED) for ``provider_id``.

        ``group`` (e.g. ``Provider.group``, a model group) sets its peers for outlier detection and
        ``max_ejection_percent``; providers without one form one group together.
        """
        with self._lock:
            self._breakers.setdefault(provider_id, Breaker())
            self._groups[provider_id] = group
        replica = self._log.replica
        if replica is not None:
            replica.adopt_cached(provider_id)

    def remove_provider(self, provider_id: str) -> None:
        """Forget a provider's breaker."""
        with self._lock:
            self._breakers.pop(provider_id, None)
            self._groups.pop(provider_id, None)
            self.suspects.pop(provider_id, None)
        replica = self._log.replica
        if replica is not None:
            replica.forget(provider_id)

    def subscribe(self, callback: Callable[[FailoverEvent], None]) -> Callable[[], None]:
        """Call ``callback`` for every event; returns a function that unsubscribes."""
        return self._log.subscribe(callback)

    # -- hot path ------------------------------------------------------------------------------
    def state(self, provider_id: str) -> CircuitState:
        """The breaker state now (OPEN turns HALF_OPEN here once its ejection time is over)."""
        now = self.clock()
        with self._lock:
            b = self._breaker(provider_id)
            pending = self._refresh(provider_id, b, now)
            state = b.state
        self._log.emit(pending)
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
            blocked = self._blocked(b, now)
            reason = None if blocked is None else b.describe(blocked, now)
        self._log.emit(pending)
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
            if self._blocked(b, now) is not None and b.state is CircuitState.HALF_OPEN and b.permits:
                at = b.permits[0] + self.config.half_open_permit_timeout_s
            at = max(at, b.cooldown_until)
        self._log.emit(pending)
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
            ok = self._blocked(b, now) is None
            if ok and b.state is CircuitState.HALF_OPEN:
                b.permits.append(now)
        self._log.emit(pending)
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
                b.half_open()
                pending.append(
                    self._log.add(
                        EventKind.HALF_OPEN, provider_id, now, "every provider out: trial call ahead of schedule", b
                    )
                )
            if b.state is CircuitState.HALF_OPEN:
                b.permits.append(now)
        self._log.emit(pending)

    def release(self, provider_id: str) -> None:
        """Give back a half-open trial permit whose call never produced an outcome (e.g. cancelled).

        Without it the permit stays taken until ``half_open_permit_timeout_s``, and with the default
        single permit the provider gets no trial call for that long.
        """
        with self._lock:
            b = self._breakers.get(provider_id)
            if b is not None and b.state is CircuitState.HALF_OPEN and b.permits:
                b.permits.pop()

    def record(
        self,
        provider_id: str,
        ok: bool,
        kind: ErrorKind | None = None,
        retry_after_s: float | None = None,
        *,
        probe: bool = False,
        detail: str = "",
    ) -> CircuitState:
        """Feed one outcome to the provider's breaker; returns the state after it.

        ``ok`` is True or False, ``kind`` an :class:`ErrorKind` or None, ``retry_after_s`` a finite number
        of seconds (below 0 counts as 0) or None; anything else raises :class:`ConfigError` and changes
        nothing.
        """
        if (
            type(ok) is not bool
            or (kind is not None and type(kind) is not ErrorKind)
            or (retry_after_s is not None and not (type(retry_after_s) in _NUM and -_INF < retry_after_s < _INF))
        ):
            check_record_args(ok, kind, retry_after_s)
        return self._record(provider_id, ok, kind, retry_after_s, probe, detail)

    def _record(
        self, provider_id: str, ok: bool, kind: ErrorKind | None, retry_after_s: float | None, probe: bool, detail: str
    ) -> CircuitState:
        """:meth:`record` with arguments already checked (the Middleware checks them once)."""
        now = self.clock()
        cfg = self.config
        ejector = self._ejector
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
                    pending.append(self._log.add(EventKind.PROBE, provider_id, now, f"probe failed: {detail}", b))
                if kind is ErrorKind.RATE_LIMITED:
                    b.cooldown_until, wait, why = b.rl.on_rate_limited(now, b.cooldown_until, retry_after_s, cfg)
                    # Only the provider's own Retry-After travels to other replicas: a backoff is this
                    # replica's guess, and shared it could not be lifted by a success seen elsewhere.
                    pending.append(
                        self._log.add(
                            EventKind.RATE_LIMITED,
                            provider_id,
                            now,
                            f"cooling down {wait:.2f} s ({why})",
                            b,
                            share=retry_after_s is not None,
                        )
                    )
                elif kind.is_config_problem:
                    pending.append(
                        self._log.add(
                            EventKind.CONFIG_ERROR, provider_id, now, f"{kind.value}: {detail}".rstrip(": "), b
                        )
                    )
                elif kind.is_health_failure:
                    pending += ejector.on_failure(provider_id, b, now, kind, detail)
            if ejector.peer_checks and now >= ejector.next_peer_check:
                pending += ejector.peer_check(now)
            state = b.state
        self._log.emit(pending)
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
            event = self._log.add(EventKind.SWITCH, from_id, now, f"-> {to_id}: {why}", b)
        self._log.emit([event])

    # -- management ----------------------------------------------------------------------------
    def reset(self, provider_id: str | None = None) -> None:
        """Close breakers and forget their history (one provider, or all)."""
        now = self.clock()
        pending = []
        with self._lock:
            ids = [provider_id] if provider_id is not None else list(self._breakers)
            for pid in ids:
                self._breaker(pid)
                self._breakers[pid] = fresh = Breaker()
                pending.append(self._log.add(EventKind.RESET, pid, now, "breaker reset", fresh))
        self._log.emit(pending)

    def stats(self) -> dict[str, Any]:
        """Counts per provider and event kind, and current states."""
        now = self.clock()
        pending: list[FailoverEvent] = []
        with self._lock:
            providers = {}
            for pid, b in self._breakers.items():
                pending += self._refresh(pid, b, now)
                providers[pid] = b.info(now, self.config.rate_limit_pressure_half_life_s)
            out = {"providers": providers, "events": {k.value: n for k, n in self.event_counts.items()}}
            if self._ejector.peer_checks:
                out["peer_check_errors"] = self._ejector.peer_check_errors
        self._log.emit(pending)  # a transition made here must reach subscribers: _refresh will not repeat it
        replica = self._log.replica
        if replica is not None:
            out["store"] = replica.stats()
        return out

    def export(self) -> dict[str, Any]:
        """JSON-safe state: config, per-provider breakers, event log."""
        out = self.stats()
        out["config"] = self.config.to_dict()
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
            info = b.info(now, self.config.rate_limit_pressure_half_life_s)
        self._log.emit(pending)
        return info

    # -- internals -----------------------------------------------------------------------------
    def _breaker(self, provider_id: str) -> Breaker:
        try:
            return self._breakers[provider_id]
        except KeyError:
            raise UnknownProviderError(provider_id) from None

    def _blocked(self, b: Breaker, now: float) -> Blocked | None:
        cfg = self.config
        return b.blocked(now, cfg.half_open_permit_timeout_s, cfg.half_open_max_calls)

    def _refresh(self, provider_id: str, b: Breaker, now: float) -> list[FailoverEvent]:
        if b.refresh(now):
            return [self._log.add(EventKind.HALF_OPEN, provider_id, now, "ejection over; allowing trial calls", b)]
        return []

    def _on_success(self, provider_id: str, b: Breaker, now: float, probe: bool) -> list[FailoverEvent]:
        cfg = self.config
        change = b.succeeded(now, probe, cfg.recovery_successes, cfg.window_s)
        return [] if change is None else [self._log.add(change[0], provider_id, now, change[1], b)]
