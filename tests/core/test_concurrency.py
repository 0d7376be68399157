"""One Middleware shared by many threads and by many asyncio tasks: exact counts, no deadlock, no error.

Observers call back into the middleware from inside hooks (health(), stats(), select(), export()),
which would deadlock if an engine emitted events while holding its lock.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
from collections import Counter
from collections.abc import Callable

import pytest

from pi_builder_middleware import (
    Alert,
    AllProvidersFailedError,
    ErrorKind,
    FailoverConfig,
    HealthChange,
    ManualClock,
    Middleware,
    MonitorConfig,
    NoProviderAvailableError,
    Outcome,
    Provider,
    RoutingDecision,
    Usage,
    hookimpl,
)

PIDS = ("steady", "flaky", "limited", "broken")
THREADS, PER_THREAD = 8, 2000
JOIN_TIMEOUT_S = 60.0


class Reentrant:
    """Observer that counts everything and calls back into the middleware from inside the hooks."""

    def __init__(self) -> None:
        self.mw: Middleware | None = None
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.errors: list[BaseException] = []

    def _guard(self, name: str, action: Callable[[Middleware], object], every: int = 7) -> None:
        with self.lock:
            self.counts[name] += 1
            n = self.counts[name]
        if self.mw is None:
            return
        try:
            if n % every == 1:  # not every time: keep the run short
                action(self.mw)
        except BaseException as exc:  # the host would swallow it; keep it for the assertion
            self.errors.append(exc)
            raise

    @hookimpl
    def pbm_on_outcome(self, outcome: Outcome, error_kind: ErrorKind | None) -> None:
        self._guard("outcome", lambda mw: mw.failover.state(outcome.provider_id))

    @hookimpl
    def pbm_on_decision(self, decision: RoutingDecision) -> None:
        self._guard("decision", lambda mw: mw.failover.unavailable_reason(decision.provider.id))

    @hookimpl
    def pbm_on_health_change(self, event: HealthChange) -> None:
        def action(mw: Middleware) -> None:
            mw.health(event.provider_id)
            mw.stats()
            try:
                mw.select(reserve=False)
                with self.lock:
                    self.counts["nested_select"] += 1
            except NoProviderAvailableError:
                pass

        self._guard("health_change", action, every=13)

    @hookimpl
    def pbm_on_alert(self, alert: Alert) -> None:
        self._guard("alert", lambda mw: (mw.health(alert.provider_id), json.dumps(mw.export())), every=31)


@pytest.fixture
def fast_switching():
    """Switch threads every few microseconds so races show up within a short run."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _join_all(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT_S)
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"deadlock or livelock: {stuck} still running after {JOIN_TIMEOUT_S} s"


def _threaded_middleware(observer: Reentrant) -> Middleware:
    mw = Middleware(
        [Provider(id=pid, cost_per_1k_input=0.001 * (i + 1)) for i, pid in enumerate(PIDS)],
        strategy="failover",
        # Real time with millisecond ejections: breakers open, half-open and close all through the run.
        failover=FailoverConfig.preset(
            "aggressive",
            base_ejection_s=0.001,
            max_ejection_s=0.004,
            half_open_permit_timeout_s=0.01,
            default_rate_limit_cooldown_s=0.001,
            max_rate_limit_cooldown_s=0.002,
            max_events=200,
        ),
        monitor=MonitorConfig(window_s=3600.0, max_samples=THREADS * PER_THREAD, min_samples=3),
        plugins=[observer],
        load_entrypoints=False,
        seed=5,
        history_size=200,
    )
    observer.mw = mw
    return mw


def _outcome_for(pid: str, rng: random.Random) -> Outcome:
    if pid == "steady" or (pid == "flaky" and rng.random() < 0.6):
        return Outcome(pid, True, rng.random() / 10, input_tokens=3, output_tokens=2)
    if pid == "flaky":
        return Outcome(pid, False, 0.01, error_kind=rng.choice([ErrorKind.SERVER_ERROR, ErrorKind.TIMEOUT]))
    if pid == "limited":
        return Outcome(pid, False, 0.0, error_kind=ErrorKind.RATE_LIMITED, retry_after_s=0.001)
    return Outcome(pid, False, 0.0, error_kind=rng.choice([ErrorKind.AUTH, ErrorKind.CONNECTION]))


@pytest.mark.timeout(120)
def test_threads_select_and_record_with_exact_counts() -> None:
    observer = Reentrant()
    mw = _threaded_middleware(observer)
    selects = Counter[str]()
    no_provider = Counter[str]()
    recorded: list[Counter[tuple[str, str]]] = [Counter() for _ in range(THREADS)]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        rng = random.Random(index)
        mine: Counter[str] = Counter()
        try:
            for i in range(PER_THREAD):
                try:
                    decision = mw.select(reserve=rng.random() < 0.5)
                    mine[decision.provider.id] += 1
                    # The outcome of the chosen provider or of a backup (as if the first attempt failed over).
                    pid = rng.choice(decision.providers).id
                except NoProviderAvailableError:
                    no_provider[str(index)] += 1
                    pid = rng.choice(PIDS)
                outcome = _outcome_for(pid, rng)
                kind = mw.record(outcome)
                recorded[index][(pid, "ok" if kind is None else kind.value)] += 1
                if i % 500 == 0:  # readers interleaved with writers
                    mw.health(rng.choice(PIDS))
                    json.dumps(mw.export())
        except BaseException as exc:
            errors.append(exc)
        with lock:
            selects.update(mine)

    def reader() -> None:
        try:
            for _ in range(25):
                json.dumps(mw.export())
                mw.stats()
                if not any(t.is_alive() for t in workers):
                    break
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(i,), name=f"worker-{i}") for i in range(THREADS)]
    readers = [threading.Thread(target=reader, name=f"reader-{i}") for i in range(2)]
    for t in workers:
        t.start()
    for t in readers:
        t.start()
    for t in [*workers, *readers]:
        t.join(JOIN_TIMEOUT_S)
    assert not [t.name for t in [*workers, *readers] if t.is_alive()], "deadlock"
    assert not errors, errors[:3]
    assert not observer.errors, observer.errors[:3]
    assert mw.stats()["plugin_failures"] == {}, "an observer hook raised"

    total: Counter[tuple[str, str]] = sum(recorded, Counter())
    assert sum(total.values()) == THREADS * PER_THREAD
    # Router: every successful select counted once, per provider too (nested selects from hooks included).
    stats = mw.stats()
    nested = observer.counts["nested_select"]
    assert stats["router"]["total_decisions"] == sum(selects.values()) + nested
    assert sum(stats["router"]["per_provider"].values()) == stats["router"]["total_decisions"]
    assert all(stats["router"]["per_provider"].get(p, 0) >= n for p, n in selects.items())
    assert observer.counts["decision"] == stats["router"]["total_decisions"]
    assert observer.counts["outcome"] == THREADS * PER_THREAD
    # Monitor and breakers: exact per-provider sums.
    for pid in PIDS:
        mine = {kind: n for (p, kind), n in total.items() if p == pid}
        calls = sum(mine.values())
        metrics = mw.monitor.metrics(pid)
        assert metrics["lifetime_calls"] == calls
        assert metrics["calls"] == calls  # nothing left the one-hour window
        assert metrics["successes"] == mine.get("ok", 0)
        health_failures = sum(n for k, n in mine.items() if k != "ok" and ErrorKind(k).is_health_failure)
        assert metrics["failures"] == health_failures
        assert metrics["rate_limited"] == mine.get("rate_limited", 0)
        assert metrics["tokens_in"] == 3 * mine.get("ok", 0)
        breaker = stats["failover"]["providers"][pid]
        assert breaker.get("successes", 0) == mine.get("ok", 0)
        for kind, n in mine.items():
            if kind != "ok":
                assert breaker[kind] == n
    assert stats["failover"]["events"].get("blacklist", 0) > 0, "breakers never tripped: the run proved little"


@pytest.mark.timeout(120)
def test_providers_added_and_removed_while_other_threads_route(fast_switching) -> None:
    mw = Middleware([Provider(id=pid) for pid in PIDS[:2]], strategy="failover", load_entrypoints=False)
    stop = threading.Event()
    errors: list[BaseException] = []
    routed = Counter[str]()
    routed_lock = threading.Lock()  # Counter.update is not atomic: four threads finish at the same moment

    def churn() -> None:
        try:
            for i in range(3000):
                pid = f"temp-{i % 3}"
                mw.add_provider(Provider(id=pid))
                mw.remove_provider(pid)
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def route() -> None:
        mine: Counter[str] = Counter()
        try:
            while not stop.is_set():
                decision = mw.select()
                mine[decision.provider.id] += 1
                if decision.provider.id in PIDS:
                    mw.record(Outcome(decision.provider.id, True, 0.01))
                if mine.total() % 500 == 0:
                    json.dumps(mw.export())
        except BaseException as exc:
            errors.append(exc)
        with routed_lock:
            routed.update(mine)

    _join_all(
        [
            threading.Thread(target=churn, name="churn"),
            *(threading.Thread(target=route, name=f"route-{i}") for i in range(4)),
        ]
    )
    assert not errors, errors[:3]
    assert mw.router.statistics()["total_decisions"] == routed.total()
    assert set(mw.providers) == set(PIDS[:2])


@pytest.mark.timeout(120)
async def test_thousand_concurrent_aexecute_calls() -> None:
    clock = ManualClock()
    observer = Reentrant()
    mw = Middleware(
        [Provider(id=pid) for pid in PIDS[:3]],
        strategy="latency-optimal",
        clock=clock,
        seed=11,
        failover=FailoverConfig.preset("aggressive", base_ejection_s=0.05, max_ejection_s=0.2, jitter=0.0),
        monitor=MonitorConfig(window_s=3600.0, max_samples=10_000),
        plugins=[observer],
        load_entrypoints=False,
    )
    observer.mw = mw
    attempts: Counter[str] = Counter()
    successes: Counter[str] = Counter()

    async def call(task: int, provider: Provider) -> str:
        attempts[provider.id] += 1
        for _ in range(task % 4):
            await asyncio.sleep(0)  # interleave with the other tasks at every await
        clock.advance(0.001)
        if provider.id == "flaky" and task % 3 == 0:
            raise ConnectionResetError("reset")
        if provider.id == "limited" and task % 5 < 2:
            raise TimeoutError("slow")
        await asyncio.sleep(0)
        successes[provider.id] += 1
        return provider.id

    async def one(task: int) -> str:
        return await mw.aexecute(lambda p: call(task, p), usage=lambda _r: Usage(2, 3))

    results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(1000)), return_exceptions=True), 60)
    unexpected = [
        r
        for r in results
        if isinstance(r, BaseException) and not isinstance(r, AllProvidersFailedError | NoProviderAvailableError)
    ]
    assert not unexpected, unexpected[:3]
    assert not observer.errors and mw.stats()["plugin_failures"] == {}
    ok = Counter(r for r in results if isinstance(r, str))
    assert ok == successes and ok.total() > 500
    for pid in PIDS[:3]:
        metrics = mw.monitor.metrics(pid)
        assert metrics["lifetime_calls"] == attempts[pid]
        assert metrics["successes"] == successes[pid]
        assert metrics["tokens_in"] == 2 * successes[pid]
    stats = mw.stats()
    assert observer.counts["outcome"] == attempts.total()
    assert stats["router"]["total_decisions"] == observer.counts["decision"]
    refused_at_select = sum(
        1
        for r in results
        if isinstance(r, NoProviderAvailableError)
        and not any("before it could be tried" in why for why in r.reasons.values())
    )
    assert stats["router"]["total_decisions"] - observer.counts["nested_select"] == 1000 - refused_at_select
