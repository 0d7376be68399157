"""Behaviour.slow_tail: a share of requests many times slower, without changing the scenario's other draws."""

from __future__ import annotations

import pytest
from pi_builder_middleware.testing import Behaviour, Latency, SimulatorConfigError, SlowTail
from pi_builder_middleware.testing.behaviour import decide


def test_a_slow_tail_multiplies_latency_and_ttft_of_its_share_and_nothing_else():
    base = Behaviour(latency=Latency.lognormal(100, 0.25), ttft=Latency.lognormal(80, 0.25))
    tailed = base.model_copy(update={"slow_tail": SlowTail(share=0.05, multiplier=10)})
    slow = 0
    for n in range(2000):
        plain, maybe = decide(7, "alpha", n, base), decide(7, "alpha", n, tailed)
        assert maybe.outcome is plain.outcome
        if maybe.latency_s != plain.latency_s:
            slow += 1
            assert maybe.latency_s == pytest.approx(plain.latency_s * 10)
            assert maybe.ttft_s == pytest.approx(plain.ttft_s * 10)
        else:
            assert maybe.ttft_s == plain.ttft_s
    assert 60 <= slow <= 140  # about 5 % of 2000


def test_bad_slow_tail_values_are_refused():
    with pytest.raises((SimulatorConfigError, ValueError)):
        Behaviour.model_validate({"slow_tail": {"share": 1.5}})
    with pytest.raises((SimulatorConfigError, ValueError)):
        Behaviour.model_validate({"slow_tail": {"multiplier": 0}})
