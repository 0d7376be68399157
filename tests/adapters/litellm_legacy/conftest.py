"""Fixtures for the LiteLLM adapter on LiteLLM before 1.109 (``set_custom_routing_strategy``): real Routers of
the pinned old LiteLLM (scripts/setup.sh), simulated providers over real HTTP."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from collections.abc import Callable, Iterator

import litellm
import pytest
from litellm_support import CALLBACK_LISTS
from pi_builder_middleware.adapters.litellm import MiddlewareCallback

from pi_builder_middleware.sim import SimProvider, Simulator

MakeSim = Callable[..., Simulator]


@pytest.fixture
def make_sim() -> Iterator[MakeSim]:
    """Start simulators on demand; all are stopped after the test."""
    started: list[Simulator] = []

    def factory(*providers: SimProvider, seed: int = 0) -> Simulator:
        sim = Simulator(providers, seed=seed).start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture(autouse=True)
def _remove_leftover_callbacks() -> Iterator[None]:
    """A test that fails before uninstalling must not leak its callback into the next test."""
    yield
    for name in CALLBACK_LISTS:
        entries = getattr(litellm, name, None)
        if isinstance(entries, list):
            entries[:] = [c for c in entries if not isinstance(c, MiddlewareCallback)]
