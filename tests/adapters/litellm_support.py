"""Helpers shared by both LiteLLM adapter suites, ``litellm/`` and ``litellm_legacy/`` (deployments on the
simulator, polling, outcome log). Nothing here depends on the LiteLLM version."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import litellm
from pi_builder_middleware.testing import Simulator

from pi_builder_middleware import ErrorKind, Outcome, hookimpl

MESSAGES = [{"role": "user", "content": "Say hello."}]
CALLBACK_LISTS = (
    "callbacks",
    "input_callback",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
)

MakeSim = Callable[..., Simulator]


def deployment(sim: Simulator, name: str, group: str = "g", **model_info: Any) -> dict[str, Any]:
    """A LiteLLM deployment for simulated provider ``name`` (deployment id = name), SDK retries off."""
    return {
        "model_name": group,
        "litellm_params": {
            "model": "openai/sim-model",
            "api_key": "sk-fake",
            "api_base": sim.base_url(name),
            "max_retries": 0,
            "timeout": 5,
        },
        "model_info": {"id": name, **model_info},
    }


def mock_deployment(pid: str, group: str = "g", answer: str = "ok", **model_info: Any) -> dict[str, Any]:
    """A network-free deployment (``mock_response``), for pure unit cases."""
    return {
        "model_name": group,
        "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-fake", "mock_response": answer},
        "model_info": {"id": pid, **model_info},
    }


def callback_lists() -> dict[str, list[Any]]:
    """Copies of every LiteLLM callback list."""
    return {name: list(getattr(litellm, name)) for name in CALLBACK_LISTS}


class OutcomeLog:
    """A middleware plugin that keeps every recorded outcome and its classification."""

    def __init__(self) -> None:
        self.items: list[tuple[Outcome, ErrorKind | None]] = []

    @hookimpl
    def pbm_on_outcome(self, outcome: Outcome, error_kind: ErrorKind | None) -> None:
        self.items.append((outcome, error_kind))

    def of(self, provider_id: str) -> list[tuple[Outcome, ErrorKind | None]]:
        return [item for item in self.items if item[0].provider_id == provider_id]


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Poll (sync) until ``predicate()``; LiteLLM logs successes on background threads/tasks."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


async def async_wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Poll (async) until ``predicate()``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def served_by(response: Any) -> str:
    """Deployment id that answered a (non-streaming) response."""
    return str(response._hidden_params["model_id"])
