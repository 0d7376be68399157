"""OpenTelemetry through the LiteLLM adapter: a real ``litellm.Router`` over HTTP to the provider simulator,
its retry moving a request to the next deployment (in-memory SDK exporters)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import litellm
import pytest
from opentelemetry.trace import SpanKind, StatusCode
from otel_support import Otel, all_text, events
from pi_builder_middleware.adapters.litellm import install
from pi_builder_middleware.testing import SimOutcome, SimProvider, Simulator

from pi_builder_middleware import CircuitState, FailoverConfig, Middleware

MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator([SimProvider(name="primary"), SimProvider(name="backup")], seed=3) as simulator:
        yield simulator


def deployment(sim: Simulator, name: str, quality: float) -> dict[str, Any]:
    return {
        "model_name": "g",
        "litellm_params": {
            "model": "openai/sim-model",
            "api_key": "sk-SECRET-fake",
            "api_base": sim.base_url(name),
            "max_retries": 0,
            "timeout": 5,
        },
        "model_info": {"id": name, "quality": quality},
    }


async def wait_for_spans(otel: Otel, count: int) -> None:
    for _ in range(500):  # LiteLLM logs a success after returning the response
        if len(otel.attempt_spans()) >= count:
            return
        await asyncio.sleep(0.01)


def _router_and_middleware(sim: Simulator, otel: Otel) -> tuple[litellm.Router, Middleware]:
    """A router over primary (quality 0.9) and backup (0.5) with one retry, and a middleware that trips at once."""
    router = litellm.Router(
        model_list=[deployment(sim, "primary", 0.9), deployment(sim, "backup", 0.5)],
        num_retries=1,
        retry_after=0,
        disable_cooldowns=True,
    )
    mw = Middleware(
        strategy="quality-optimal",
        failover=FailoverConfig(consecutive_failures=1, jitter=0.0),
        telemetry=otel.telemetry,
    )
    return router, mw


async def test_a_litellm_request_that_fails_over(sim: Simulator, otel: Otel) -> None:
    router, mw = _router_and_middleware(sim, otel)
    tracer = otel.tracer_provider.get_tracer("app")
    with install(router, middleware=mw):
        sim.down("primary", SimOutcome.SERVER_ERROR)
        with tracer.start_as_current_span("app request"):
            response = await router.acompletion(model="g", messages=MESSAGES)
        assert response._hidden_params["model_id"] == "backup"
        await wait_for_spans(otel, 2)
    assert mw.failover.state("primary") is CircuitState.OPEN

    parent = otel.one("app request")
    first, second = otel.attempt_spans()
    assert [s.attributes["pi_builder.provider.id"] for s in (first, second)] == ["primary", "backup"]  # type: ignore[index]
    for span in (first, second):
        assert span.kind is SpanKind.CLIENT and span.name == "chat sim-model"
        assert span.parent is not None and span.parent.span_id == parent.context.span_id
        a = dict(span.attributes or {})
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
        assert a["gen_ai.request.model"] == "sim-model" and a["server.address"] == "127.0.0.1"
        assert a["server.port"] == int(sim.base_url(str(a["pi_builder.provider.id"])).split(":")[2].split("/")[0])
        assert span.start_time is not None and span.end_time is not None and span.end_time >= span.start_time
    assert first.status.status_code is StatusCode.ERROR
    assert first.attributes["error.type"] == "InternalServerError"  # type: ignore[index]
    assert first.attributes["pi_builder.error.kind"] == "server_error"  # type: ignore[index]
    assert "pi_builder.breaker.open" in [name for name, _ in events(first)]
    assert second.attributes["gen_ai.usage.output_tokens"] == 16  # type: ignore[index]
    assert second.attributes["pi_builder.attempt"] == 2  # type: ignore[index]  # the same LiteLLM request
    assert second.status.status_code is StatusCode.UNSET
    assert "sk-SECRET" not in all_text(otel.spans())

    assert (
        otel.value(
            "gen_ai.client.operation.duration", pi_builder__provider__id="primary", error__type="InternalServerError"
        )
        == 1
    )
    assert otel.value("gen_ai.client.operation.duration", pi_builder__provider__id="backup") == 1
    assert otel.value("pi_builder.ejections", pi_builder__provider__id="primary") == 1
    assert otel.value("pi_builder.breaker.state", pi_builder__provider__id="primary") == 2
    assert otel.value("gen_ai.client.token.usage", gen_ai__token__type="output") == 1
    in_flight = {p.attributes["pi_builder.provider.id"]: p.value for p in otel.points("pi_builder.attempts.in_flight")}
    assert in_flight == {"primary": 0, "backup": 0}


async def test_attempt_spans_nest_under_litellms_own_request_span(sim: Simulator, otel: Otel) -> None:
    """The proxy's OpenTelemetry integration hands its request span over as ``litellm_parent_otel_span``."""
    router, mw = _router_and_middleware(sim, otel)
    tracer = otel.tracer_provider.get_tracer("litellm-like")
    litellm_span = tracer.start_span("litellm_request")
    with install(router, middleware=mw):
        sim.down("primary", SimOutcome.SERVER_ERROR)
        with tracer.start_as_current_span("app"):
            await router.acompletion(model="g", messages=MESSAGES, metadata={"litellm_parent_otel_span": litellm_span})
        await wait_for_spans(otel, 2)
    litellm_span.end()
    attempts = otel.attempt_spans()
    assert len(attempts) == 2
    assert all(s.parent is not None and s.parent.span_id == litellm_span.get_span_context().span_id for s in attempts)
