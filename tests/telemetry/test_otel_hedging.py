"""OpenTelemetry of hedged calls: the hedge is an attempt span of the same request, the loser ends as a lost
race (no error), and the request ends once, answered by whichever attempt won (in-memory SDK exporters)."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from otel_support import Otel

from pi_builder_middleware import AllProvidersFailedError, FailoverConfig, HedgePolicy, Middleware, Provider


def make(otel: Otel) -> Middleware:
    return Middleware(
        [Provider(id="a", model="openai/a"), Provider(id="b", model="openai/b")],
        strategy="failover",
        failover=FailoverConfig(consecutive_failures=3, jitter=0.0),
        load_entrypoints=False,
        hedge=HedgePolicy(delay_s=0.02),
        telemetry=otel.telemetry,
    )


def by_provider(otel: Otel) -> dict[str, object]:
    return {s.attributes["pi_builder.provider.id"]: s for s in otel.attempt_spans()}  # type: ignore[index]


async def test_a_hedge_that_wins_ends_the_request_as_answered_and_the_first_attempt_as_lost(otel: Otel) -> None:
    mw = make(otel)
    answered_under: dict[str, int] = {}

    async def call(provider: Provider) -> str:
        from opentelemetry import trace

        answered_under[provider.id] = trace.get_current_span().get_span_context().span_id
        await asyncio.sleep(5.0 if provider.id == "a" else 0.01)  # a hangs: the hedge on b answers first
        return provider.id

    assert await mw.aexecute(call) == "b"
    request = otel.one("pi_builder.request")
    assert request.status.status_code is not StatusCode.ERROR
    assert request.attributes["pi_builder.provider.id"] == "b"  # type: ignore[index]
    assert request.attributes["pi_builder.attempts"] == 2 and request.attributes["pi_builder.failovers"] == 0  # type: ignore[index]
    spans = by_provider(otel)
    a, b = spans["a"], spans["b"]
    assert all(
        s.kind is SpanKind.CLIENT
        and s.parent is not None  # type: ignore[attr-defined]
        and s.parent.span_id == request.context.span_id
        for s in (a, b)
    )  # type: ignore[attr-defined]
    assert b.attributes["pi_builder.attempt.hedge"] is True  # type: ignore[attr-defined]
    assert b.status.status_code is StatusCode.UNSET  # type: ignore[attr-defined]
    assert a.attributes["pi_builder.attempt.lost_race"] is True  # type: ignore[attr-defined]
    assert a.status.status_code is StatusCode.UNSET  # type: ignore[attr-defined]  # cancelled, not failed
    # each provider ran with its own attempt span current (the framework's spans nest under the right one)
    assert answered_under == {"a": a.context.span_id, "b": b.context.span_id}  # type: ignore[attr-defined]
    assert otel.value("pi_builder.requests", pi_builder__outcome="answered") == 1
    assert otel.value("pi_builder.requests", pi_builder__outcome="failed") == 0


async def test_a_first_attempt_that_wins_ends_the_hedge_as_lost(otel: Otel) -> None:
    mw = make(otel)
    release = asyncio.Event()

    async def call(provider: Provider) -> str:
        if provider.id == "a":
            await release.wait()  # answers just after the hedge started
            return "a"
        release.set()
        await asyncio.sleep(5.0)
        return "b"

    assert await mw.aexecute(call) == "a"
    request = otel.one("pi_builder.request")
    assert request.status.status_code is not StatusCode.ERROR
    spans = by_provider(otel)
    assert spans["b"].attributes["pi_builder.attempt.hedge"] is True  # type: ignore[attr-defined]
    assert spans["b"].attributes["pi_builder.attempt.lost_race"] is True  # type: ignore[attr-defined]
    assert "pi_builder.attempt.lost_race" not in (spans["a"].attributes or {})  # type: ignore[attr-defined]
    assert "error.type" not in (spans["b"].attributes or {})  # type: ignore[attr-defined]


async def test_a_hedge_that_answers_after_the_last_provider_failed_ends_the_request_as_answered(otel: Otel) -> None:
    mw = make(otel)
    hedge_started = asyncio.Event()

    async def call(provider: Provider) -> str:
        if provider.id == "a":
            await hedge_started.wait()
            raise ConnectionError("refused")  # a fails while the hedge on b still runs: nothing left to fail over to
        hedge_started.set()
        await asyncio.sleep(0.05)
        return "b"

    assert await mw.aexecute(call) == "b"
    request = otel.one("pi_builder.request")
    assert request.status.status_code is not StatusCode.ERROR
    assert request.attributes["pi_builder.provider.id"] == "b"  # type: ignore[index]
    spans = by_provider(otel)
    assert spans["a"].status.status_code is StatusCode.ERROR  # type: ignore[attr-defined]
    assert spans["b"].status.status_code is StatusCode.UNSET  # type: ignore[attr-defined]


async def test_every_attempt_of_a_hedged_call_failing_ends_the_request_as_failed_once(otel: Otel) -> None:
    mw = make(otel)
    hedge_started = asyncio.Event()

    async def call(provider: Provider) -> str:
        if provider.id == "a":
            await hedge_started.wait()
            await asyncio.sleep(0.01)
            raise ConnectionError("refused")
        hedge_started.set()
        await asyncio.sleep(0.05)
        raise ConnectionError("refused too")

    with pytest.raises(AllProvidersFailedError):
        await mw.aexecute(call)
    request = otel.one("pi_builder.request")
    assert request.status.status_code is StatusCode.ERROR
    assert {s.status.status_code for s in otel.attempt_spans()} == {StatusCode.ERROR}
    assert len(otel.attempt_spans()) == 2
    assert otel.value("pi_builder.requests", pi_builder__outcome="failed") == 1
