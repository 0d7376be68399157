"""Fixtures for the LangChain adapter tests: a provider simulator and ChatOpenAI clients pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from langchain_openai import ChatOpenAI
from pi_builder_middleware.testing import SimProvider, Simulator

from pi_builder_middleware import FailoverConfig, ManualClock, Middleware, Provider, RoutingConfig

MakeChat = Callable[..., ChatOpenAI]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """Three healthy simulated providers, ``a``, ``b`` and ``c``, on 127.0.0.1."""
    with Simulator([SimProvider(name="a"), SimProvider(name="b"), SimProvider(name="c")], seed=7) as simulator:
        yield simulator


@pytest.fixture
def make_chat(sim: Simulator) -> MakeChat:
    """``make_chat("a")``: a real ChatOpenAI talking HTTP to simulated provider ``a``, without SDK retries."""

    def factory(name: str, **kwargs: object) -> ChatOpenAI:
        return ChatOpenAI(
            base_url=sim.base_url(name),
            api_key="sk-fake",
            model="sim",
            max_retries=0,
            timeout=10,
            stream_usage=True,
            **kwargs,
        )  # type: ignore[arg-type]

    return factory


@pytest.fixture
def clock() -> ManualClock:
    """Middleware time that only moves when the test says so."""
    return ManualClock(1000.0)


@pytest.fixture
def make_mw(clock: ManualClock) -> Callable[..., Middleware]:
    """``make_mw("a", "b")``: a middleware on the manual clock, aggressive breakers (2 failures trip, 10 s out)."""

    def factory(
        *ids: str | Provider, strategy: str = "failover", routing: RoutingConfig | None = None, **overrides: object
    ) -> Middleware:
        providers = [p if isinstance(p, Provider) else Provider(id=p) for p in ids]
        config = FailoverConfig.preset("aggressive", jitter=0.0, **overrides)
        return Middleware(providers, strategy=strategy, failover=config, clock=clock, seed=1, routing=routing)

    return factory
