"""Fixtures both LiteLLM adapter suites use (``litellm/`` and ``litellm_legacy/``; each conftest imports them):
simulated providers over real HTTP, an outcome log, and no callback leaking from one test into the next."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from collections.abc import Callable, Iterator

import litellm
import pytest
from litellm_support import CALLBACK_LISTS, OutcomeLog
from pi_builder_middleware.adapters.litellm import MiddlewareCallback
from pi_builder_middleware.testing import SimProvider, Simulator

__all__ = ["MakeSim", "make_sim", "outcomes", "remove_leftover_callbacks"]

MakeSim = Callable[..., Simulator]


@pytest.fixture
def outcomes() -> OutcomeLog:
    return OutcomeLog()


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
def remove_leftover_callbacks() -> Iterator[None]:
    """A test that fails before uninstalling must not leak its callback into the next test."""
    yield
    for name in CALLBACK_LISTS:
        entries = getattr(litellm, name, None)
        if isinstance(entries, list):
            entries[:] = [c for c in entries if not isinstance(c, MiddlewareCallback)]
