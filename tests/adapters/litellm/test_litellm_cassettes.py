"""Real provider wire formats (vcrpy cassettes) through a real Router with install(): LiteLLM's own HTTP
clients, parsing and exception mapping run, and the middleware classifies what comes out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import litellm
import pytest
from litellm_support import MESSAGES, OutcomeLog, async_wait_until

from pi_builder_middleware import CircuitState, ErrorKind, EventKind, ManualClock

TESTS = Path(__file__).resolve().parents[2]
if not (TESTS / "cassettes" / "_helpers.py").is_file():  # pragma: no cover - the cassettes ship with the repo
    pytest.skip("cassette replay helpers (tests/cassettes/_helpers.py) not present", allow_module_level=True)
if str(TESTS) not in sys.path:
    sys.path.append(str(TESTS))

from cassettes._exchanges import ANTHROPIC_FAKE_KEY, ANTHROPIC_MODEL, OPENAI_FAKE_KEY, OPENAI_MODEL  # noqa: E402
from cassettes._helpers import EXPECTED, load_cassette, replay  # noqa: E402
from pi_builder_middleware.adapters.litellm import install  # noqa: E402

DEPLOYMENT = {"openai": "openai-1", "anthropic": "anthropic-1"}
GROUP = {"openai": "gpt", "anthropic": "claude"}

# cassette -> (kind, Retry-After seconds the provider asked for)
CLASSIFIED: dict[str, tuple[ErrorKind, float | None]] = {
    "openai_chat_429_retry_after": (ErrorKind.RATE_LIMITED, 20.0),
    "anthropic_messages_429_retry_after": (ErrorKind.RATE_LIMITED, 30.0),
    "openai_chat_500_server_error": (ErrorKind.SERVER_ERROR, None),
    "anthropic_messages_500_api_error": (ErrorKind.SERVER_ERROR, None),
    "anthropic_messages_529_overloaded": (ErrorKind.OVERLOADED, None),
    "openai_chat_400_context_length_exceeded": (ErrorKind.CONTEXT_WINDOW, None),
    "anthropic_messages_400_prompt_too_long": (ErrorKind.CONTEXT_WINDOW, None),
    "openai_chat_401_invalid_api_key": (ErrorKind.AUTH, None),
    "anthropic_messages_401_authentication_error": (ErrorKind.AUTH, None),
}


def make_router(**kwargs: Any) -> litellm.Router:
    settings: dict[str, Any] = {"num_retries": 0} | kwargs
    return litellm.Router(
        model_list=[
            {
                "model_name": "gpt",
                "litellm_params": {"model": OPENAI_MODEL, "api_key": OPENAI_FAKE_KEY},
                "model_info": {"id": "openai-1"},
            },
            {
                "model_name": "claude",
                "litellm_params": {"model": ANTHROPIC_MODEL, "api_key": ANTHROPIC_FAKE_KEY},
                "model_info": {"id": "anthropic-1"},
            },
        ],
        **settings,
    )


def test_every_error_cassette_has_a_classification() -> None:
    assert set(CLASSIFIED) == {name for name, e in EXPECTED.items() if e.exception is not None}


@pytest.mark.parametrize("name", sorted(CLASSIFIED))
async def test_error_cassettes_are_classified(name: str) -> None:
    expected = EXPECTED[name]
    kind, retry_after = CLASSIFIED[name]
    pid = DEPLOYMENT[expected.provider]
    log, clock = OutcomeLog(), ManualClock(10.0)
    router = make_router()
    with install(router, plugins=[log], clock=clock) as handle:
        with replay(name) as cassette, pytest.raises(getattr(litellm, expected.exception or "")):
            await router.acompletion(model=GROUP[expected.provider], messages=MESSAGES)
        assert cassette.play_count == 1
        await async_wait_until(lambda: len(log.items) == 1)
        [(outcome, got)] = log.items
        assert outcome.provider_id == pid and not outcome.ok
        assert got is kind, f"{name}: {type(outcome.error).__name__} classified {got}, expected {kind}"
        mw = handle.middleware
        health = mw.health(pid)
        assert mw.failover.state(pid) is CircuitState.CLOSED  # one error never trips a breaker
        if kind is ErrorKind.RATE_LIMITED:
            assert outcome.retry_after_s == retry_after
            assert mw.failover.unavailable_reason(pid) == f"rate limited for {retry_after:.1f} s more"
            assert health.consecutive_failures == 0 and health.rate_limited == 1
        elif kind.is_health_failure:
            assert health.consecutive_failures == 1 and health.failures == 1
            assert mw.failover.unavailable_reason(pid) is None
        else:  # context window / auth: this request's or the configuration's problem, not an outage
            assert health.consecutive_failures == 0 and health.failures == 0
            assert mw.failover.unavailable_reason(pid) is None
        if kind is ErrorKind.AUTH:
            assert [e.kind for e in mw.failover.events if e.provider_id == pid] == [EventKind.CONFIG_ERROR]


@pytest.mark.parametrize("name", ["openai_chat_200", "anthropic_messages_200"])
async def test_success_cassettes_record_tokens_and_cost(name: str) -> None:
    expected = EXPECTED[name]
    pid = DEPLOYMENT[expected.provider]
    router = make_router()
    log = OutcomeLog()
    with install(router, plugins=[log]) as handle:
        with replay(name):
            response = await router.acompletion(model=GROUP[expected.provider], messages=MESSAGES)
        await async_wait_until(lambda: len(log.items) == 1)
        [(outcome, _)] = log.items
        assert outcome.ok and outcome.provider_id == pid
        assert (outcome.input_tokens, outcome.output_tokens) == (
            response.usage.prompt_tokens,
            response.usage.completion_tokens,
        )
        litellm_cost = response._hidden_params["response_cost"]
        if litellm_cost:  # LiteLLM priced it (gpt-4o-mini is in its map): that is the cost recorded
            assert outcome.cost == pytest.approx(litellm_cost)
            assert handle.middleware.health(pid).cost_total == pytest.approx(litellm_cost)
        else:  # not in LiteLLM's map: cost left to the provider's prices (unknown here: 0)
            assert outcome.cost is None and handle.middleware.health(pid).cost_total == 0.0
        assert handle.middleware.health(pid).tokens_out == response.usage.completion_tokens


@pytest.mark.parametrize("name", ["openai_chat_200_stream", "anthropic_messages_200_stream"])
async def test_stream_cassettes_record_ttft(name: str) -> None:
    expected = EXPECTED[name]
    router = make_router()
    log = OutcomeLog()
    with install(router, plugins=[log]):
        with replay(name):
            stream = await router.acompletion(
                model=GROUP[expected.provider], messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
            chunks: list[Any] = [chunk async for chunk in stream]
        assert chunks
        await async_wait_until(lambda: len(log.items) == 1)
        [(outcome, _)] = log.items
        assert outcome.ok and outcome.ttft_s is not None and 0 <= outcome.ttft_s <= outcome.latency_s
        assert outcome.output_tokens > 0


async def test_rate_limited_openai_falls_back_to_anthropic_and_stays_out_for_retry_after() -> None:
    router = make_router(fallbacks=[{"gpt": ["claude"]}])
    clock = ManualClock(0.0)
    with install(router, clock=clock) as handle:
        with replay("openai_chat_429_retry_after", "anthropic_messages_200") as cassette:
            response = await router.acompletion(model="gpt", messages=MESSAGES)
        assert cassette.all_played
        assert response._hidden_params["model_id"] == "anthropic-1"
        headers = load_cassette("openai_chat_429_retry_after")["interactions"][0]["response"]["headers"]
        retry_after = float(next(v[0] for k, v in headers.items() if k.lower() == "retry-after"))
        assert handle.middleware.health("openai-1").cooldown_for_s == pytest.approx(retry_after)
