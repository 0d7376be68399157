"""The simulator worker process: fresh simulators, one clock origin with the caller, request logs back."""

from __future__ import annotations

import time

import httpx
import pytest
from pi_builder_middleware.testing import FaultWindow, SimOutcome, SimProvider
from pi_builder_middleware.tools.chaos import SimulatorProcess


def test_worker_serves_fresh_simulators_on_the_callers_clock():
    providers = [SimProvider(name="a", faults=(FaultWindow(start_s=1000, error_rate=1.0),)), SimProvider(name="b")]
    with SimulatorProcess() as sims:
        urls = sims.start(providers, seed=3)
        assert set(urls) == {"a", "b"}
        origin = time.monotonic() - 1000.5  # "now" is 1000.5 s into the schedule: a's fault window is open
        sims.go(origin)
        body = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(timeout=10) as client:
            assert client.post(f"{urls['a']}/chat/completions", json=body).status_code == 500
            assert client.post(f"{urls['b']}/chat/completions", json=body).status_code == 200
        records = sims.records()
        ((a,), (b,)) = records["a"], records["b"]
        assert a.outcome is SimOutcome.SERVER_ERROR and b.outcome is SimOutcome.SUCCESS
        assert 1000.5 <= a.at < 1000.5 + 30  # the worker's clock counts from the caller's origin
        sims.stop()
        urls2 = sims.start([SimProvider(name="c")], seed=3)  # a fresh simulator in the same worker
        sims.go(time.monotonic())
        assert set(urls2) == {"c"} and sims.records() == {"c": ()}
        sims.stop()


def test_worker_reports_errors_instead_of_dying():
    with SimulatorProcess() as sims:
        with pytest.raises(RuntimeError, match="simulator process"):
            sims.records()  # nothing started yet
        assert set(sims.start([SimProvider(name="a")], seed=0)) == {"a"}
        sims.stop()
