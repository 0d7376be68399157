"""The events of one :class:`~pi_builder_middleware.failover.FailoverManager`: made under its lock, sent after.

:meth:`EventLog.add` (lock held) keeps the bounded log and the counts per kind, marks the provider a
suspect when it may be out, and stages shared kinds for the state store; :meth:`EventLog.emit` (lock
released) hands staged updates to the store and calls the subscribers, whose failures are counted,
never raised into the call that made the event.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._guard import CallbackFailures
from .enums import CircuitState, EventKind
from .models import FailoverEvent

if TYPE_CHECKING:
    from ._breaker import Breaker
    from ._replication import Replicator

__all__ = ["EventLog"]


class EventLog:
    """The event log, counts per kind, suspects, subscribers and the replica events are shared through."""

    __slots__ = ("counts", "events", "failures", "replica", "subscribers", "suspects")

    def __init__(self, max_events: int, failures: CallbackFailures) -> None:
        self.events: deque[FailoverEvent] = deque(maxlen=max_events)
        self.counts: Counter[EventKind] = Counter()
        #: Providers that may be out (breaker not CLOSED, or cooling down); the manager drops them when back.
        self.suspects: dict[str, None] = {}
        self.subscribers: list[Callable[[FailoverEvent], None]] = []
        self.failures = failures
        self.replica: Replicator | None = None

    def subscribe(self, callback: Callable[[FailoverEvent], None]) -> Callable[[], None]:
        """Call ``callback`` for every event emitted; returns a function that unsubscribes."""
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def add(
        self, kind: EventKind, provider_id: str, now: float, detail: str, b: Breaker, *, share: bool = True
    ) -> FailoverEvent:
        """Make, log and count one event of breaker ``b`` (lock held); ``share`` False: not sent to the store."""
        event = FailoverEvent(kind, provider_id, now, detail, b.state)
        if b.state is not CircuitState.CLOSED or b.cooldown_until > now:
            self.suspects[provider_id] = None
        self.events.append(event)
        self.counts[kind] += 1
        replica = self.replica
        if share and replica is not None:
            replica.stage(event, b, now)
        return event

    def emit(self, events: list[FailoverEvent]) -> None:
        """Hand staged updates to the store and tell the subscribers (lock released)."""
        replica = self.replica
        if replica is not None and replica.outbox:  # hand transitions to the store, outside the lock
            replica.flush()
        guard = self.failures
        for event in events:
            for cb in list(self.subscribers):
                guard.call("failover_subscriber", cb, event)
