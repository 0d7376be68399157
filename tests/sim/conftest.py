"""Fixtures for the simulator's own tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import openai
import pytest
from pi_builder_middleware.testing import SimClock, SimProvider, Simulator

MakeSim = Callable[..., Simulator]
MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def make_sim() -> Iterator[MakeSim]:
    """Start simulators on demand; every one is stopped after the test."""
    started: list[Simulator] = []

    def factory(*providers: SimProvider, seed: int = 0, clock: SimClock | None = None) -> Simulator:
        sim = Simulator(providers or [SimProvider(name="a")], seed=seed, clock=clock).start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(make_sim: MakeSim) -> Simulator:
    """Two default providers, ``a`` and ``b`` (no latency, no errors)."""
    return make_sim(SimProvider(name="a"), SimProvider(name="b"))


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as client:
        yield client


@pytest.fixture
def openai_client(sim: Simulator) -> Iterator[openai.OpenAI]:
    """An OpenAI SDK client pointed at provider ``a``, without retries."""
    with openai.OpenAI(base_url=sim.base_url("a"), api_key="sk-fake", max_retries=0, timeout=5.0) as client:
        yield client


def chat(http: httpx.Client, base_url: str, **extra: object) -> httpx.Response:
    """POST a small chat-completions request."""
    return http.post(f"{base_url}/chat/completions", json={"model": "sim-model", "messages": MESSAGES, **extra})
