"""Per-provider mutable state (behaviour in force, outage switch, request log) and its stats snapshot.

State is shared between the test thread (which changes behaviour and reads stats) and the
simulator's event-loop thread (which serves requests), so every access takes a short lock that is
never held across an ``await``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .behaviour import Decision, decide, effective_behaviour
from .clock import SimClock
from .models import Behaviour, FaultWindow, SimOutcome, SimProvider

__all__ = ["ProviderState", "ProviderStats", "RequestRecord"]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One chat-completions request that reached a provider."""

    n: int
    """Index of the request at this provider since start (or the last stats reset)."""
    at: float
    """Simulator clock time of arrival, seconds since start."""
    outcome: SimOutcome
    stream: bool
    model: str


@dataclass(frozen=True)
class ProviderStats:
    """A snapshot of the requests one provider has received."""

    name: str
    records: tuple[RequestRecord, ...] = ()
    by_outcome: Mapping[SimOutcome, int] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_records(cls, name: str, records: tuple[RequestRecord, ...]) -> ProviderStats:
        """Build the snapshot, counting outcomes."""
        counts = Counter(r.outcome for r in records)
        return cls(name=name, records=records, by_outcome=MappingProxyType(dict(counts)))

    @property
    def total(self) -> int:
        """Number of requests received."""
        return len(self.records)

    @property
    def successes(self) -> int:
        """Requests answered successfully."""
        return self.by_outcome.get(SimOutcome.SUCCESS, 0)

    @property
    def errors(self) -> int:
        """Requests answered with any error outcome."""
        return self.total - self.successes

    @property
    def streamed(self) -> int:
        """Requests that asked for a stream."""
        return sum(1 for r in self.records if r.stream)

    @property
    def timestamps(self) -> tuple[float, ...]:
        """Arrival times (simulator clock), oldest first."""
        return tuple(r.at for r in self.records)

    @property
    def outcomes(self) -> tuple[SimOutcome, ...]:
        """Outcomes in arrival order."""
        return tuple(r.outcome for r in self.records)

    def count(self, outcome: SimOutcome) -> int:
        """Requests that ended with ``outcome``."""
        return self.by_outcome.get(outcome, 0)


class ProviderState:
    """Everything the server needs to answer for one provider; thread-safe."""

    def __init__(self, spec: SimProvider, seed: int, clock: SimClock) -> None:
        self.spec = spec
        self.name = spec.name
        self._seed = seed
        self._clock = clock
        self._lock = threading.Lock()
        self._behaviour = spec.behaviour
        self._faults = spec.faults
        self._forced: SimOutcome | None = None
        self._next_n = 0
        self._in_flight = 0
        self._records: list[RequestRecord] = []

    @property
    def behaviour(self) -> Behaviour:
        """The base behaviour (before fault windows and outages)."""
        with self._lock:
            return self._behaviour

    @property
    def faults(self) -> tuple[FaultWindow, ...]:
        """The fault schedule."""
        with self._lock:
            return self._faults

    @property
    def forced(self) -> SimOutcome | None:
        """The outcome every request gets while the provider is down, else ``None``."""
        with self._lock:
            return self._forced

    def set_behaviour(self, behaviour: Behaviour) -> None:
        with self._lock:
            self._behaviour = behaviour

    def set_faults(self, faults: tuple[FaultWindow, ...]) -> None:
        with self._lock:
            self._faults = faults

    def set_forced(self, outcome: SimOutcome | None) -> None:
        with self._lock:
            self._forced = outcome

    def current_behaviour(self) -> Behaviour:
        """The behaviour in force now: base behaviour with active fault windows applied."""
        with self._lock:
            behaviour, faults = self._behaviour, self._faults
        return effective_behaviour(behaviour, faults, self._clock())

    def is_up(self) -> bool:
        """False while forced down or while every request is scheduled to fail."""
        return self.forced is None and self.current_behaviour().error_rate < 1.0

    @property
    def in_flight(self) -> int:
        """Requests holding a concurrency slot now (admitted, not yet answered)."""
        with self._lock:
            return self._in_flight

    def begin(self, *, stream: bool, model: str, override: SimOutcome | None = None) -> Decision:
        """Take the next request number, decide its fate and log it.

        Without an ``override`` (a forced outcome header, a bad key, an unparsable body) the request
        is subject to the concurrency limit: turned away with 429 when the provider is full, otherwise
        it holds a slot (``Decision.holds_slot``) until the server calls :meth:`finish`.
        """
        with self._lock:
            n = self._next_n
            self._next_n += 1
            at = self._clock()
            behaviour = effective_behaviour(self._behaviour, self._faults, at)
            forced = override if override is not None else self._forced
            decision = decide(self._seed, self.name, n, behaviour, forced, stream=stream)
            if override is None:
                limit = behaviour.max_concurrent
                if limit is not None and self._in_flight >= limit:
                    decision = dataclasses.replace(
                        decision, outcome=SimOutcome.RATE_LIMIT, latency_s=0.0, ttft_s=0.0, rejected_at=limit
                    )
                else:
                    self._in_flight += 1
                    decision = dataclasses.replace(decision, holds_slot=True)
            self._records.append(RequestRecord(n=n, at=at, outcome=decision.outcome, stream=stream, model=model))
        return decision

    def finish(self, decision: Decision) -> None:
        """Free the concurrency slot ``decision`` held (no-op for requests that held none)."""
        if decision.holds_slot:
            with self._lock:
                self._in_flight -= 1

    def stats(self) -> ProviderStats:
        """A snapshot of the request log."""
        with self._lock:
            records = tuple(self._records)
        return ProviderStats.from_records(self.name, records)

    def reset(self) -> None:
        """Forget the request log and restart request numbering at 0 (decisions replay)."""
        with self._lock:
            self._records.clear()
            self._next_n = 0
