"""Each cassette, replayed through a real ``litellm.Router``: LiteLLM's HTTP client, parsing and
exception mapping run on the providers' wire formats, and nothing leaves the machine."""

from __future__ import annotations

import json
from typing import Any

import litellm
import pytest

from ._helpers import EXPECTED, block_network, cassette_names, load_cassette, model_list, replay

MESSAGES = [{"role": "user", "content": "Say hello."}]
GROUP = {"openai": "gpt", "anthropic": "claude"}

SUCCESSES = [name for name, e in EXPECTED.items() if e.exception is None and not e.stream]
STREAMS = [name for name, e in EXPECTED.items() if e.stream]
ERRORS = [name for name, e in EXPECTED.items() if e.exception is not None]


def _body(name: str) -> str:
    body: str = load_cassette(name)["interactions"][0]["response"]["body"]["string"]
    return body


def _expected_reply(name: str) -> tuple[str, int, int]:
    """(text, input tokens, output tokens) as the provider sent them in the cassette."""
    if EXPECTED[name].stream:
        events = [
            json.loads(line[len("data: ") :])
            for line in _body(name).splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
        if EXPECTED[name].provider == "openai":
            text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
            usage = next(e["usage"] for e in events if e.get("usage"))
            return text, usage["prompt_tokens"], usage["completion_tokens"]
        text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
        start = next(e for e in events if e["type"] == "message_start")
        delta = next(e for e in events if e["type"] == "message_delta")
        return text, start["message"]["usage"]["input_tokens"], delta["usage"]["output_tokens"]
    data = json.loads(_body(name))
    if EXPECTED[name].provider == "openai":
        usage = data["usage"]
        return data["choices"][0]["message"]["content"], usage["prompt_tokens"], usage["completion_tokens"]
    text = "".join(block["text"] for block in data["content"] if block["type"] == "text")
    return text, data["usage"]["input_tokens"], data["usage"]["output_tokens"]


def _assert_reply(name: str, text: str, usage: Any) -> None:
    expected_text, input_tokens, output_tokens = _expected_reply(name)
    assert text == expected_text
    assert usage.prompt_tokens == input_tokens
    assert usage.completion_tokens == output_tokens
    assert usage.total_tokens == input_tokens + output_tokens


def test_every_cassette_has_an_expectation() -> None:
    assert cassette_names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", cassette_names())
def test_cassette_targets_the_real_endpoint_once(name: str) -> None:
    data = load_cassette(name)
    [interaction] = data["interactions"]
    host = "api.openai.com" if EXPECTED[name].provider == "openai" else "api.anthropic.com"
    path = "/v1/chat/completions" if EXPECTED[name].provider == "openai" else "/v1/messages"
    assert interaction["request"]["uri"] == f"https://{host}{path}"
    assert interaction["response"]["status"]["code"] == EXPECTED[name].status
    assert data["metadata"]["provenance"]["exchange"] == name


@pytest.mark.parametrize("name", SUCCESSES)
async def test_success_async(router: Any, name: str) -> None:
    with replay(name) as cassette:
        response = await router.acompletion(model=GROUP[EXPECTED[name].provider], messages=MESSAGES)
    assert cassette.play_count == 1
    _assert_reply(name, response.choices[0].message.content, response.usage)
    assert response._hidden_params["model_id"] == f"{EXPECTED[name].provider}-1"


@pytest.mark.parametrize("name", STREAMS)
async def test_stream_async(router: Any, name: str) -> None:
    with replay(name) as cassette:
        stream = await router.acompletion(
            model=GROUP[EXPECTED[name].provider],
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert cassette.play_count == 1
    assert len(chunks) > 3
    built = litellm.stream_chunk_builder(chunks, messages=MESSAGES)
    _assert_reply(name, built.choices[0].message.content, built.usage)
    assert built.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("name", ERRORS)
async def test_error_async(router: Any, name: str) -> None:
    expected = EXPECTED[name]
    exception_class = getattr(litellm, expected.exception or "")
    # Repeats allowed, so play_count counts every request made: a hidden SDK retry would show.
    with (
        replay(name, allow_playback_repeats=True) as cassette,
        pytest.raises(exception_class) as caught,
    ):
        await router.acompletion(model=GROUP[expected.provider], messages=MESSAGES)
    assert cassette.play_count == 1, "Router num_retries=0: exactly one request, served by the cassette"
    exc = caught.value
    assert "Can't play back" not in str(exc)
    assert type(exc) is exception_class
    assert exc.llm_provider == expected.provider
    assert exc.litellm_response_headers.get("retry-after") == expected.retry_after
    # 529 is mapped to InternalServerError with status_code 500; the provider's code is kept aside.
    if expected.status == 529:
        assert (exc.status_code, exc.provider_status_code) == (500, 529)
    else:
        assert exc.status_code == expected.status


async def test_openai_429_exposes_retry_after_on_the_response_too(router: Any) -> None:
    with replay("openai_chat_429_retry_after"), pytest.raises(litellm.RateLimitError) as caught:
        await router.acompletion(model="gpt", messages=MESSAGES)
    headers = caught.value.response.headers
    assert headers["retry-after"] == "20"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-request-id"] == "req_FAKE0a1b2c3d4e5f60003"
    assert "Rate limit reached for gpt-4o-mini" in caught.value.message


async def test_anthropic_429_retry_after_only_on_litellm_response_headers(router: Any) -> None:
    """LiteLLM builds Anthropic's RateLimitError without the upstream response: headers are empty."""
    with replay("anthropic_messages_429_retry_after"), pytest.raises(litellm.RateLimitError) as caught:
        await router.acompletion(model="claude", messages=MESSAGES)
    exc = caught.value
    assert "retry-after" not in exc.response.headers
    assert exc.litellm_response_headers["retry-after"] == "30"
    assert exc.litellm_response_headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert exc.__context__ is not None and exc.__context__.status_code == 429


@pytest.mark.parametrize("name", ["openai_chat_200", "anthropic_messages_200", "openai_chat_429_retry_after"])
def test_sync_completion(router: Any, name: str) -> None:
    """``router.completion`` goes through httpx2 (OpenAI SDK) / httpx (Anthropic), not aiohttp."""
    expected = EXPECTED[name]
    with replay(name) as cassette:
        if expected.exception is None:
            response = router.completion(model=GROUP[expected.provider], messages=MESSAGES)
            _assert_reply(name, response.choices[0].message.content, response.usage)
        else:
            with pytest.raises(litellm.RateLimitError) as caught:
                router.completion(model=GROUP[expected.provider], messages=MESSAGES)
            assert caught.value.litellm_response_headers["retry-after"] == expected.retry_after
    assert cassette.play_count == 1


async def test_fallback_across_cassettes() -> None:
    """Two cassettes at once: OpenAI rate-limits, the Router's own fallback reaches Anthropic."""
    router = litellm.Router(model_list=model_list(), num_retries=0, fallbacks=[{"gpt": ["claude"]}])
    with replay("openai_chat_429_retry_after", "anthropic_messages_200") as cassette:
        response = await router.acompletion(model="gpt", messages=MESSAGES)
    assert cassette.all_played
    assert response._hidden_params["model_id"] == "anthropic-1"
    _assert_reply("anthropic_messages_200", response.choices[0].message.content, response.usage)


async def test_unmatched_request_fails_without_touching_the_network(router: Any) -> None:
    """A second call finds the single interaction used up: LiteLLM wraps vcrpy's refusal."""
    with block_network() as attempts, replay("openai_chat_200", network=True) as cassette:
        await router.acompletion(model="gpt", messages=MESSAGES)
        with pytest.raises(litellm.InternalServerError) as caught:
            await router.acompletion(model="gpt", messages=MESSAGES)
    assert "Can't play back this request" in str(caught.value)
    assert cassette.play_count == 1
    assert attempts == []


async def test_block_network_refuses_real_hosts() -> None:
    import socket

    with block_network() as attempts, pytest.raises(ConnectionRefusedError):
        socket.getaddrinfo("api.openai.com", 443)
    assert attempts == ["api.openai.com"]


# Which HTTP client carries the call. vcrpy patches aiohttp, httpx and httpx2; skipping a patcher
# leaves that client unpatched, so a call travelling through it would hit block_network() and fail.
@pytest.mark.parametrize("name", ["openai_chat_200", "anthropic_messages_200"])
async def test_async_calls_travel_through_aiohttp_by_default(router: Any, name: str) -> None:
    with replay(name, skip_patchers=("httpx", "httpx2")) as cassette:
        await router.acompletion(model=GROUP[EXPECTED[name].provider], messages=MESSAGES)
    assert cassette.play_count == 1


@pytest.mark.parametrize("name", ["openai_chat_200", "anthropic_messages_200"])
async def test_async_calls_use_httpx_when_aiohttp_transport_is_disabled(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setattr(litellm, "disable_aiohttp_transport", True)
    router = litellm.Router(model_list=model_list(), num_retries=0)
    with replay(name, skip_patchers=("aiohttp",)) as cassette:
        await router.acompletion(model=GROUP[EXPECTED[name].provider], messages=MESSAGES)
    assert cassette.play_count == 1


@pytest.mark.parametrize("name", ["openai_chat_200", "anthropic_messages_200"])
def test_sync_calls_never_use_aiohttp(router: Any, name: str) -> None:
    with replay(name, skip_patchers=("aiohttp",)) as cassette:
        router.completion(model=GROUP[EXPECTED[name].provider], messages=MESSAGES)
    assert cassette.play_count == 1


@pytest.mark.parametrize("name", STREAMS)
def test_stream_sync(router: Any, name: str) -> None:
    with replay(name) as cassette:
        stream = router.completion(
            model=GROUP[EXPECTED[name].provider],
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    assert cassette.play_count == 1
    built = litellm.stream_chunk_builder(chunks, messages=MESSAGES)
    _assert_reply(name, built.choices[0].message.content, built.usage)
