"""Prometheus series: scraped over real HTTP from the demo and from a multiprocess server, parsed with
``prometheus_client.parser``; labels that join LiteLLM's deployment metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prom_support import families, free_port, samples, scrape, total
from prometheus_client import CollectorRegistry, generate_latest

from pi_builder_middleware import FailoverConfig, Middleware, Provider, Usage
from pi_builder_middleware.errors import ConfigError
from pi_builder_middleware.telemetry._hub import _hub
from pi_builder_middleware.telemetry.prometheus import LABELS, SERIES, PrometheusMetrics

BIN = Path(sys.executable).parent


class Down(Exception):
    pass


def fail_a(provider: Provider) -> str:
    if provider.id == "a":
        raise Down("sk-SECRET")
    return "ok"


def test_series_and_labels_of_a_request_that_fails_over() -> None:
    registry = CollectorRegistry()
    mw = Middleware(
        [Provider(id="a", model="openai/gpt-4o", group="gpt"), Provider(id="b", model="anthropic/c3", group="gpt")],
        strategy="failover",
        failover=FailoverConfig(consecutive_failures=1, jitter=0.0),
        telemetry=None,
    )
    _hub(mw).add_sink(PrometheusMetrics(registry))
    mw.execute(fail_a, usage=lambda _: Usage(5, 9))
    text = generate_latest(registry).decode()
    found = samples(text)
    a = {"model_id": "a", "model_group": "gpt", "api_provider": "openai"}
    b = {"model_id": "b", "model_group": "gpt", "api_provider": "anthropic"}
    assert total(found, "pi_builder_breaker_state", **a) == 2
    assert total(found, "pi_builder_breaker_state", **b) == 0
    assert total(found, "pi_builder_attempts_total", outcome="failure", error_kind="unknown", **a) == 1
    assert total(found, "pi_builder_attempts_total", outcome="success", **b) == 1
    assert total(found, "pi_builder_attempt_latency_seconds_count", outcome="success", **b) == 1
    assert total(found, "pi_builder_tokens_total", token_type="output", **b) == 9
    assert total(found, "pi_builder_failovers_total", to_model_id="b", error_kind="unknown", **a) == 1
    assert total(found, "pi_builder_ejections_total", **a) == 1
    assert total(found, "pi_builder_in_flight", **a) == 0
    assert total(found, "pi_builder_requests_total", outcome="answered", failed_over="true") == 1
    assert total(found, "pi_builder_decisions_total", strategy="failover", reason="ranked") == 1
    assert total(found, "pi_builder_provider_health", **a) == 3  # offline while its breaker is open
    assert families(text) >= set(SERIES)
    for name, rows in found.items():
        if name.startswith("pi_builder_") and not name.startswith(("pi_builder_decisions", "pi_builder_requests")):
            assert all(set(LABELS) <= set(lab) for lab, _ in rows), name
    assert "sk-SECRET" not in text


def _demo(port: int, duration: float) -> subprocess.Popen[str]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.Popen(
        [
            str(BIN / "pi-builder"),
            "demo",
            "--duration",
            str(duration),
            "--rate",
            "8",
            "--no-live",
            "--metrics-port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_the_demo_serves_metrics_and_the_failed_providers_breaker_is_open_there() -> None:
    port = free_port()
    demo = _demo(port, 30.0)  # the outage of openai-fast: 4.5 s to 13.5 s of the demo (a wide window on a busy machine)
    seen_open: dict[str, list[tuple[dict[str, str], float]]] | None = None
    counted: dict[str, list[tuple[dict[str, str], float]]] = {}
    text = ""
    try:
        deadline = time.monotonic() + 150
        while demo.poll() is None and time.monotonic() < deadline:
            try:
                text = scrape(port)
            except OSError:
                time.sleep(0.2)
                continue
            found = samples(text)
            if total(found, "pi_builder_breaker_state", model_id="openai-fast") == 2:
                seen_open = found
            # counters are monotonic: wait until the failed attempt and the ejection are counted too (the
            # gauge is read when scraped, the counters when the events are handled)
            if (
                seen_open is not None
                and total(found, "pi_builder_attempts_total", outcome="failure", model_id="openai-fast") > 0
                and total(found, "pi_builder_ejections_total", model_id="openai-fast") >= 1
            ):
                counted = found
                break
            time.sleep(0.2)
    finally:
        out, err = demo.communicate(timeout=120)
    assert demo.returncode == 0, err
    assert f"127.0.0.1:{port}/metrics" in out
    assert seen_open is not None, f"openai-fast never showed an open breaker; last scrape:\n{text[-3000:]}\n{err}"
    # the provider the scenario takes down: failed attempts (503), ejected, traffic moved off it
    fast = {"model_id": "openai-fast", "model_group": "chat", "api_provider": "openai"}
    assert total(counted, "pi_builder_attempts_total", outcome="failure", **fast) > 0
    assert total(counted, "pi_builder_ejections_total", **fast) >= 1
    # pi_builder_failovers_total is not asserted here: only the core attempt loop (the demo's LangChain part)
    # counts a move along a chain, LiteLLM's own retries are not counted, and which part of the demo meets the
    # outage first is timing; test_series_and_labels_of_a_request_that_fails_over asserts the series.
    assert (
        total(counted, "pi_builder_attempts_total", outcome="success", model_id="anthropic-solid")
        + total(counted, "pi_builder_attempts_total", outcome="success", model_id="local-cheap")
        > 0
    )
    assert families(text) >= {
        "pi_builder_breaker_state",
        "pi_builder_attempts",
        "pi_builder_in_flight",
        "pi_builder_attempt_latency_seconds",
        "pi_builder_decisions",
    }
    assert "sk-" not in text


WORKER = """
    import sys
    from pi_builder_middleware import FailoverConfig, Middleware, Provider
    from pi_builder_middleware.telemetry import enable_prometheus
    first = enable_prometheus()
    assert enable_prometheus() is first  # idempotent: the proxy handler and the app may both call it
    mw = Middleware([Provider(id="a", model="openai/x", group="g"), Provider(id="b", model="openai/y", group="g")],
                    strategy="failover", failover=FailoverConfig(consecutive_failures=1, jitter=0.0))
    class Down(Exception):
        pass
    def call(p):
        if p.id == "a":
            raise Down("down")
        return "ok"
    n = int(sys.argv[1])
    for _ in range(n):
        mw.execute(call)
    held = mw.execute_open(lambda p: "stream head")  # one attempt stays in flight while this worker lives
    print("ready", flush=True)
    sys.stdin.read()
    held.succeeded()
"""

SERVER = """
    import sys
    from pi_builder_middleware.telemetry import serve_metrics
    server = serve_metrics(0)
    print(server.server_port, flush=True)
    sys.stdin.read()
"""


def _python(code: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_multiprocess_mode_sums_counters_across_worker_processes(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    workers = [_python(WORKER, str(n), env=env) for n in (3, 2)]
    server = _python(SERVER, env=env)
    try:
        for w in workers:
            assert w.stdout is not None and w.stdout.readline().strip() == "ready", w.stderr.read() if w.stderr else ""
        assert server.stdout is not None
        port = int(server.stdout.readline())
        text = scrape(port)
    finally:
        for p in (*workers, server):
            p.communicate(input="", timeout=60)
    assert all(p.returncode == 0 for p in workers), [p.stderr for p in workers]
    found = samples(text)
    # 3 + 2 requests: each tried a once (ejected on the first failure, then skipped) or went to b
    # the held attempts are still in flight: not counted as attempts yet
    assert total(found, "pi_builder_attempts_total", model_id="b", outcome="success") == 5
    assert total(found, "pi_builder_attempts_total", model_id="a", outcome="failure") == 2  # one per worker
    assert total(found, "pi_builder_ejections_total", model_id="a") == 2
    assert total(found, "pi_builder_breaker_state", model_id="a") == 2  # the worst live worker
    assert total(found, "pi_builder_in_flight", model_id="b") == 2  # one held open in each live worker


def test_enable_prometheus_reaches_middlewares_made_before_and_after_and_is_idempotent() -> None:
    code = """
        from prometheus_client import CollectorRegistry
        from pi_builder_middleware import Middleware, Provider, enable_prometheus
        from pi_builder_middleware.errors import ConfigError
        before = Middleware([Provider(id="before")])
        silent = Middleware([Provider(id="silent")], telemetry=False)
        registry = CollectorRegistry()
        first = enable_prometheus(registry)
        assert enable_prometheus(registry) is first and enable_prometheus() is first
        after = Middleware([Provider(id="after")])
        for mw in (before, silent, after):
            mw.execute(lambda p: "ok")
        print(sorted(pid for pid in ("before", "silent", "after") if registry.get_sample_value(
            "pi_builder_attempts_total", {"model_id": pid, "model_group": "", "api_provider": "",
                                          "outcome": "success", "error_kind": ""}) == 1))
        try:
            enable_prometheus(CollectorRegistry())
        except ConfigError as exc:
            print("refused:", exc.field)
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.stdout.strip().splitlines() == ["['after', 'before']", "refused: registry"], out.stderr


def test_serve_metrics_refuses_a_bad_port() -> None:
    from pi_builder_middleware.telemetry import serve_metrics

    with pytest.raises(ConfigError, match="port"):
        serve_metrics(70000)
