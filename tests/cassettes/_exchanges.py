"""The provider HTTP exchanges the cassettes hold, in the providers' published wire formats.

Each :class:`Exchange` is one request/response pair: the LiteLLM call that makes the request and the
response a provider sends back (status, headers, body or server-sent events). ``_recorder.py`` serves
these responses from a local replica and records LiteLLM talking to it; ``--live`` records the
reproducible ones against the real providers instead.

Sources for the formats: OpenAI API reference (chat completions object, chat completion chunk object,
error codes guide, rate-limit headers) and Anthropic API reference (messages, streaming messages,
errors, rate limits). Identifiers (``chatcmpl-``, ``msg_``, ``req_``) are made up and marked ``FAKE``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any

OPENAI_URL = "https://api.openai.com/v1/chat/completions"
ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"
OPENAI_MODEL = "openai/gpt-4o-mini"
ANTHROPIC_MODEL = "anthropic/claude-3-5-sonnet-20241022"
# Placeholder keys: the only key-like strings allowed in a cassette (see test_no_secrets.py).
OPENAI_FAKE_KEY = "sk-fake-openai"
ANTHROPIC_FAKE_KEY = "sk-ant-fake"

JSON = "application/json"
SSE = "text/event-stream; charset=utf-8"
_NOW = re.compile(r"\{now\+(\d+)s\}")


@dataclass(frozen=True)
class Exchange:
    """One recorded provider exchange: the call LiteLLM makes and what the provider answers."""

    name: str
    provider: str  # "openai" | "anthropic"
    status: int
    headers: dict[str, str]
    body: bytes = b""
    events: tuple[bytes, ...] = ()  # server-sent events, written one by one when streaming
    stream: bool = False
    prompt: str = "Say hello."
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    # Can --live provoke this response on demand? 429/5xx/529 cannot be asked for.
    live: bool = False
    # Key sent to the live provider; None means "the real key from the environment".
    live_key: str | None = None
    note: str = ""

    @property
    def url(self) -> str:
        return OPENAI_URL if self.provider == "openai" else ANTHROPIC_URL

    @property
    def model(self) -> str:
        return OPENAI_MODEL if self.provider == "openai" else ANTHROPIC_MODEL

    @property
    def fake_key(self) -> str:
        return OPENAI_FAKE_KEY if self.provider == "openai" else ANTHROPIC_FAKE_KEY


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _openai_headers(request_id: str, **extra: str) -> dict[str, str]:
    headers = {
        "content-type": JSON,
        "openai-processing-ms": "412",
        "openai-version": "2020-10-01",
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-remaining-tokens": "199970",
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-reset-tokens": "9ms",
        "x-request-id": request_id,
    }
    headers.update(extra)
    return headers


def _openai_error(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return _json({"error": {"message": message, "type": type_, "param": param, "code": code}})


def render_headers(headers: dict[str, str], now: dt.datetime) -> dict[str, str]:
    """Fill ``{now+Ns}`` placeholders with RFC 3339 times, as Anthropic's ``*-reset`` headers carry."""

    def fill(match: re.Match[str]) -> str:
        moment = now + dt.timedelta(seconds=int(match.group(1)))
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    return {key: _NOW.sub(fill, value) for key, value in headers.items()}


def _anthropic_headers(request_id: str, **extra: str) -> dict[str, str]:
    headers = {
        "content-type": JSON,
        "request-id": request_id,
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "{now+1s}",
        "anthropic-ratelimit-input-tokens-limit": "40000",
        "anthropic-ratelimit-input-tokens-remaining": "39988",
        "anthropic-ratelimit-input-tokens-reset": "{now+1s}",
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "8000",
        "anthropic-ratelimit-output-tokens-reset": "{now+1s}",
    }
    headers.update(extra)
    return headers


def _anthropic_error(type_: str, message: str, request_id: str) -> bytes:
    return _json({"type": "error", "error": {"type": type_, "message": message}, "request_id": request_id})


def _sse(data: object, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}\n\n".encode()


_OPENAI_CHUNK = {
    "id": "chatcmpl-FAKEstream0001",
    "object": "chat.completion.chunk",
    "created": 1736935200,
    "model": "gpt-4o-mini-2024-07-18",
    "service_tier": "default",
    "system_fingerprint": "fp_0aa8d3e20b",
}


def _openai_chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return _sse({**_OPENAI_CHUNK, "choices": [choice], "usage": None})


OPENAI_STREAM_TEXT = ("Hello", "!", " How", " can", " I", " help", "?")
ANTHROPIC_STREAM_TEXT = ("Hello", "! How can", " I help you today?")

EXCHANGES: tuple[Exchange, ...] = (
    Exchange(
        name="openai_chat_200",
        provider="openai",
        status=200,
        headers=_openai_headers("req_FAKE0a1b2c3d4e5f60001"),
        body=_json(
            {
                "id": "chatcmpl-FAKEcompletion0001",
                "object": "chat.completion",
                "created": 1736935200,
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": "Hello! How can I help you today?",
                            "refusal": None,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": 11,
                    "completion_tokens": 9,
                    "total_tokens": 20,
                    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                    "completion_tokens_details": {
                        "reasoning_tokens": 0,
                        "audio_tokens": 0,
                        "accepted_prediction_tokens": 0,
                        "rejected_prediction_tokens": 0,
                    },
                },
                "service_tier": "default",
                "system_fingerprint": "fp_0aa8d3e20b",
            }
        ),
        live=True,
    ),
    Exchange(
        name="openai_chat_200_stream",
        provider="openai",
        status=200,
        headers=_openai_headers("req_FAKE0a1b2c3d4e5f60002", **{"content-type": SSE}),
        stream=True,
        call_kwargs={"stream_options": {"include_usage": True}},
        events=(
            _openai_chunk({"role": "assistant", "content": "", "refusal": None}),
            *(_openai_chunk({"content": piece}) for piece in OPENAI_STREAM_TEXT),
            _openai_chunk({}, finish_reason="stop"),
            # stream_options.include_usage: one last chunk with no choices and the usage.
            _sse(
                {
                    **_OPENAI_CHUNK,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": 11,
                        "completion_tokens": 7,
                        "total_tokens": 18,
                        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                        "completion_tokens_details": {
                            "reasoning_tokens": 0,
                            "audio_tokens": 0,
                            "accepted_prediction_tokens": 0,
                            "rejected_prediction_tokens": 0,
                        },
                    },
                }
            ),
            _sse("[DONE]"),
        ),
        live=True,
    ),
    Exchange(
        name="openai_chat_429_retry_after",
        provider="openai",
        status=429,
        headers=_openai_headers(
            "req_FAKE0a1b2c3d4e5f60003",
            **{
                "retry-after": "20",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "20s",
            },
        ),
        body=_openai_error(
            "Rate limit reached for gpt-4o-mini in organization org-FAKE0000000000000000000 on requests per "
            "min (RPM): Limit 500, Used 500, Requested 1. Please try again in 20s. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            "requests",
            "rate_limit_exceeded",
        ),
    ),
    Exchange(
        name="openai_chat_500_server_error",
        provider="openai",
        status=500,
        headers=_openai_headers("req_FAKE0a1b2c3d4e5f60004"),
        body=_openai_error(
            "The server had an error while processing your request. Sorry about that!", "server_error", None
        ),
    ),
    Exchange(
        name="openai_chat_400_context_length_exceeded",
        provider="openai",
        status=400,
        headers=_openai_headers("req_FAKE0a1b2c3d4e5f60005"),
        body=_openai_error(
            "This model's maximum context length is 128000 tokens. However, your messages resulted in "
            "130012 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            param="messages",
        ),
        live=True,
        note="The replica answers by scenario; --live sends a prompt of ~130k tokens to provoke it.",
    ),
    Exchange(
        name="openai_chat_401_invalid_api_key",
        provider="openai",
        status=401,
        headers={"content-type": JSON, "x-request-id": "req_FAKE0a1b2c3d4e5f60006"},
        body=_openai_error(
            "Incorrect API key provided: sk-fake-****enai. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        ),
        live=True,
        live_key=OPENAI_FAKE_KEY,
    ),
    Exchange(
        name="anthropic_messages_200",
        provider="anthropic",
        status=200,
        headers=_anthropic_headers("req_FAKE011CUmessages0001"),
        body=_json(
            {
                "id": "msg_FAKE01XFDUDYJgAACzvnptvVoYEL",
                "type": "message",
                "role": "assistant",
                "model": "claude-3-5-sonnet-20241022",
                "content": [{"type": "text", "text": "Hello! How can I help you today?"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 12,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 12,
                    "service_tier": "standard",
                },
            }
        ),
        live=True,
    ),
    Exchange(
        name="anthropic_messages_200_stream",
        provider="anthropic",
        status=200,
        headers=_anthropic_headers("req_FAKE011CUmessages0002", **{"content-type": SSE}),
        stream=True,
        events=(
            _sse(
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_FAKE01StreamStreamStream01",
                        "type": "message",
                        "role": "assistant",
                        "model": "claude-3-5-sonnet-20241022",
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {
                            "input_tokens": 12,
                            "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 0,
                            "output_tokens": 1,
                            "service_tier": "standard",
                        },
                    },
                },
                event="message_start",
            ),
            _sse(
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                event="content_block_start",
            ),
            _sse({"type": "ping"}, event="ping"),
            *(
                _sse(
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}},
                    event="content_block_delta",
                )
                for t in ANTHROPIC_STREAM_TEXT
            ),
            _sse({"type": "content_block_stop", "index": 0}, event="content_block_stop"),
            _sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 12},
                },
                event="message_delta",
            ),
            _sse({"type": "message_stop"}, event="message_stop"),
        ),
        live=True,
    ),
    Exchange(
        name="anthropic_messages_429_retry_after",
        provider="anthropic",
        status=429,
        headers=_anthropic_headers(
            "req_FAKE011CUmessages0003",
            **{
                "retry-after": "30",
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": "{now+30s}",
                "x-should-retry": "true",
            },
        ),
        body=_anthropic_error(
            "rate_limit_error",
            "This request would exceed the rate limit for your organization "
            "(00000000-0000-0000-0000-000000000000) of 50 requests per minute. For details, refer to: "
            "https://docs.claude.com/en/api/rate-limits. You can see the response headers for current "
            "usage. Please reduce the prompt length or the maximum tokens requested, or try again later. "
            "You may also contact sales at https://www.anthropic.com/contact-sales to discuss your options "
            "for a rate limit increase.",
            "req_FAKE011CUmessages0003",
        ),
    ),
    Exchange(
        name="anthropic_messages_500_api_error",
        provider="anthropic",
        status=500,
        headers={"content-type": JSON, "request-id": "req_FAKE011CUmessages0004", "x-should-retry": "true"},
        body=_anthropic_error("api_error", "Internal server error", "req_FAKE011CUmessages0004"),
    ),
    Exchange(
        name="anthropic_messages_529_overloaded",
        provider="anthropic",
        status=529,
        headers={"content-type": JSON, "request-id": "req_FAKE011CUmessages0005", "x-should-retry": "true"},
        body=_anthropic_error("overloaded_error", "Overloaded", "req_FAKE011CUmessages0005"),
    ),
    Exchange(
        name="anthropic_messages_400_prompt_too_long",
        provider="anthropic",
        status=400,
        headers={"content-type": JSON, "request-id": "req_FAKE011CUmessages0006", "x-should-retry": "false"},
        body=_anthropic_error(
            "invalid_request_error",
            "prompt is too long: 210000 tokens > 200000 maximum",
            "req_FAKE011CUmessages0006",
        ),
        live=True,
        note="The replica answers by scenario; --live sends a prompt of ~210k tokens to provoke it.",
    ),
    Exchange(
        name="anthropic_messages_401_authentication_error",
        provider="anthropic",
        status=401,
        headers={"content-type": JSON, "request-id": "req_FAKE011CUmessages0007", "x-should-retry": "false"},
        body=_anthropic_error("authentication_error", "invalid x-api-key", "req_FAKE011CUmessages0007"),
        live=True,
        live_key=ANTHROPIC_FAKE_KEY,
    ),
)

BY_NAME: dict[str, Exchange] = {exchange.name: exchange for exchange in EXCHANGES}
