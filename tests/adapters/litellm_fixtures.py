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

__all__ = ["MakeSim", "make_sim", "outcomes", "remove_leftover_callbacks", "room_for_router_callbacks"]

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


def _leftover(entry: object) -> bool:
    """Our logger, or a callback bound to a ``litellm.Router`` (see :func:`remove_leftover_callbacks`)."""
    return isinstance(entry, MiddlewareCallback) or isinstance(getattr(entry, "__self__", None), litellm.Router)


@pytest.fixture(autouse=True)
def remove_leftover_callbacks() -> Iterator[None]:
    """Our logger and the test's Routers' own callbacks leave LiteLLM's process-wide callback lists after the test.

    Our logger: a test that fails before uninstalling must not leak it into the next test. The Routers': every
    ``litellm.Router`` appends its own bound methods to ``success_callback``, ``failure_callback``,
    ``_async_success_callback`` and ``_async_failure_callback`` and never takes them out (LiteLLM 1.80.0
    ``router.py:554-582``, ``Router.__init__``, "USAGE TRACKING" / "COOLDOWNS"; still so in 1.108), and
    LiteLLM refuses any callback once a list holds ``MAX_CALLBACKS`` entries, with a warning only (1.80.0
    ``litellm_core_utils/logging_callback_manager.py:25,134``: 30; later ``litellm.constants.MAX_CALLBACKS``,
    100 in 1.108). On 1.80 some thirty Routers built by earlier tests fill the lists, so a later installation's
    logger is never promoted into them and receives no event.
    """
    before = {name: list(entries) for name in CALLBACK_LISTS if isinstance(entries := getattr(litellm, name), list)}
    yield
    for name, entries in before.items():
        current = getattr(litellm, name, None)
        if isinstance(current, list):
            kept = {id(c) for c in entries if not isinstance(c, MiddlewareCallback)}
            current[:] = [c for c in current if id(c) in kept or not _leftover(c)]


def _strategy_selector(entry: object) -> bool:
    """A Router's routing-strategy selector (LiteLLM's latency, usage, cost, least-busy loggers)."""
    return type(entry).__module__.startswith("litellm.router_strategy.")


@pytest.fixture
def room_for_router_callbacks() -> Iterator[None]:
    """Earlier Routers' strategy selectors step out of LiteLLM's callback lists for the test, and back after it.

    Every Router leaves its selectors in ``litellm.callbacks``, and LiteLLM refuses a callback once a list holds
    ``MAX_CALLBACKS`` entries (a warning only): a ``usage-based-routing-v2`` Router built late in a long test
    run then has no rpm counting or pre-call check at all, plain or installed. The selectors of other Routers
    also check deployments of the same ids. A case about v2's limits needs a Router as a fresh process builds it.
    """
    saved = {name: list(entries) for name in CALLBACK_LISTS if isinstance(entries := getattr(litellm, name), list)}
    for name, entries in saved.items():
        getattr(litellm, name)[:] = [c for c in entries if not _strategy_selector(c)]
    yield
    for name, entries in saved.items():
        current = getattr(litellm, name)
        kept = {id(c) for c in current}
        current[:] = [c for c in entries if id(c) in kept or _strategy_selector(c)] + [
            c for c in current if all(c is not e for e in entries)
        ]
