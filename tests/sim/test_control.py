"""Runtime control, fault schedules on an injected clock, determinism, request counting, lifecycle."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest
from pi_builder_middleware.testing import (
    Behaviour,
    FaultWindow,
    Latency,
    ManualClock,
    SimOutcome,
    SimProvider,
    Simulator,
    SimulatorConfigError,
    SimulatorStateError,
)

from pi_builder_middleware import PiBuilderError

from .conftest import MakeSim, chat

MIXED = Behaviour(
    error_rate=0.5,
    errors={SimOutcome.SERVER_ERROR: 1, SimOutcome.RATE_LIMIT: 1, SimOutcome.SERVICE_UNAVAILABLE: 1},
    retry_after_s=0,
)


def _outcomes(sim: Simulator, http: httpx.Client, name: str, count: int) -> tuple[SimOutcome, ...]:
    for _ in range(count):
        chat(http, sim.base_url(name))
    return sim.stats(name).outcomes


def test_same_seed_same_outcomes_different_seed_different(make_sim: MakeSim, http: httpx.Client) -> None:
    runs = [_outcomes(make_sim(SimProvider(name="a", behaviour=MIXED), seed=seed), http, "a", 24) for seed in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert {SimOutcome.SUCCESS, SimOutcome.SERVER_ERROR, SimOutcome.RATE_LIMIT} <= set(runs[0])


def test_sequence_depends_on_provider_name_not_on_other_traffic(make_sim: MakeSim, http: httpx.Client) -> None:
    alone = _outcomes(make_sim(SimProvider(name="a", behaviour=MIXED), seed=3), http, "a", 12)
    sim = make_sim(SimProvider(name="a", behaviour=MIXED), SimProvider(name="b", behaviour=MIXED), seed=3)
    for _ in range(12):
        chat(http, sim.base_url("b"))
        chat(http, sim.base_url("a"))
    assert sim.stats("a").outcomes == alone
    assert sim.stats("b").outcomes != alone


def test_reset_stats_replays_the_sequence(make_sim: MakeSim, http: httpx.Client) -> None:
    sim = make_sim(SimProvider(name="a", behaviour=MIXED), seed=5)
    first = _outcomes(sim, http, "a", 10)
    sim.reset_stats("a")
    assert sim.stats("a").total == 0
    assert _outcomes(sim, http, "a", 10) == first


def test_fault_schedule_follows_injected_clock(make_sim: MakeSim, http: httpx.Client) -> None:
    clock = ManualClock()
    faults = (
        FaultWindow(start_s=10, end_s=25, error_rate=1.0, errors={SimOutcome.SERVICE_UNAVAILABLE: 1}),
        FaultWindow(start_s=30, latency_multiplier=10, error_rate=1.0, errors={SimOutcome.RATE_LIMIT: 1}),
    )
    sim = make_sim(SimProvider(name="a", behaviour=Behaviour(latency=Latency.fixed(2)), faults=faults), clock=clock)
    url = sim.base_url("a")
    assert chat(http, url).status_code == 200
    clock.set(10)
    assert chat(http, url).status_code == 503
    clock.advance(14.9)
    assert chat(http, url).status_code == 503
    clock.set(25)
    ok = chat(http, url)
    assert ok.status_code == 200 and ok.headers["openai-processing-ms"] == "2"
    clock.set(31)
    slow = chat(http, url)
    assert slow.status_code == 429 and slow.headers["openai-processing-ms"] == "20"
    assert sim.provider("a").current_behaviour().latency_multiplier == 10
    assert sim.stats("a").timestamps == pytest.approx((0, 10, 24.9, 25, 31))
    assert sim.elapsed() == 31


def test_down_and_up_at_runtime(sim: Simulator, http: httpx.Client) -> None:
    url = sim.base_url("a")
    assert chat(http, url).status_code == 200
    sim.down("a")
    assert sim.provider("a").is_down
    assert [chat(http, url).status_code for _ in range(3)] == [503, 503, 503]
    sim.provider("a").down(SimOutcome.OVERLOADED)
    assert chat(http, url).status_code == 529
    sim.up("a")
    assert chat(http, url).status_code == 200
    assert chat(http, sim.base_url("b")).status_code == 200  # other providers unaffected
    with pytest.raises(SimulatorConfigError, match=r"error outcome.*up\(\)") as info:
        sim.down("a", SimOutcome.SUCCESS)
    assert info.value.field == "kind" and isinstance(info.value, PiBuilderError)
    assert not sim.provider("a").is_down  # refused: the provider keeps answering
    assert chat(http, url).status_code == 200


def test_set_and_update_behaviour_at_runtime(sim: Simulator, http: httpx.Client) -> None:
    sim.set_behaviour("a", Behaviour.failing(SimOutcome.SERVER_ERROR))
    assert chat(http, sim.base_url("a")).status_code == 500
    updated = sim.update_behaviour("a", error_rate=0.0, response_tokens=4)
    assert updated.response_tokens == 4 and sim.provider("a").behaviour == updated
    assert chat(http, sim.base_url("a")).json()["usage"]["completion_tokens"] == 4
    with pytest.raises(SimulatorConfigError, match=r"behaviour\.error_rate: must be between 0 and 1"):
        sim.update_behaviour("a", error_rate=1.5)
    sim.set_faults("a", [FaultWindow(error_rate=1.0, errors={SimOutcome.OVERLOADED: 1})])
    assert chat(http, sim.base_url("a")).status_code == 529


def test_request_counting(sim: Simulator, http: httpx.Client) -> None:
    for _ in range(3):
        chat(http, sim.base_url("a"))
    chat(http, sim.base_url("a"), stream=True)
    sim.down("b", SimOutcome.RATE_LIMIT)
    chat(http, sim.base_url("b"))
    a, b = sim.stats("a"), sim.stats("b")
    assert (a.total, a.successes, a.errors, a.streamed) == (4, 4, 0, 1)
    assert [r.n for r in a.records] == [0, 1, 2, 3]
    assert list(a.timestamps) == sorted(a.timestamps)
    assert (b.total, b.count(SimOutcome.RATE_LIMIT), b.errors) == (1, 1, 1)
    assert dict(b.by_outcome) == {SimOutcome.RATE_LIMIT: 1}
    assert set(sim.all_stats()) == {"a", "b"}
    sim.reset_stats()
    assert sim.stats("a").total == sim.stats("b").total == 0


def test_each_provider_has_its_own_port(sim: Simulator) -> None:
    urls = sim.urls()
    assert set(urls) == {"a", "b"}
    assert urls["a"] != urls["b"]
    assert all(u.startswith("http://127.0.0.1:") and u.endswith("/v1") for u in urls.values())
    assert sim.port("a") == int(urls["a"].rsplit(":", 1)[1].removesuffix("/v1"))


def test_lifecycle_leaks_no_threads_or_listeners() -> None:
    threads_before = set(threading.enumerate())
    with Simulator([SimProvider(name="a"), SimProvider(name="b")]) as sim:
        assert sim.running
        ports = [sim.port("a"), sim.port("b")]
        with pytest.raises(SimulatorStateError, match="already running"):
            sim.start()
    assert not sim.running
    assert set(threading.enumerate()) <= threads_before
    for port in ports:
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    with pytest.raises(SimulatorStateError, match="start the Simulator"):
        sim.base_url("a")
    sim.stop()  # idempotent


def test_restart_keeps_state(http: httpx.Client) -> None:
    sim = Simulator([SimProvider(name="a")])
    with sim:
        chat(http, sim.base_url("a"))
    with sim:
        chat(http, sim.base_url("a"))
    assert [r.n for r in sim.stats("a").records] == [0, 1]


def test_fixed_port_in_use_fails_cleanly() -> None:
    with Simulator([SimProvider(name="a")]) as first:
        taken = first.port("a")
        clash = Simulator([SimProvider(name="b", port=taken)])
        with pytest.raises(OSError):
            clash.start()
        assert not clash.running


def test_constructor_and_lookup_errors() -> None:
    with pytest.raises(SimulatorConfigError, match="duplicate provider names: a"):
        Simulator([SimProvider(name="a"), SimProvider(name="a")])
    with pytest.raises(SimulatorConfigError, match="providers: needs at least one provider"):
        Simulator([])
    sim = Simulator([SimProvider(name="a")])
    with pytest.raises(SimulatorStateError, match="no simulated provider named 'zz'; known: a"):
        sim.provider("zz")
