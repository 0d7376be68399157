"""The FailoverManager side of shared state: stage local transitions, apply remote ones.

Kept out of ``failover.py`` so a manager without a store carries none of it. Rules (see
:mod:`pi_builder_middleware.state`): per provider the transition with the later ``(sent_at, origin)``
wins, whether it was made here or elsewhere, and a local transition is stamped later than anything
this replica has seen for that provider; cooldowns only extend (a reset elsewhere does not lift this
replica's Retry-After); own echoes and unknown providers are ignored; half-open trial permits are
never shared. Applying the same set of updates in any order gives the same breakers. Whatever store
delivers it, an update is checked against the wire rules (:meth:`BreakerUpdate.check`) and its
ejection and cooldown times are clamped to this replica's ``max_ejection_s`` and
``max_rate_limit_cooldown_s``: another replica's config (or whatever sits in Redis) cannot keep a
provider out here longer than this replica would itself.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import os
import threading
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .enums import CircuitState, EventKind
from .errors import ConfigError
from .models import FailoverEvent
from .state import (
    MAX_SHARED_S,
    MAX_TRIPS,
    SHARED_EVENT_KINDS,
    BreakerUpdate,
    LatestUpdates,
    MalformedUpdate,
    StateStore,
)

if TYPE_CHECKING:
    from ._breaker import Breaker
    from ._clock import Clock
    from ._events import EventLog
    from .config import FailoverConfig

__all__ = ["RemoteResult", "Replicator", "SharedState"]

_COOLDOWN_SLACK_S = 0.05  # a cooldown extended by less than this is not re-shared
_MIN_STEP = 1e-6  # keeps one replica's stamps strictly increasing when the wall clock stalls or steps back


class RemoteResult(enum.Enum):
    """What :meth:`FailoverManager.apply_remote` did with an update."""

    APPLIED = "applied"
    UNKNOWN = "ignored_unknown"  # no such provider here
    STALE = "ignored_stale"  # not newer than what this replica knew


class Replicator:
    """Connects one :class:`FailoverManager` to a :class:`StateStore` (the :class:`StateReplica` it attaches)."""

    def __init__(self, manager: SharedState, store: StateStore, replica_id: str) -> None:
        self.manager = manager
        self.store = store
        self.replica_id = replica_id
        self.outbox: deque[BreakerUpdate] = deque()  # appended under the manager's lock, drained outside it
        self.latest = LatestUpdates()  # guarded by _lock (taken inside the manager's lock, never around it)
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self._seq = itertools.count(1)
        self._last_stamp = float("-inf")

    # -- local transitions (called with the manager's lock held) --------------------------------
    def stage(self, event: FailoverEvent, b: Breaker, now: float) -> None:
        """Queue ``event`` for the store if it is a shared kind."""
        if event.kind not in SHARED_EVENT_KINDS:
            return
        # Later than anything this replica has seen for the provider: a transition made after applying
        # a remote one must win over it everywhere, even if the remote replica's clock runs ahead.
        stamp = max(self.store.wall_time(), self._last_stamp + _MIN_STEP)
        with self._lock:
            seen = self.latest.breakers.get(event.provider_id)
        if seen is not None and event.kind is not EventKind.RATE_LIMITED:
            stamp = max(stamp, seen.sent_at + _MIN_STEP)
        self._last_stamp = stamp
        # Within the wire bounds even if this replica's config allows more: receivers refuse the rest.
        update = BreakerUpdate(
            provider_id=event.provider_id,
            kind=event.kind,
            state=b.state,
            open_for_s=min(max(b.open_until - now, 0.0), MAX_SHARED_S) if b.state is CircuitState.OPEN else 0.0,
            cooldown_for_s=min(max(b.cooldown_until - now, 0.0), MAX_SHARED_S),
            trips=min(b.trips, MAX_TRIPS),
            origin=self.replica_id,
            sent_at=stamp,
            seq=next(self._seq),
        )
        if update.is_cooldown:
            # Shared only if it outlasts what the others know by more than a little: a burst of 429s from
            # calls that were in flight together would otherwise send one message each.
            with self._lock:
                known = self.latest.cooldowns.get(event.provider_id)
            if update.cooldown_for_s <= 0 or (
                known is not None and update.cooldown_ends_at <= known.cooldown_ends_at + _COOLDOWN_SLACK_S
            ):
                return
        self._merge(update)
        self.outbox.append(update)

    def flush(self) -> None:
        """Hand staged updates to the store (called without the manager's lock; never raises)."""
        while True:
            try:
                update = self.outbox.popleft()
            except IndexError:
                return
            try:
                self.store.publish(update)
                self.counts["published"] += 1
            except Exception:  # a store must not raise into a request; count it if one does
                self.counts["publish_errors"] += 1

    # -- remote updates ------------------------------------------------------------------------
    def apply_update(self, update: BreakerUpdate) -> bool:
        """Apply another replica's update; True if it was newer than what this replica knew."""
        if update.origin == self.replica_id:
            self.counts["ignored_echo"] += 1
            return False
        wall = self.store.wall_time()
        try:
            update.check(wall)
        except MalformedUpdate:
            self.counts["ignored_invalid"] += 1
            return False
        result = self.manager.apply_remote(self._clamped(update), wall, self._merge)
        self.counts[result.value] += 1
        return result is RemoteResult.APPLIED

    def _merge(self, update: BreakerUpdate) -> bool:
        with self._lock:
            return self.latest.merge(update)

    def _clamped(self, u: BreakerUpdate) -> BreakerUpdate:
        cfg = self.manager.config
        if u.open_for_s <= cfg.max_ejection_s and u.cooldown_for_s <= cfg.max_rate_limit_cooldown_s:
            return u
        self.counts["clamped"] += 1
        return dataclasses.replace(
            u,
            open_for_s=min(u.open_for_s, cfg.max_ejection_s),
            cooldown_for_s=min(u.cooldown_for_s, cfg.max_rate_limit_cooldown_s),
        )

    # -- management ----------------------------------------------------------------------------
    def shared_updates(self) -> list[BreakerUpdate]:
        """Latest known update per provider (transitions, and cooldowns not yet over)."""
        wall = self.store.wall_time()
        with self._lock:
            return [u for u in self.latest.all() if not u.is_cooldown or u.cooldown_ends_at > wall]

    def adopt_cached(self, provider_id: str) -> None:
        """Apply what the store already knows about a provider that was just added."""
        for update in self.store.cached(provider_id):
            self.apply_update(update)

    def forget(self, provider_id: str) -> None:
        """Drop the versions of a removed provider (a re-added one starts from the store's view)."""
        with self._lock:
            self.latest.forget(provider_id)

    def stats(self) -> dict[str, Any]:
        """The store's counters plus this replica's id and what it applied or ignored."""
        try:
            out = dict(self.store.stats())
        except Exception as exc:  # stats must not fail because the store is broken
            out = {"connected": False, "stats_error": type(exc).__name__}
        out["replica_id"] = self.replica_id
        for key in (
            "published",
            "publish_errors",
            "applied",
            "clamped",
            "ignored_stale",
            "ignored_echo",
            "ignored_unknown",
            "ignored_invalid",
        ):
            out[f"replica_{key}"] = self.counts[key]
        return out


class SharedState:
    """The :class:`FailoverManager` methods for shared state (the manager is this mixin's one user).

    Without a store the manager has no :class:`Replicator` and these methods say so (or return nothing).
    """

    clock: Clock
    config: FailoverConfig
    _lock: threading.Lock
    _breakers: dict[str, Breaker]
    _log: EventLog

    def _attach(self, store: StateStore, replica_id: str | None) -> None:
        import uuid  # here, not at import: it loads platform, and only a state store needs it

        self._log.replica = Replicator(self, store, replica_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
        store.attach(self._log.replica)

    @property
    def _replica(self) -> Replicator | None:
        return self._log.replica

    @property
    def replica_id(self) -> str | None:
        """This replica's id in the shared store (None without a store)."""
        replica = self._log.replica
        return replica.replica_id if replica is not None else None

    def apply_update(self, update: BreakerUpdate) -> bool:
        """Apply another replica's breaker update (stores call this); True if it was news."""
        replica = self._log.replica
        if replica is None:
            raise ConfigError("store", "this FailoverManager has no state store; pass store=...")
        return replica.apply_update(update)

    def apply_remote(
        self, update: BreakerUpdate, wall: float, is_news: Callable[[BreakerUpdate], bool]
    ) -> RemoteResult:
        """Move a breaker to another replica's checked ``update`` (``wall``: the store's time now).

        The one way in for remote state (:mod:`pi_builder_middleware._replication` decides what is
        applied): under the lock ``is_news`` says whether the update is newer than what is known; the
        breaker takes its transition (or extends its cooldown) and subscribers get the event, which is
        not shared again.
        """
        now = self.clock()
        with self._lock:
            b = self._breakers.get(update.provider_id)
            if b is None:
                return RemoteResult.UNKNOWN
            if not is_news(update):
                return RemoteResult.STALE
            change = b.take_update(update, now, wall)
            if change is not None:
                kind, detail = change
                event = self._log.add(
                    kind, update.provider_id, now, f"from replica {update.origin}: {detail}", b, share=False
                )
        if change is not None:
            self._log.emit([event])
        return RemoteResult.APPLIED

    def shared_updates(self) -> list[BreakerUpdate]:
        """The latest transition and live cooldown per provider, for a store to resync."""
        replica = self._log.replica
        return replica.shared_updates() if replica is not None else []

    def close(self) -> None:
        """Hand over staged updates and detach from the state store (its threads stop with its last replica)."""
        with self._lock:
            replica, self._log.replica = self._log.replica, None
        if replica is not None:
            replica.flush()
            replica.store.detach(replica)
