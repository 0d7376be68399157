"""Shared breaker state: the :class:`StateStore` protocol, its messages and the in-process store.

Replicas (one :class:`~pi_builder_middleware.FailoverManager` each, usually one per app process) share
breaker *transitions*, not raw outcomes: a trip, half-open, recovery or reset, and rate-limit
cooldowns. Each transition travels as a :class:`BreakerUpdate` stamped with wall-clock time
(``time.time``) because monotonic clocks differ between processes; a receiver turns the remaining
ejection and cooldown seconds into deadlines on its own clock, minus the time the message spent in
flight. Per provider the update with the later ``(sent_at, origin)`` wins; cooldowns only ever extend.
Half-open trial permits stay local: every replica probes a recovering provider with its own
allowance.

Stores: :class:`MemoryStateStore` (several middlewares in one process; the reference in tests) and
:class:`~pi_builder_middleware.redis_store.RedisStateStore` (replicas across processes and hosts).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn, Protocol, runtime_checkable

from .enums import CircuitState, EventKind

__all__ = [
    "MAX_CLOCK_AHEAD_S",
    "MAX_SHARED_S",
    "MAX_TRIPS",
    "SHARED_EVENT_KINDS",
    "BreakerUpdate",
    "MalformedReason",
    "MalformedUpdate",
    "MemoryStateStore",
    "StateReplica",
    "StateStore",
]

log = logging.getLogger("pi_builder_middleware.state")

#: Event kinds that travel between replicas. RATE_LIMITED only extends cooldowns; the others are
#: breaker transitions ordered by ``(sent_at, origin)``.
SHARED_EVENT_KINDS = frozenset(
    {EventKind.BLACKLIST, EventKind.HALF_OPEN, EventKind.RECOVERY, EventKind.RESET, EventKind.RATE_LIMITED}
)

_FORMAT = 1  # bump when the wire form changes incompatibly; other formats are ignored on receipt

#: Longest ejection or cooldown a shared update may carry (a year); receivers clamp further to their config.
MAX_SHARED_S = 366 * 86_400.0
#: How far ahead of the receiver's wall clock an update may be stamped (clock skew between hosts). One
#: stamped further ahead would win every comparison until then, so it is refused.
MAX_CLOCK_AHEAD_S = 300.0
#: Largest trip count a shared update may carry.
MAX_TRIPS = 1_000_000
_MAX_SEQ = 2**53  # the largest integer JSON readers (and Redis' Lua) all hold exactly
_MAX_DETAIL = 120


class MalformedReason(StrEnum):
    """Why an update from another replica (or from whatever sits in Redis) was refused."""

    ENCODING = "encoding"  # bytes that are not UTF-8
    JSON = "json"  # not strict JSON (syntax, NaN or Infinity, nesting too deep)
    SCHEMA = "schema"  # not a breaker update of this format: missing field, wrong type, unknown kind or state
    NUMBER = "number"  # a time or count that is not finite or out of its bounds
    CLOCK = "clock"  # stamped more than MAX_CLOCK_AHEAD_S ahead of this host's clock
    PLACE = "place"  # stored under another provider's field, or a cooldown where transitions belong
    KEY_TYPE = "key_type"  # a Redis key of another type where a hash belongs


class MalformedUpdate(ValueError):
    """An update that breaks the wire rules; ``reason`` says which rule (stores count and log per reason)."""

    def __init__(self, reason: MalformedReason, detail: str) -> None:
        detail = detail if len(detail) <= _MAX_DETAIL else detail[:_MAX_DETAIL] + "..."
        super().__init__(f"malformed breaker update ({reason.value}): {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class BreakerUpdate:
    """One replica's breaker transition (or rate-limit cooldown) for one provider.

    ``open_for_s`` and ``cooldown_for_s`` are the seconds that remained when the update was made, at
    wall-clock time ``sent_at``; ``seq`` counts the origin's updates (diagnostics and de-duplication).
    """

    provider_id: str
    kind: EventKind
    state: CircuitState
    open_for_s: float
    cooldown_for_s: float
    trips: int
    origin: str
    sent_at: float
    seq: int

    @property
    def is_cooldown(self) -> bool:
        """Whether this is a rate-limit cooldown (merged by extension) rather than a breaker transition."""
        return self.kind is EventKind.RATE_LIMITED

    @property
    def version(self) -> tuple[float, str]:
        """Order of breaker transitions for one provider: later wall-clock time wins, origin breaks ties."""
        return (self.sent_at, self.origin)

    @property
    def cooldown_ends_at(self) -> float:
        """Wall-clock time the cooldown carried by this update ends."""
        return self.sent_at + self.cooldown_for_s

    def remaining(self, seconds: float, wall_now: float) -> float:
        """``seconds`` (a remaining time as of ``sent_at``) still remaining at ``wall_now``.

        Time in flight is subtracted; a receiver whose clock is behind the sender's does not add it
        back (the skew between hosts shifts deadlines by at most the skew).
        """
        return seconds - max(wall_now - self.sent_at, 0.0)

    def to_json(self) -> str:
        """Compact, strict JSON: provider id, states, numbers and the origin replica id. Never error text."""
        import json  # here, not at import: only a state store sends updates

        return json.dumps(
            {
                "f": _FORMAT,
                "provider_id": self.provider_id,
                "kind": self.kind.value,
                "state": self.state.value,
                "open_for_s": self.open_for_s,
                "cooldown_for_s": self.cooldown_for_s,
                "trips": self.trips,
                "origin": self.origin,
                "sent_at": self.sent_at,
                "seq": self.seq,
            },
            separators=(",", ":"),
            allow_nan=False,
        )

    @classmethod
    def from_json(cls, text: str | bytes, *, wall_now: float | None = None) -> BreakerUpdate:
        """Parse :meth:`to_json` output and :meth:`check` it.

        Raises :class:`MalformedUpdate` (a ValueError) for anything else: bytes that are not UTF-8,
        JSON that is not strict, a missing or mistyped field, a number out of its bounds, or (given
        ``wall_now``) a stamp too far ahead of that clock.
        """
        try:
            if isinstance(text, bytes | bytearray):
                text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedUpdate(MalformedReason.ENCODING, "not UTF-8") from None
        import json

        try:
            d = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise MalformedUpdate(MalformedReason.JSON, f"not strict JSON ({type(exc).__name__})") from None
        try:
            if not isinstance(d, dict) or _typed(d.get("f"), int) != _FORMAT:
                raise ValueError("not a breaker update of this format")
            provider_id, origin = _typed(d["provider_id"], str), _typed(d["origin"], str)
            kind, state = EventKind(d["kind"]), CircuitState(d["state"])
            trips, seq = _typed(d["trips"], int), _typed(d["seq"], int)
            numbers = [_typed(d[key], int | float) for key in ("open_for_s", "cooldown_for_s", "sent_at")]
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedUpdate(MalformedReason.SCHEMA, f"{type(exc).__name__}: {exc}") from None
        try:
            open_for_s, cooldown_for_s, sent_at = (float(n) for n in numbers)
        except OverflowError:
            raise MalformedUpdate(MalformedReason.NUMBER, "an integer beyond float range") from None
        update = cls(
            provider_id=provider_id,
            kind=kind,
            state=state,
            open_for_s=open_for_s,
            cooldown_for_s=cooldown_for_s,
            trips=trips,
            origin=origin,
            sent_at=sent_at,
            seq=seq,
        )
        update.check(wall_now)
        return update

    def check(self, wall_now: float | None = None) -> None:
        """Raise :class:`MalformedUpdate` unless this update keeps the wire rules.

        The rules (the Redis write script applies the same ones to what it finds stored): non-empty
        provider and origin ids, a shared kind; ``open_for_s`` and ``cooldown_for_s`` finite in
        ``[0, MAX_SHARED_S]``; ``sent_at`` finite, >= 0 and, given ``wall_now``, at most
        ``MAX_CLOCK_AHEAD_S`` ahead of it; ``trips`` in ``[0, MAX_TRIPS]``, ``seq`` >= 0.
        """
        for name in ("provider_id", "origin"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise MalformedUpdate(MalformedReason.SCHEMA, f"{name} must be a non-empty string")
        if self.kind not in SHARED_EVENT_KINDS or not isinstance(self.state, CircuitState):
            raise MalformedUpdate(MalformedReason.SCHEMA, f"kind {self.kind!s} / state {self.state!s} is not shared")
        real = int | float
        for name, kind, high in (
            ("open_for_s", real, MAX_SHARED_S),
            ("cooldown_for_s", real, MAX_SHARED_S),
            ("sent_at", real, math.inf),
            ("trips", int, MAX_TRIPS),
            ("seq", int, _MAX_SEQ),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise MalformedUpdate(MalformedReason.SCHEMA, f"{name} must be a number")
            if not 0 <= value <= high or value == math.inf:  # False for NaN; ints compare exactly, however long
                raise MalformedUpdate(MalformedReason.NUMBER, f"{name} {_short(value)} is not in [0, {high:g}]")
        if wall_now is not None and self.sent_at > wall_now + MAX_CLOCK_AHEAD_S:
            raise MalformedUpdate(
                MalformedReason.CLOCK,
                f"stamped {self.sent_at - wall_now:.0f} s ahead of this "
                f"host's clock (more than {MAX_CLOCK_AHEAD_S:g} s: check NTP)",
            )


def _typed(value: Any, kind: Any) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"unexpected {type(value).__name__}")
    return value


def _short(value: float) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


@runtime_checkable
class StateReplica(Protocol):
    """What a store talks to: one replica's breakers (a :class:`FailoverManager` implements it)."""

    @property
    def replica_id(self) -> str:
        """Unique id of this replica; updates it made carry it as ``origin``."""
        ...

    def apply_update(self, update: BreakerUpdate) -> bool:
        """Apply another replica's update (takes the breakers' lock briefly, never blocks on I/O)."""
        ...

    def shared_updates(self) -> list[BreakerUpdate]:
        """The latest update per provider this replica knows (for a resync after reconnecting)."""
        ...


@runtime_checkable
class StateStore(Protocol):
    """Carries breaker updates between replicas.

    ``publish`` is called on the request path right after a transition: it must not block, do I/O
    or raise. Stores call :meth:`StateReplica.apply_update` on every attached replica except the
    origin, and hand a replica that attaches (or a provider added later, via :meth:`cached`) the
    current view.
    """

    def attach(self, replica: StateReplica) -> None:
        """Start delivering updates to ``replica`` (starting background work if the store has any)."""
        ...

    def detach(self, replica: StateReplica) -> None:
        """Stop delivering to ``replica``; background work ends with the last replica."""
        ...

    def publish(self, update: BreakerUpdate) -> None:
        """Share a local update with the other replicas; never blocks or raises."""
        ...

    def cached(self, provider_id: str) -> list[BreakerUpdate]:
        """Updates for ``provider_id`` this store already holds locally (no I/O)."""
        ...

    def wall_time(self) -> float:
        """The wall clock updates are stamped with (``time.time`` unless a test injects one)."""
        ...

    def stats(self) -> dict[str, Any]:
        """JSON-safe counters; ``connected`` and ``errors`` at least. No secrets."""
        ...

    def close(self) -> None:
        """Detach every replica and stop background work."""
        ...


class LatestUpdates:
    """The newest breaker transition and the longest cooldown per provider (not thread-safe)."""

    __slots__ = ("breakers", "cooldowns")

    def __init__(self) -> None:
        self.breakers: dict[str, BreakerUpdate] = {}
        self.cooldowns: dict[str, BreakerUpdate] = {}

    def merge(self, update: BreakerUpdate) -> bool:
        """Keep ``update`` if it is newer (transition) or lasts longer (cooldown); True if kept."""
        if update.is_cooldown:
            old = self.cooldowns.get(update.provider_id)
            if old is not None and old.cooldown_ends_at >= update.cooldown_ends_at:
                return False
            self.cooldowns[update.provider_id] = update
            return True
        old = self.breakers.get(update.provider_id)
        if old is not None and old.version >= update.version:
            return False
        self.breakers[update.provider_id] = update
        return True

    def of(self, provider_id: str) -> list[BreakerUpdate]:
        """The provider's latest transition and cooldown (those that exist)."""
        return [u for u in (self.breakers.get(provider_id), self.cooldowns.get(provider_id)) if u is not None]

    def all(self) -> list[BreakerUpdate]:
        """Every kept update, transitions first."""
        return [*self.breakers.values(), *self.cooldowns.values()]

    def forget(self, provider_id: str) -> None:
        """Drop what is known about one provider."""
        self.breakers.pop(provider_id, None)
        self.cooldowns.pop(provider_id, None)


class ReplicaSet:
    """What every store keeps: attached replicas, the newest update per provider, a wall clock."""

    def __init__(self, wall_clock: Callable[[], float] | None) -> None:
        self._wall = wall_clock or time.time
        self._lock = threading.Lock()
        self._replicas: list[StateReplica] = []
        self._latest = LatestUpdates()

    def _add_replica(self, replica: StateReplica) -> list[BreakerUpdate]:
        """Register ``replica``; returns the current view to hand it."""
        with self._lock:
            if replica not in self._replicas:
                self._replicas.append(replica)
            return self._latest.all()

    def _remove_replica(self, replica: StateReplica) -> bool:
        """Unregister ``replica``; returns whether none is left."""
        with self._lock:
            if replica in self._replicas:
                self._replicas.remove(replica)
            return not self._replicas

    def cached(self, provider_id: str) -> list[BreakerUpdate]:
        """The newest transition and longest cooldown seen for ``provider_id``."""
        with self._lock:
            return self._latest.of(provider_id)

    def wall_time(self) -> float:
        """Shared wall-clock time (``time.time`` unless injected)."""
        return self._wall()


class MemoryStateStore(ReplicaSet):
    """In-process store: several :class:`~pi_builder_middleware.Middleware` objects share breakers.

    Delivery is synchronous, in the publishing thread, after the publisher released its own lock.
    ``wall_clock`` is injectable so tests can move shared time with a :class:`ManualClock`.
    """

    def __init__(self, *, wall_clock: Callable[[], float] | None = None) -> None:
        super().__init__(wall_clock)
        self._published = 0
        self._delivery_errors = 0

    def attach(self, replica: StateReplica) -> None:
        """Add ``replica`` and hand it the current view."""
        for update in self._add_replica(replica):
            self._deliver(replica, update)

    def detach(self, replica: StateReplica) -> None:
        """Stop delivering to ``replica``."""
        self._remove_replica(replica)

    def publish(self, update: BreakerUpdate) -> None:
        """Record ``update`` and apply it to every other attached replica."""
        with self._lock:
            self._published += 1
            if not self._latest.merge(update):
                return  # stale: every replica has already seen something newer
            replicas = list(self._replicas)
        for replica in replicas:
            if replica.replica_id != update.origin:
                self._deliver(replica, update)

    def stats(self) -> dict[str, Any]:
        """Counters (always connected: there is nothing to lose)."""
        with self._lock:
            return {
                "backend": "memory",
                "connected": True,
                "errors": self._delivery_errors,
                "published": self._published,
                "replicas": len(self._replicas),
            }

    def close(self) -> None:
        """Detach every replica."""
        with self._lock:
            self._replicas.clear()

    def _deliver(self, replica: StateReplica, update: BreakerUpdate) -> None:
        try:
            replica.apply_update(update)
        except Exception as exc:  # a broken subscriber of the receiver must not fail the sender's request
            with self._lock:
                self._delivery_errors += 1
            log.error(
                "applying %s for %r to replica %s failed: %s: %s",
                update.kind.value,
                update.provider_id,
                replica.replica_id,
                type(exc).__name__,
                exc,
            )
