"""LiteLLM (real, no mocks) talks to the simulator and maps its errors to its own exception types."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from collections.abc import Iterator
from typing import Any

import litellm
import pytest
from litellm.exceptions import MidStreamFallbackError
from pi_builder_middleware.testing import Behaviour, SimOutcome, SimProvider, Simulator

from .conftest import MESSAGES

litellm.suppress_debug_info = True


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator([SimProvider(name="a")], seed=1) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _fresh(sim: Simulator) -> Iterator[None]:
    sim.up("a")
    sim.set_behaviour("a", Behaviour())
    sim.reset_stats()
    yield


def _call(sim: Simulator, **extra: Any) -> Any:
    return litellm.completion(
        model="openai/sim-model",
        api_base=sim.base_url("a"),
        api_key="sk-fake",
        messages=MESSAGES,
        max_retries=0,
        num_retries=0,
        **extra,
    )


def test_completion(sim: Simulator) -> None:
    response = _call(sim)
    assert response.choices[0].message.content.startswith("a ")
    assert response.usage.completion_tokens == 16
    assert response.usage.total_tokens == response.usage.prompt_tokens + 16
    assert sim.stats("a").total == 1


def test_stream(sim: Simulator) -> None:
    chunks = list(_call(sim, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("a ") and len(text.split()) == 16
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)
    assert chunks[-1].usage.completion_tokens == 16
    assert sim.stats("a").streamed == 1


def test_rate_limit_surfaces_with_retry_after(sim: Simulator) -> None:
    sim.set_behaviour("a", Behaviour.failing(SimOutcome.RATE_LIMIT, retry_after_s=7))
    with pytest.raises(litellm.RateLimitError) as info:
        _call(sim)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.litellm_response_headers["retry-after"] == "7"
    assert sim.stats("a").total == 1  # no hidden retries


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (SimOutcome.SERVER_ERROR, litellm.InternalServerError),
        (SimOutcome.SERVICE_UNAVAILABLE, litellm.ServiceUnavailableError),
        (SimOutcome.OVERLOADED, litellm.APIError),
        (SimOutcome.CONTEXT_LENGTH, litellm.ContextWindowExceededError),
        (SimOutcome.CONTENT_POLICY, litellm.ContentPolicyViolationError),
        (SimOutcome.AUTHENTICATION, litellm.AuthenticationError),
        (SimOutcome.CONNECTION_RESET, litellm.InternalServerError),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_error_mapping(sim: Simulator, kind: SimOutcome, error: type[Exception], stream: bool) -> None:
    sim.down("a", kind)
    with pytest.raises(error):
        result = _call(sim, stream=stream)
        if stream:
            list(result)
    assert sim.stats("a").outcomes == (kind,)


def test_hang_becomes_litellm_timeout(sim: Simulator) -> None:
    sim.set_behaviour("a", Behaviour.failing(SimOutcome.TIMEOUT, hang_s=5))
    with pytest.raises(litellm.Timeout):
        _call(sim, timeout=0.2)


def test_stream_cut_raises_while_iterating(sim: Simulator) -> None:
    sim.set_behaviour("a", Behaviour.failing(SimOutcome.STREAM_CUT, stream_cut_after_chunks=2))
    received = []
    # LiteLLM 1.110 wraps a mid-stream break as MidStreamFallbackError (a ServiceUnavailableError).
    with pytest.raises(MidStreamFallbackError):
        for chunk in _call(sim, stream=True):
            received.append(chunk)
    assert received  # some chunks arrived before the cut


async def test_async_completion_and_stream(sim: Simulator) -> None:
    kwargs: dict[str, Any] = {
        "model": "openai/sim-model",
        "api_base": sim.base_url("a"),
        "api_key": "sk-fake",
        "messages": MESSAGES,
        "max_retries": 0,
    }
    response = await litellm.acompletion(**kwargs)
    assert response.choices[0].message.content.startswith("a ")
    stream = await litellm.acompletion(stream=True, **kwargs)
    pieces = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert "".join(pieces).startswith("a ")
