"""OpenAI chat-completions wire formats: completions, stream chunks, errors, model lists.

Shapes follow what api.openai.com sends, so real SDKs (``openai``, LiteLLM) parse them unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from .models import SimOutcome

__all__ = [
    "ErrorResponse",
    "completion_chunk",
    "completion_id",
    "completion_payload",
    "concurrency_limit_response",
    "error_response",
    "estimate_prompt_tokens",
    "models_payload",
    "openai_error",
    "response_pieces",
    "sse",
    "tool_call_for",
    "usage_payload",
]

_WORDS = (
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do", "eiusmod",
    "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim", "ad", "minim",
    "veniam", "quis", "nostrud", "exercitation", "ullamco", "laboris", "nisi", "aliquip",
)  # fmt: skip

SYSTEM_FINGERPRINT = "fp_pbm_sim"


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """An HTTP error as OpenAI would send it."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def completion_id(seed: int, provider: str, n: int) -> str:
    """A stable ``chatcmpl-...`` id for request ``n``."""
    return "chatcmpl-" + hashlib.sha256(f"id\x1f{seed}\x1f{provider}\x1f{n}".encode()).hexdigest()[:29]


def response_pieces(provider: str, n: int, tokens: int) -> list[str]:
    """The reply as one text piece per token; the first piece names the provider that answered."""
    pieces = [provider]
    pieces.extend(" " + _WORDS[(n + i) % len(_WORDS)] for i in range(tokens - 1))
    return pieces


def tool_call_for(body: dict[str, Any], call_id: str) -> dict[str, Any] | None:
    """The tool call the simulator answers with: a call of the first offered function tool, while the
    conversation holds no tool result yet (after one, it answers with text). Arguments are made from
    the tool's JSON schema (its required properties: ``"sim"``, ``1``, ``1.0``, ``true``). None: answer text.
    """
    tools = body.get("tools")
    messages = body.get("messages")
    if not isinstance(tools, list) or not tools or not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if isinstance(last, dict) and last.get("role") == "tool":
        return None
    first = tools[0]
    function = first.get("function") if isinstance(first, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        return None
    schema = function.get("parameters")
    arguments: dict[str, Any] = {}
    if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
        required = schema.get("required")
        for name in required if isinstance(required, list) else []:
            prop = schema["properties"].get(name)
            kind = prop.get("type") if isinstance(prop, dict) else None
            arguments[str(name)] = _SAMPLE_ARGUMENTS.get(kind) if isinstance(kind, str) else None
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": function["name"], "arguments": json.dumps(arguments, separators=(",", ":"))},
    }


_SAMPLE_ARGUMENTS: dict[str, Any] = {"string": "sim", "integer": 1, "number": 1.0, "boolean": True}


def estimate_prompt_tokens(messages: list[Any]) -> int:
    """Rough prompt size: ~4 characters per token plus 3 per message, like OpenAI's overhead."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            text = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        else:
            text = "" if content is None else str(content)
        total += 3 + max(1, math.ceil(len(text) / 4))
    return total


def usage_payload(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The ``usage`` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion_payload(
    *,
    cid: str,
    created: int,
    model: str,
    content: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    tool_call: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` body (with ``tool_call``: a call of that tool instead of text)."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
    if tool_call is not None:
        message = {**message, "content": None, "tool_calls": [tool_call]}
        finish_reason = "tool_calls"
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage_payload(prompt_tokens, completion_tokens),
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def completion_chunk(
    *,
    cid: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    include_usage: bool = False,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; ``delta=None`` makes the trailing usage-only chunk (no choices)."""
    chunk: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if include_usage:
        # OpenAI sends "usage": null on every chunk but the last when include_usage is on.
        chunk["usage"] = usage
    return chunk


def sse(payload: dict[str, Any] | str) -> bytes:
    """One server-sent event line: ``data: ...`` plus the blank line."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def models_payload(models: tuple[str, ...], created: int) -> dict[str, Any]:
    """The ``GET /v1/models`` body."""
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": created, "owned_by": "pbm-sim"} for m in models],
    }


def openai_error(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def concurrency_limit_response(model: str, limit: int) -> ErrorResponse:
    """429 for a request over the provider's concurrency limit: no Retry-After, the client decides when."""
    message = (
        f"Rate limit reached for {model} in organization org-pbm-sim on concurrent requests: "
        f"Limit {limit}, Used {limit}, Requested 1. Please try again later or send fewer requests at once."
    )
    return ErrorResponse(429, openai_error(message, "requests", None, "rate_limit_exceeded"), {})


def error_response(outcome: SimOutcome, model: str, retry_after_s: float, api_key: str = "") -> ErrorResponse:
    """The HTTP error for an error ``outcome`` that is answered with a status code."""
    if outcome is SimOutcome.SERVER_ERROR:
        return ErrorResponse(
            500,
            openai_error("The server had an error while processing your request. Sorry about that!", "server_error"),
            {},
        )
    if outcome is SimOutcome.SERVICE_UNAVAILABLE:
        return ErrorResponse(503, openai_error("The server is overloaded or not ready yet.", "server_error"), {})
    if outcome is SimOutcome.OVERLOADED:
        return ErrorResponse(529, openai_error("Overloaded", "overloaded_error"), {})
    if outcome is SimOutcome.RATE_LIMIT:
        seconds = max(0, math.ceil(retry_after_s))
        message = (
            f"Rate limit reached for {model} in organization org-pbm-sim on requests per min (RPM): "
            f"Limit 60, Used 60, Requested 1. Please try again in {retry_after_s:g}s."
        )
        headers = {
            "Retry-After": str(seconds),
            "retry-after-ms": str(round(retry_after_s * 1000)),
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{retry_after_s:g}s",
        }
        return ErrorResponse(429, openai_error(message, "requests", None, "rate_limit_exceeded"), headers)
    if outcome is SimOutcome.AUTHENTICATION:
        shown = (api_key[:3] + "*" * 4 + api_key[-4:]) if len(api_key) > 8 else api_key
        message = (
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
        return ErrorResponse(401, openai_error(message, "invalid_request_error", None, "invalid_api_key"), {})
    if outcome is SimOutcome.CONTEXT_LENGTH:
        message = (
            "This model's maximum context length is 8192 tokens. However, your messages resulted in "
            "9000 tokens. Please reduce the length of the messages."
        )
        return ErrorResponse(
            400, openai_error(message, "invalid_request_error", "messages", "context_length_exceeded"), {}
        )
    if outcome is SimOutcome.CONTENT_POLICY:
        message = (
            "Invalid prompt: your prompt was flagged as potentially violating our usage policy. "
            "Please try again with a different prompt."
        )
        return ErrorResponse(400, openai_error(message, "invalid_request_error", None, "content_policy_violation"), {})
    if outcome is SimOutcome.BAD_REQUEST:
        return ErrorResponse(400, openai_error("Invalid request (simulated).", "invalid_request_error", None, None), {})
    raise ValueError(f"outcome {outcome.value!r} is not answered with an HTTP error status")
