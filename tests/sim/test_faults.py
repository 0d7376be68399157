"""Every error kind as a client sees it: status codes, headers, resets, hangs, broken bodies, cut streams."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import openai
import pytest
from pi_builder_middleware.testing import Behaviour, SimOutcome, SimProvider, Simulator

from .conftest import MESSAGES, MakeSim, chat


def _openai(sim: Simulator, timeout: float = 5.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url("a"), api_key="sk-fake", max_retries=0, timeout=timeout)


@pytest.mark.parametrize(
    ("kind", "status", "error_type", "code"),
    [
        (SimOutcome.SERVER_ERROR, 500, "server_error", None),
        (SimOutcome.SERVICE_UNAVAILABLE, 503, "server_error", None),
        (SimOutcome.OVERLOADED, 529, "overloaded_error", None),
        (SimOutcome.RATE_LIMIT, 429, "requests", "rate_limit_exceeded"),
        (SimOutcome.BAD_REQUEST, 400, "invalid_request_error", None),
        (SimOutcome.AUTHENTICATION, 401, "invalid_request_error", "invalid_api_key"),
        (SimOutcome.CONTEXT_LENGTH, 400, "invalid_request_error", "context_length_exceeded"),
        (SimOutcome.CONTENT_POLICY, 400, "invalid_request_error", "content_policy_violation"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_status_errors_use_openai_error_format(
    sim: Simulator, http: httpx.Client, kind: SimOutcome, status: int, error_type: str, code: str | None, stream: bool
) -> None:
    sim.down("a", kind)
    resp = chat(http, sim.base_url("a"), stream=stream)
    assert resp.status_code == status
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == error_type and error["code"] == code and error["message"]
    assert sim.stats("a").outcomes == (kind,)


def test_rate_limit_carries_retry_after(make_sim: MakeSim) -> None:
    sim = make_sim(SimProvider(name="a", behaviour=Behaviour.failing(SimOutcome.RATE_LIMIT, retry_after_s=2.5)))
    with _openai(sim) as client, pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    headers = info.value.response.headers
    assert headers["retry-after"] == "3"  # whole seconds, rounded up
    assert headers["retry-after-ms"] == "2500"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert info.value.status_code == 429


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (SimOutcome.SERVER_ERROR, openai.InternalServerError),
        (SimOutcome.SERVICE_UNAVAILABLE, openai.InternalServerError),
        (SimOutcome.OVERLOADED, openai.InternalServerError),
        (SimOutcome.CONTEXT_LENGTH, openai.BadRequestError),
    ],
)
def test_openai_sdk_maps_status_errors(sim: Simulator, kind: SimOutcome, error: type[Exception]) -> None:
    sim.down("a", kind)
    with _openai(sim) as client, pytest.raises(error):
        client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]


@pytest.mark.parametrize("stream", [False, True])
def test_connection_reset_is_a_connection_error(sim: Simulator, http: httpx.Client, stream: bool) -> None:
    sim.down("a", SimOutcome.CONNECTION_RESET)
    with pytest.raises(httpx.TransportError):
        chat(http, sim.base_url("a"), stream=stream)
    with _openai(sim) as client, pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=MESSAGES, stream=stream)  # type: ignore[call-overload]


def test_hang_causes_client_timeout(make_sim: MakeSim) -> None:
    sim = make_sim(SimProvider(name="a", behaviour=Behaviour.failing(SimOutcome.TIMEOUT, hang_s=10)))
    start = time.perf_counter()
    with _openai(sim, timeout=0.2) as client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    with httpx.Client(timeout=0.2) as http, pytest.raises(httpx.ReadTimeout):
        chat(http, sim.base_url("a"))
    assert time.perf_counter() - start < 2
    assert sim.stats("a").outcomes == (SimOutcome.TIMEOUT, SimOutcome.TIMEOUT)


def test_hang_ends_by_closing_the_connection(make_sim: MakeSim, http: httpx.Client) -> None:
    sim = make_sim(SimProvider(name="a", behaviour=Behaviour.failing(SimOutcome.TIMEOUT, hang_s=0.1)))
    with pytest.raises(httpx.RemoteProtocolError):
        chat(http, sim.base_url("a"))


def test_stop_cancels_hanging_requests(http: httpx.Client) -> None:
    sim = Simulator([SimProvider(name="a", behaviour=Behaviour.failing(SimOutcome.TIMEOUT, hang_s=60))]).start()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            chat(http, sim.base_url("a"))
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 2
    while sim.stats("a").total == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    start = time.perf_counter()
    sim.stop()
    assert time.perf_counter() - start < 2
    caller.join(2)
    assert not caller.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], httpx.TransportError)


def test_malformed_body_is_200_with_invalid_json(sim: Simulator, http: httpx.Client) -> None:
    sim.down("a", SimOutcome.MALFORMED_BODY)
    resp = chat(http, sim.base_url("a"))
    assert resp.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        resp.json()
    with _openai(sim) as client, pytest.raises(json.JSONDecodeError):
        client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]


def test_malformed_stream_event_breaks_the_sdk(sim: Simulator) -> None:
    sim.down("a", SimOutcome.MALFORMED_BODY)
    with _openai(sim) as client, pytest.raises(json.JSONDecodeError):
        list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))  # type: ignore[arg-type]


def test_stream_cut_midway_raises_in_sdk_after_some_chunks(make_sim: MakeSim) -> None:
    behaviour = Behaviour.failing(SimOutcome.STREAM_CUT, stream_cut_after_chunks=3)
    sim = make_sim(SimProvider(name="a", behaviour=behaviour))
    received: list[Any] = []
    with _openai(sim) as client, pytest.raises((openai.APIConnectionError, httpx.TransportError)):
        for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):  # type: ignore[arg-type]
            received.append(chunk)
    assert len(received) == 1 + 3  # the role chunk, then three content pieces
    assert all(c.choices[0].finish_reason is None for c in received)


def test_stream_cut_raw_has_no_done(make_sim: MakeSim) -> None:
    sim = make_sim(SimProvider(name="a", behaviour=Behaviour.failing(SimOutcome.STREAM_CUT)))
    seen: list[str] = []
    with httpx.Client(timeout=5) as http, pytest.raises(httpx.RemoteProtocolError):  # noqa: SIM117
        with http.stream(
            "POST", sim.base_url("a") + "/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True}
        ) as resp:
            assert resp.status_code == 200
            seen.extend(resp.iter_lines())
    assert seen and "data: [DONE]" not in seen


def test_non_streaming_cut_is_an_incomplete_body(sim: Simulator, http: httpx.Client) -> None:
    sim.down("a", SimOutcome.STREAM_CUT)
    with pytest.raises(httpx.RemoteProtocolError):
        chat(http, sim.base_url("a"))
