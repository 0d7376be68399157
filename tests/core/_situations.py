"""A discrete-event driver for routing situations: scripted providers, a ManualClock, no sleeping.

Requests go through the public API exactly as a front-end drives it: ``select`` → for each provider
of the decision (backups ``acquire``\\ d first) ``begin_attempt`` → the attempt ends after the
provider's scripted latency → ``record`` + ``end_attempt`` → the next provider on a failure that
fails over. Calls overlap in simulated time, so in-flight counts, concurrency limits and 429s behave
as they would under real concurrency. Every attempt is logged, which is what the tests assert on.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from pi_builder_middleware import ErrorKind, ManualClock, Middleware, NoProviderAvailableError, Outcome

#: (now, this provider's call number starting at 0) -> seconds the call takes
LatencyFn = Callable[[float, int], float]
#: (now, call number) -> the error kind the call fails with, or None for success
FaultFn = Callable[[float, int], ErrorKind | None]


@dataclass
class Script:
    """How one simulated provider behaves."""

    latency: LatencyFn
    fault: FaultFn = lambda _t, _n: None
    capacity: int | None = None  # concurrent calls it accepts; the next one gets an immediate 429
    calls: int = 0
    inflight: int = 0


def fixed(seconds: float, *, cold: int = 0, cold_extra: float = 0.0) -> LatencyFn:
    """Always ``seconds``; the first ``cold`` calls take ``cold_extra`` longer (connection setup)."""
    return lambda _t, n: seconds + (cold_extra if n < cold else 0.0)


def browning(seconds: float, slow: float, start: float, end: float) -> LatencyFn:
    """``seconds``, but ``slow`` while ``start <= now < end`` (a brownout)."""
    return lambda t, _n: slow if start <= t < end else seconds


def between(start: float, end: float, kind: ErrorKind = ErrorKind.SERVER_ERROR) -> FaultFn:
    """Fails with ``kind`` while ``start <= now < end``."""
    return lambda t, _n: kind if start <= t < end else None


@dataclass(frozen=True)
class Attempt:
    at: float
    provider: str
    ok: bool
    kind: ErrorKind | None


@dataclass
class Run:
    """What happened: every attempt, each request's result, and the decisions' notes."""

    attempts: list[Attempt] = field(default_factory=list)
    served: list[tuple[float, str]] = field(default_factory=list)  # (request start, provider that answered)
    failed: list[tuple[float, str]] = field(default_factory=list)  # (request start, why)

    def share(self, provider: str, start: float, end: float) -> float:
        """Share of requests started in [start, end) that ``provider`` answered."""
        window = [p for t, p in self.served if start <= t < end]
        window += ["" for t, _ in self.failed if start <= t < end]
        return sum(1 for p in window if p == provider) / len(window) if window else 0.0

    def answered(self, provider: str, start: float, end: float) -> int:
        return sum(1 for t, p in self.served if start <= t < end and p == provider)

    def attempts_at(self, provider: str, start: float, end: float) -> int:
        return sum(1 for a in self.attempts if a.provider == provider and start <= a.at < end)


class Driver:
    """Runs closed-loop callers against scripted providers on a ManualClock."""

    def __init__(self, mw: Middleware, clock: ManualClock, scripts: dict[str, Script]) -> None:
        self.mw, self.clock, self.scripts = mw, clock, scripts
        self.run = Run()
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (when, next(self._seq), action))

    def callers(self, count: int, until: float, think_s: float = 0.0, start: float | None = None) -> None:
        """``count`` callers that each send a request, wait for it, think, and send the next, until ``until``."""
        begin = self.clock() if start is None else start
        for _ in range(count):
            self.at(begin, lambda: self._request(until, think_s))

    def go(self) -> Run:
        while self._events:
            when, _, action = heapq.heappop(self._events)
            if when > self.clock():
                self.clock.set(when)
            action()
        return self.run

    def _request(self, until: float, think_s: float) -> None:
        started = self.clock()
        if started >= until:
            return

        def done() -> None:
            self.at(self.clock() + think_s, lambda: self._request(until, think_s))

        try:
            decision = self.mw.select()
        except NoProviderAvailableError as exc:
            self.run.failed.append((started, f"no provider: {sorted(exc.reasons)}"))
            self.at(self.clock() + max(think_s, 0.01), lambda: self._request(until, think_s))
            return
        self._attempt(list(decision.providers), 0, started, done)

    def _attempt(self, chain: list, index: int, started: float, done: Callable[[], None]) -> None:
        mw = self.mw
        while index < len(chain):
            pid = chain[index].id
            if index == 0 or mw.failover.acquire(pid):
                break
            index += 1
        else:
            self.run.failed.append((started, "every attempt failed"))
            done()
            return
        script = self.scripts[pid]
        now = self.clock()
        mw.begin_attempt(pid)
        script.inflight += 1
        n = script.calls
        script.calls += 1
        if script.capacity is not None and script.inflight > script.capacity:
            kind: ErrorKind | None = ErrorKind.RATE_LIMITED
            latency = 0.002
        else:
            kind = script.fault(now, n)
            latency = script.latency(now, n) if kind is None else 0.01

        def finish() -> None:
            script.inflight -= 1
            ok = kind is None
            self.run.attempts.append(Attempt(now, pid, ok, kind))
            mw.record(Outcome(pid, ok, latency, error_kind=kind))
            mw.end_attempt(pid)
            if ok:
                self.run.served.append((started, pid))
                done()
            elif kind is not None and kind.fails_over:
                self._attempt(chain, index + 1, started, done)
            else:
                self.run.failed.append((started, str(kind)))
                done()

        self.at(now + latency, finish)
