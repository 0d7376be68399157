"""OpenTelemetry through the core: Middleware.execute / aexecute / execute_open, with the SDK's in-memory exporters."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from typing import ClassVar

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from otel_support import Otel, all_text, events

from pi_builder_middleware import (
    AllProvidersFailedError,
    FailoverConfig,
    ManualClock,
    Middleware,
    Provider,
    RouteRequest,
    Usage,
)
from pi_builder_middleware.errors import ConfigError


class ProviderDown(Exception):
    """A provider failure whose message carries a secret that must never reach telemetry."""


class BadRequest(Exception):
    status_code = 400


def providers() -> list[Provider]:
    return [
        Provider(id="primary", model="openai/gpt-4o", group="gpt"),
        Provider(id="backup", model="anthropic/claude-3-5", group="gpt"),
    ]


def middleware(otel: Otel, **kw: object) -> Middleware:
    kw.setdefault("failover", FailoverConfig(consecutive_failures=1, jitter=0.0))
    return Middleware(providers(), strategy="failover", telemetry=otel.telemetry, **kw)  # type: ignore[arg-type]


def failing_primary(provider: Provider) -> str:
    if provider.id == "primary":
        raise ProviderDown("upstream said: invalid key sk-SECRET-123")
    return f"answer from {provider.id}"


def test_a_request_that_fails_over_is_one_request_span_with_one_client_span_per_attempt(otel: Otel) -> None:
    mw = middleware(otel)
    assert mw.execute(failing_primary, usage=lambda _: Usage(11, 7)) == "answer from backup"

    request = otel.one("pi_builder.request")
    first, second = otel.attempt_spans()
    assert request.kind is SpanKind.INTERNAL and request.parent is None
    for span in (first, second):
        assert span.kind is SpanKind.CLIENT
        assert span.parent is not None and span.parent.span_id == request.context.span_id
        assert span.context.trace_id == request.context.trace_id
    assert first.name == "chat gpt-4o" and second.name == "chat claude-3-5"

    a = dict(first.attributes or {})
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o" and a["pi_builder.provider.id"] == "primary"
    assert a["pi_builder.attempt"] == 1 and a["error.type"] == "ProviderDown"
    assert a["pi_builder.error.kind"] == "unknown" and first.status.status_code is StatusCode.ERROR
    # the breaker tripped while the failure was recorded: an event of that attempt
    assert [name for name, _ in events(first)] == ["pi_builder.breaker.open"]
    assert events(first)[0][1]["pi_builder.provider.id"] == "primary"

    b = dict(second.attributes or {})
    assert b["pi_builder.attempt"] == 2 and b["gen_ai.provider.name"] == "anthropic"
    assert b["gen_ai.usage.input_tokens"] == 11 and b["gen_ai.usage.output_tokens"] == 7
    assert "error.type" not in b and second.status.status_code is StatusCode.UNSET

    r = dict(request.attributes or {})
    assert r["pi_builder.decision.strategy"] == "failover" and r["pi_builder.decision.provider"] == "primary"
    assert r["pi_builder.decision.chain"] == ("backup",)
    assert "chose primary" in str(r["pi_builder.decision.reason"])
    assert r["pi_builder.attempts"] == 2 and r["pi_builder.failovers"] == 1 and r["pi_builder.provider.id"] == "backup"
    failover = [attrs for name, attrs in events(request) if name == "pi_builder.failover"]
    assert len(failover) == 1 and failover[0]["pi_builder.provider.id"] == "primary"
    assert "backup" in str(failover[0]["pi_builder.detail"])
    assert "sk-SECRET" not in all_text(otel.spans())


def test_the_request_that_fails_over_is_in_the_metrics(otel: Otel) -> None:
    mw = middleware(otel)
    mw.execute(failing_primary, usage=lambda _: Usage(11, 7))

    assert (
        otel.value("gen_ai.client.operation.duration", pi_builder__provider__id="primary", error__type="ProviderDown")
        == 1
    )
    assert otel.value("gen_ai.client.operation.duration", pi_builder__provider__id="backup") == 1
    ok_points = [
        p for p in otel.points("gen_ai.client.operation.duration") if p.attributes["pi_builder.provider.id"] == "backup"
    ]
    assert "error.type" not in ok_points[0].attributes
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in otel.points("gen_ai.client.token.usage")}
    assert tokens == {"input": 11, "output": 7}
    assert otel.value("pi_builder.failovers", pi_builder__provider__id="primary") == 1
    assert otel.value("pi_builder.ejections", pi_builder__provider__id="primary") == 1
    assert otel.value("pi_builder.breaker.state", pi_builder__provider__id="primary") == 2  # open
    assert otel.value("pi_builder.breaker.state", pi_builder__provider__id="backup") == 0
    assert otel.value("pi_builder.requests", pi_builder__outcome="answered", pi_builder__failed_over=True) == 1
    assert otel.value("pi_builder.decisions", pi_builder__decision__strategy="failover") == 1
    in_flight = {p.attributes["pi_builder.provider.id"]: p.value for p in otel.points("pi_builder.attempts.in_flight")}
    assert in_flight == {"primary": 0, "backup": 0}  # both began and ended


def test_spans_nest_under_the_current_span_and_the_attempt_span_is_current_while_the_provider_runs(otel: Otel) -> None:
    mw = middleware(otel)
    tracer = otel.tracer_provider.get_tracer("app")

    def call(provider: Provider) -> str:
        with tracer.start_as_current_span(f"http {provider.id}"):
            return failing_primary(provider)

    with tracer.start_as_current_span("framework"):
        mw.execute(call)
    framework = otel.one("framework")
    request = otel.one("pi_builder.request")
    assert request.parent is not None and request.parent.span_id == framework.context.span_id
    for attempt in otel.attempt_spans():
        pid = attempt.attributes["pi_builder.provider.id"]  # type: ignore[index]
        inner = otel.one(f"http {pid}")
        assert inner.parent is not None and inner.parent.span_id == attempt.context.span_id
    # nothing stays attached: a span made afterwards is a root again
    with tracer.start_as_current_span("after"):
        pass
    assert otel.one("after").parent is None


def test_every_provider_failing_ends_the_request_span_with_the_error(otel: Otel) -> None:
    mw = middleware(otel)

    def down(provider: Provider) -> str:
        raise ProviderDown("sk-SECRET-123")

    with pytest.raises(AllProvidersFailedError):
        mw.execute(down)
    request = otel.one("pi_builder.request")
    assert request.status.status_code is StatusCode.ERROR
    assert request.attributes["error.type"] == "AllProvidersFailedError"  # type: ignore[index]
    assert [s.attributes["error.type"] for s in otel.attempt_spans()] == ["ProviderDown", "ProviderDown"]  # type: ignore[index]
    assert otel.value("pi_builder.requests", pi_builder__outcome="failed") == 1
    assert "sk-SECRET" not in all_text(otel.spans())


def test_a_bad_request_does_not_fail_over_and_its_span_says_why(otel: Otel) -> None:
    mw = middleware(otel)

    def bad(provider: Provider) -> str:
        raise BadRequest("no")

    with pytest.raises(BadRequest):
        mw.execute(bad)
    (attempt,) = otel.attempt_spans()
    assert attempt.attributes["pi_builder.error.kind"] == "bad_request"  # type: ignore[index]
    request = otel.one("pi_builder.request")
    assert request.attributes["error.type"] == "BadRequest" and request.attributes["pi_builder.failovers"] == 0  # type: ignore[index]


async def test_aexecute_timeout_fails_over_with_a_timeout_span(otel: Otel) -> None:
    mw = middleware(otel)

    async def slow_primary(provider: Provider) -> str:
        if provider.id == "primary":
            await asyncio.sleep(10)
        return provider.id

    assert await mw.aexecute(slow_primary, RouteRequest(attempt_timeout_s=0.05)) == "backup"
    first, second = otel.attempt_spans()
    assert first.attributes["error.type"] == "AttemptTimeoutError"  # type: ignore[index]
    assert first.attributes["pi_builder.error.kind"] == "timeout"  # type: ignore[index]
    assert second.status.status_code is StatusCode.UNSET
    request = otel.one("pi_builder.request")
    assert all(s.parent is not None and s.parent.span_id == request.context.span_id for s in (first, second))


async def test_a_cancelled_call_ends_its_spans(otel: Otel) -> None:
    mw = middleware(otel)
    started = asyncio.Event()

    async def hang(provider: Provider) -> str:
        started.set()
        await asyncio.sleep(10)
        return "never"

    task = asyncio.ensure_future(mw.aexecute(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (attempt,) = otel.attempt_spans()
    assert attempt.attributes["error.type"] == "CancelledError"  # type: ignore[index]
    assert otel.one("pi_builder.request").attributes["error.type"] == "CancelledError"  # type: ignore[index]


def test_a_stream_keeps_its_spans_open_until_delivery_ends(otel: Otel) -> None:
    clock = ManualClock(100.0)
    mw = middleware(otel, clock=clock)
    opened = mw.execute_open(lambda p: iter(["a", "b"]), RouteRequest(stream=True))
    assert otel.spans() == []  # still being delivered
    clock.advance(0.25)
    opened.succeeded(ttft_s=0.1, usage=Usage(2, 2))
    attempt = otel.attempt_spans()[0]
    assert attempt.attributes["gen_ai.request.stream"] is True  # type: ignore[index]
    assert attempt.attributes["pi_builder.ttft_s"] == 0.1  # type: ignore[index]
    assert otel.value("gen_ai.client.operation.time_to_first_chunk", pi_builder__provider__id="primary") == 1
    assert otel.one("pi_builder.request").attributes["pi_builder.provider.id"] == "primary"  # type: ignore[index]


def test_a_stream_that_breaks_after_its_first_chunk_ends_both_spans_with_the_error(otel: Otel) -> None:
    mw = middleware(otel)
    opened = mw.execute_open(lambda p: "head", RouteRequest(stream=True))
    opened.interrupted(ProviderDown("sk-SECRET"), ttft_s=0.01)
    attempt = otel.attempt_spans()[0]
    assert attempt.status.status_code is StatusCode.ERROR and attempt.attributes["error.type"] == "ProviderDown"  # type: ignore[index]
    assert otel.one("pi_builder.request").status.status_code is StatusCode.ERROR
    assert otel.value("pi_builder.requests", pi_builder__outcome="failed") == 1


def test_a_wait_for_re_admission_is_an_event_of_the_request(otel: Otel) -> None:
    clock = ManualClock(100.0)
    mw = middleware(
        otel,
        clock=clock,
        sleep=lambda s: clock.advance(s),
        failover=FailoverConfig(consecutive_failures=1, jitter=0.0, base_ejection_s=1.0),
    )
    calls: list[str] = []

    def flaky(provider: Provider) -> str:
        calls.append(provider.id)
        if len(calls) <= 2:
            raise ProviderDown("down")
        return provider.id

    assert mw.execute(flaky, max_wait_s=5.0) in ("primary", "backup")
    request = otel.one("pi_builder.request")
    waits = [attrs for name, attrs in events(request) if name == "pi_builder.wait"]
    assert waits and all(w["pi_builder.wait.seconds"] > 0 for w in waits)
    assert request.attributes["pi_builder.attempts"] == 3  # type: ignore[index]
    # the breaker re-admitted a provider for a trial: the half-open transition is on the request span
    assert "pi_builder.breaker.half_open" in [name for name, _ in events(request)]


def test_a_failing_sink_never_breaks_a_request(otel: Otel) -> None:
    mw = middleware(otel)

    class Broken:
        def watch(self, middleware: object) -> None:
            pass

        def __getattr__(self, name: str) -> object:
            def fail(*args: object) -> None:
                raise RuntimeError(f"sink {name} broke")

            return fail

    assert mw.telemetry is not None
    mw.telemetry.add_sink(Broken())  # type: ignore[arg-type]
    assert mw.execute(failing_primary) == "answer from backup"
    assert len(otel.attempt_spans()) == 2


def test_telemetry_false_and_bad_values() -> None:
    mw = Middleware(providers(), telemetry=False)
    assert mw.telemetry is None
    with pytest.raises(ConfigError, match="telemetry"):
        Middleware(providers(), telemetry="yes")  # type: ignore[arg-type]


def _run(code: str, **env: str) -> str:
    full_env = {**os.environ, **env}
    full_env.pop("PI_BUILDER_OTEL_DISABLED", None) if "PI_BUILDER_OTEL_DISABLED" not in env else None
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


AUTO = """
    import sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from pi_builder_middleware import Middleware, Provider
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    before = Middleware([Provider(id="a")])
    trace.set_tracer_provider(provider)
    mw = Middleware([Provider(id="a")])
    mw.execute(lambda p: "ok")
    print(before.telemetry is None, mw.telemetry is not None, sorted(s.name for s in exporter.get_finished_spans()))
"""


def test_opentelemetry_turns_itself_on_once_the_application_set_a_global_provider() -> None:
    assert _run(AUTO) == "True True ['chat a', 'pi_builder.request']"


def test_the_environment_variable_keeps_it_off() -> None:
    assert _run(AUTO, PI_BUILDER_OTEL_DISABLED="1") == "True False []"


def test_importing_and_using_the_package_imports_no_telemetry_library() -> None:
    out = _run("""
        import sys
        from pi_builder_middleware import Middleware, Provider
        mw = Middleware([Provider(id="a")])
        mw.execute(lambda p: "ok")
        print(mw.telemetry, sorted(m for m in sys.modules if m.startswith(("opentelemetry", "prometheus_client"))))
    """)
    assert out == "None []"


def test_in_flight_counts_the_running_attempt(otel: Otel) -> None:
    mw = middleware(otel)
    during: list[float] = []

    def call(provider: Provider) -> str:
        during.append(otel.value("pi_builder.attempts.in_flight", pi_builder__provider__id=provider.id))
        return "ok"

    mw.execute(call)
    assert during == [1]
    assert otel.value("pi_builder.attempts.in_flight", pi_builder__provider__id="primary") == 0


class RateLimited(Exception):
    status_code = 429
    headers: ClassVar[dict[str, str]] = {"retry-after": "2"}


def test_a_429_is_a_cooldown_event_of_its_attempt_and_counted(otel: Otel) -> None:
    mw = middleware(otel)

    def limited(provider: Provider) -> str:
        if provider.id == "primary":
            raise RateLimited("slow down")
        return provider.id

    assert mw.execute(limited) == "backup"
    first, _ = otel.attempt_spans()
    assert first.attributes["pi_builder.error.kind"] == "rate_limited"  # type: ignore[index]
    assert [name for name, _ in events(first)] == ["pi_builder.cooldown"]
    assert otel.value("pi_builder.cooldowns", pi_builder__provider__id="primary") == 1
    assert otel.value("pi_builder.ejections") == 0  # a 429 is not a health failure
    assert otel.value("pi_builder.breaker.state", pi_builder__provider__id="primary") == 0
