"""Active health checks: every probe has a time limit, and each provider's probe runs on its own."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest

from pi_builder_middleware import (
    CircuitState,
    ConfigError,
    EventKind,
    FailoverConfig,
    ManualClock,
    Middleware,
    Provider,
)


def checked(*ids: str, **config: object) -> Middleware:
    failover = FailoverConfig.preset("aggressive", jitter=0.0, **config)  # type: ignore[arg-type]
    return Middleware(
        [Provider(id=pid) for pid in ids], failover=failover, clock=ManualClock(0.0), load_entrypoints=False
    )


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def test_probes_have_a_finite_default_time_limit():
    assert FailoverConfig().health_check_timeout_s == 10.0
    with pytest.raises(ConfigError, match="health_check_timeout_s"):
        FailoverConfig(health_check_timeout_s=0)


async def test_a_probe_that_hangs_does_not_stop_the_checks_of_the_other_providers():
    mw = checked("hangs", "fine")
    probed: Counter[str] = Counter()

    async def probe(provider: Provider) -> bool:
        probed[provider.id] += 1
        if provider.id == "hangs":
            await asyncio.Event().wait()  # never answers (within the default 10 s limit of this test)
        return True

    mw.start_health_checks(probe, interval_s=0.01)
    try:
        await until(lambda: probed["fine"] >= 5)
    finally:
        await mw.stop_health_checks()
    assert probed["hangs"] == 1  # still waiting for its first answer: not piled up
    assert mw.failover.breaker_info("hangs")["probe_overruns"] >= 4


async def test_a_probe_that_hangs_is_a_timeout_failure_after_the_configured_limit():
    mw = checked("hangs", "fine", health_check_timeout_s=0.02)

    async def probe(provider: Provider) -> bool:
        if provider.id == "hangs":
            await asyncio.Event().wait()
        return True

    mw.start_health_checks(probe, interval_s=0.01)
    try:
        await until(lambda: mw.failover.state("hangs") is CircuitState.OPEN)  # two timeouts trip it
    finally:
        await mw.stop_health_checks()
    assert mw.failover.state("fine") is CircuitState.CLOSED
    probe_events = [e for e in mw.failover.events if e.kind is EventKind.PROBE and e.provider_id == "hangs"]
    assert probe_events and all("timed out after 0.02 s" in e.detail for e in probe_events)


async def test_a_provider_removed_during_a_round_does_not_stop_the_checks():
    mw = checked("a", "b")
    probed: Counter[str] = Counter()

    async def probe(provider: Provider) -> bool:
        probed[provider.id] += 1
        if "b" in mw.providers:
            mw.remove_provider("b")  # b's probe of this round then finds no provider b
        return True

    mw.start_health_checks(probe, interval_s=0.01)
    try:
        await until(lambda: probed["a"] >= 3)
    finally:
        await mw.stop_health_checks()
    assert set(mw.providers) == {"a"}


async def test_run_health_checks_once_bounds_every_probe_by_the_default_limit():
    mw = checked("hangs", "fine", health_check_timeout_s=0.02)

    async def probe(provider: str) -> bool:
        if provider == "hangs":
            await asyncio.Event().wait()
        return True

    await asyncio.wait_for(mw.failover.run_health_checks_once(probe), 2.0)
    assert mw.failover.breaker_info("hangs")["consecutive_failures"] == 1
