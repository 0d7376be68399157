"""Replicas hammered by many threads while they exchange updates: no deadlock, no error, one view."""

from __future__ import annotations

import random
import threading
import time

from pi_builder_middleware import (
    ErrorKind,
    FailoverConfig,
    MemoryStateStore,
    NoProviderAvailableError,
    Outcome,
)

from .conftest import PROVIDERS

KINDS = (None, ErrorKind.SERVER_ERROR, ErrorKind.TIMEOUT, ErrorKind.RATE_LIMITED)


def test_threads_on_several_replicas_converge(make_replica):
    store = MemoryStateStore()
    # real clocks, short ejections: trips, half-opens, recoveries and cooldowns all happen concurrently
    config = FailoverConfig.preset("aggressive", base_ejection_s=0.01, max_ejection_s=0.02, jitter=0.0)
    replicas = [make_replica(store, clock=time.monotonic, failover=config) for _ in range(3)]
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        mw = replicas[seed % len(replicas)]
        try:
            for _ in range(1500):
                try:
                    pid = mw.select().provider.id
                except NoProviderAvailableError:
                    pid = rng.choice(PROVIDERS)
                kind = rng.choice(KINDS)
                mw.record(Outcome(pid, kind is None, 0.01, error_kind=kind, retry_after_s=0.005))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert errors == []
    assert store.stats()["errors"] == 0

    def newest(mw) -> dict[str, tuple[float, str]]:
        return {u.provider_id: u.version for u in mw.failover.shared_updates() if not u.is_cooldown}

    views = [newest(mw) for mw in replicas]
    assert views[0] and views[0] == views[1] == views[2]  # every replica ended on the same latest transition
    counts = [mw.failover.stats()["store"]["replica_applied"] for mw in replicas]
    assert all(n > 0 for n in counts)
