"""The OpenAI wire format: completions, SSE streams (via the real SDK), models, request validation."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest
from pi_builder_middleware.testing import OUTCOME_HEADER, Behaviour, Latency, SimOutcome, SimProvider, Simulator

from .conftest import MESSAGES, MakeSim, chat


def test_non_streaming_completion_has_openai_shape(sim: Simulator, http: httpx.Client) -> None:
    resp = chat(http, sim.base_url("a"))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "sim-model"
    (choice,) = body["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].startswith("a ")  # the reply names the provider that answered
    usage = body["usage"]
    assert usage["completion_tokens"] == 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert resp.headers["x-sim-provider"] == "a"


def test_openai_sdk_parses_completion(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(model="gpt-sim", messages=MESSAGES)  # type: ignore[arg-type]
    assert completion.model == "gpt-sim"
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens == 16


def test_stream_parsed_by_openai_sdk(openai_client: openai.OpenAI) -> None:
    stream = openai_client.chat.completions.create(
        model="sim-model",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("a ") and len(text.split()) == 16
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16
    assert all(c.usage is None for c in chunks[:-1])


def test_raw_sse_framing_ends_with_done(sim: Simulator, http: httpx.Client) -> None:
    resp = chat(http, sim.base_url("a"), stream=True)
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = resp.text.split("\n\n")
    assert events[-1] == ""  # every event ends with a blank line
    assert events[-2] == "data: [DONE]"
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all("usage" not in p for p in payloads)  # without include_usage no usage key at all
    assert payloads[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}


def test_non_streaming_and_streaming_text_agree(sim: Simulator, http: httpx.Client) -> None:
    plain = chat(http, sim.base_url("a")).json()["choices"][0]["message"]["content"]
    sim.reset_stats()  # request numbering restarts, so the stream is request 0 again
    events = chat(http, sim.base_url("a"), stream=True).text.split("\n\n")[:-2]
    streamed = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events)
    assert streamed == plain


def test_max_tokens_truncates_with_length_finish(sim: Simulator, http: httpx.Client) -> None:
    body = chat(http, sim.base_url("a"), max_tokens=3).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


def test_models_endpoint(make_sim: MakeSim, http: httpx.Client) -> None:
    sim = make_sim(SimProvider(name="a", models=("m1", "m2")))
    for url in (sim.base_url("a") + "/models", sim.base_url("a").removesuffix("/v1") + "/models"):
        body = http.get(url).json()
        assert body["object"] == "list"
        assert [m["id"] for m in body["data"]] == ["m1", "m2"]
    assert sim.stats("a").total == 0  # only chat completions count as attempts


def test_chat_route_without_v1_prefix(sim: Simulator, http: httpx.Client) -> None:
    assert chat(http, sim.base_url("a").removesuffix("/v1")).status_code == 200


def test_unknown_route_gives_openai_404(sim: Simulator, http: httpx.Client) -> None:
    resp = http.post(sim.base_url("a") + "/embeddingz", json={})
    assert resp.status_code == 404
    assert resp.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("payload", "param"),
    [(b"{not json", None), (b'{"messages": []}', "model"), (b'{"model": "m", "messages": []}', "messages")],
)
def test_invalid_request_is_400_and_counted(
    sim: Simulator, http: httpx.Client, payload: bytes, param: str | None
) -> None:
    resp = http.post(sim.base_url("a") + "/chat/completions", content=payload)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert sim.stats("a").count(SimOutcome.BAD_REQUEST) == 1


def test_outcome_header_forces_one_request(sim: Simulator, http: httpx.Client) -> None:
    url = sim.base_url("a") + "/chat/completions"
    body = {"model": "m", "messages": MESSAGES}
    assert http.post(url, json=body, headers={OUTCOME_HEADER: "rate_limit"}).status_code == 429
    assert http.post(url, json=body).status_code == 200
    bad = http.post(url, json=body, headers={OUTCOME_HEADER: "nonsense"})
    assert bad.status_code == 400 and "rate_limit" in bad.json()["error"]["message"]


def test_api_key_is_checked_when_configured(make_sim: MakeSim) -> None:
    sim = make_sim(SimProvider(name="a", api_key="sk-right-key-1234"))
    wrong = openai.OpenAI(base_url=sim.base_url("a"), api_key="sk-wrong-key-9999", max_retries=0)
    with wrong as client, pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert info.value.code == "invalid_api_key"
    with openai.OpenAI(base_url=sim.base_url("a"), api_key="sk-right-key-1234", max_retries=0) as client:
        assert client.chat.completions.create(model="m", messages=MESSAGES).choices  # type: ignore[arg-type]


def test_health_endpoint_follows_outages(sim: Simulator, http: httpx.Client) -> None:
    root = sim.base_url("a").removesuffix("/v1")
    assert http.get(root + "/health").status_code == 200
    sim.down("a")
    assert http.get(root + "/health").status_code == 503
    sim.up("a")
    assert http.get(root + "/health").status_code == 200


def test_latency_ttft_and_token_pacing(make_sim: MakeSim, http: httpx.Client) -> None:
    behaviour = Behaviour(latency=Latency.fixed(60), ttft=Latency.fixed(30), tokens_per_second=200, response_tokens=11)
    sim = make_sim(SimProvider(name="a", behaviour=behaviour))
    start = time.perf_counter()
    chat(http, sim.base_url("a"))
    assert time.perf_counter() - start >= 0.06
    start = time.perf_counter()
    with http.stream(
        "POST", sim.base_url("a") + "/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True}
    ) as resp:
        lines = resp.iter_lines()
        next(lines)
        first = time.perf_counter() - start
        for _ in lines:
            pass
        total = time.perf_counter() - start
    assert resp.headers["openai-processing-ms"] == "30"
    assert 0.03 <= first < 0.5
    assert total >= 0.03 + 10 / 200 - 0.005  # TTFT plus 10 gaps of 5 ms between 11 tokens


async def test_async_client_and_async_context_manager() -> None:
    sim = Simulator([SimProvider(name="a", behaviour=Behaviour(latency=Latency.fixed(40)))])
    async with sim, openai.AsyncOpenAI(base_url=sim.base_url("a"), api_key="sk-fake", max_retries=0) as client:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(client.chat.completions.create(model="m", messages=MESSAGES) for _ in range(10))  # type: ignore[arg-type]
        )
        elapsed = time.perf_counter() - start
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        chunks = [c async for c in stream]
    assert len(results) == 10
    assert elapsed < 0.7  # served concurrently: one after another would take 10 x 100 ms
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert sim.stats("a").total == 11 and sim.stats("a").streamed == 1
    assert not sim.running
