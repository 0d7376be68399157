"""What providers send cannot stop the adapter from recording an attempt (real HTTP, real Router)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import litellm
import pytest
from litellm_support import MESSAGES, OutcomeLog, async_wait_until, deployment, mock_deployment, served_by
from pi_builder_middleware.adapters.litellm import METADATA_KEY, install
from pi_builder_middleware.testing import Behaviour, SimOutcome, SimProvider

from pi_builder_middleware import (
    MAX_TOKENS,
    Alert,
    AlertThresholds,
    CircuitState,
    ErrorKind,
    FailoverConfig,
    MonitorConfig,
)


@contextlib.contextmanager
def refusing_server(retry_after: str) -> Iterator[str]:
    """An OpenAI-compatible endpoint on 127.0.0.1 that answers every request 429 with this Retry-After header."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps(
                {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
            ).encode()
            self.send_response(429)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", retry_after)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("header", "expected_wait"), [("inf", 300.0), ("1e999", 300.0), ("nan", None)])
async def test_a_429_with_an_unusable_retry_after_is_recorded_and_the_deployment_left_alone(
    make_sim, header: str, expected_wait: float | None
) -> None:
    sim = make_sim(SimProvider(name="good"))
    with refusing_server(header) as base_url:
        limited = {**deployment(sim, "good"), "model_info": {"id": "limited"}}
        limited["litellm_params"] = {**limited["litellm_params"], "api_base": base_url}
        router = litellm.Router(model_list=[limited, deployment(sim, "good")], num_retries=0, disable_cooldowns=True)
        log = OutcomeLog()
        # without Retry-After the backoff starts at 30 s, so real time cannot end it during the test
        config = FailoverConfig(rate_limit_base_cooldown_s=30.0, default_rate_limit_cooldown_s=30.0)
        with install(router, strategy="failover", failover=config, plugins=[log]) as handle:
            with pytest.raises(litellm.RateLimitError):
                await router.acompletion(model="g", messages=MESSAGES)
            await async_wait_until(lambda: handle.stats()["recorded_failure"] + handle.stats()["hook_errors"] >= 1)
            assert handle.stats()["hook_errors"] == 0
            [(outcome, kind)] = log.of("limited")
            assert kind is ErrorKind.RATE_LIMITED and outcome.retry_after_s == expected_wait
            for _ in range(3):
                response = await router.acompletion(model="g", messages=MESSAGES)
                assert served_by(response) == "good"
            assert handle.middleware.health("limited").rate_limited == 1


async def test_an_alert_subscriber_that_raises_loses_no_event_and_the_breaker_still_trips(make_sim) -> None:
    sim = make_sim(
        SimProvider(name="bad", behaviour=Behaviour.failing(SimOutcome.SERVER_ERROR)), SimProvider(name="good")
    )
    router = litellm.Router(
        model_list=[deployment(sim, "bad"), deployment(sim, "good")],
        num_retries=1,
        retry_after=0,
        disable_cooldowns=True,
    )
    config = FailoverConfig.preset("aggressive", base_ejection_s=60.0, jitter=0.0)
    with install(
        router,
        strategy="failover",
        failover=config,
        monitor=MonitorConfig(min_samples=1, alerts=AlertThresholds(min_samples=1)),
    ) as handle:

        def broken(alert: Alert) -> None:
            raise RuntimeError("subscriber bug")

        handle.middleware.subscribe_alerts(broken)
        for _ in range(4):
            response = await router.acompletion(model="g", messages=MESSAGES)
            assert served_by(response) == "good"
        await async_wait_until(lambda: handle.stats()["recorded_ok"] == 4)
        assert handle.stats()["hook_errors"] == 0
        assert handle.stats()["recorded_failure"] == 2 == sim.stats("bad").total  # two failures, then ejected
        assert handle.middleware.failover.state("bad") is CircuitState.OPEN
        assert handle.middleware.stats()["callback_failures"]["alert_subscriber"] >= 1


def test_token_counts_no_record_can_take_are_left_out_not_the_event() -> None:
    router = litellm.Router(model_list=[mock_deployment("x")], num_retries=0)
    with install(router) as handle:
        event = {
            "litellm_call_id": "call-1",
            "litellm_params": {"model_info": {"id": "x"}, "metadata": {METADATA_KEY: handle.callback.pbm_router_token}},
            "standard_logging_object": {"model_id": "x", "prompt_tokens": 10**400, "completion_tokens": 12},
        }
        handle.callback.log_success_event(event, None, 1.0, 1.5)
        assert handle.stats()["hook_errors"] == 0 and handle.stats()["recorded_ok"] == 1
        health = handle.middleware.health("x")
        assert (health.successes, health.tokens_in, health.tokens_out) == (1, MAX_TOKENS, 12)  # clamped, kept
