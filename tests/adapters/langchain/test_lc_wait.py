"""``max_wait_s``: riding out a spell in which every provider is down, instead of failing at once.

Real LangChain runnables on a manual clock: the scripted models answer 503 until a moment on the test's
ManualClock, the middleware's breakers eject for 0.2 s (0.4 s on the next trip) on that clock, and its
waits advance it (the injected ``sleep`` / ``async_sleep``), so the loop's waits follow the breakers'
schedule exactly and no test waits on wall time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from lc_fakes import HTTPError, ScriptedChat, call
from pi_builder_middleware.adapters.langchain import HealthAwareChatModel, HealthAwareFallbacks
from pydantic import BaseModel

from pi_builder_middleware import (
    AllOutMode,
    AllProvidersFailedError,
    ConfigError,
    ErrorKind,
    FailoverConfig,
    ManualClock,
    Middleware,
    NoProviderAvailableError,
    Provider,
    RouteRequest,
    RoutingConfig,
    StreamInterruptedError,
)

MODES = ["invoke", "ainvoke", "stream", "astream"]
FRONT_ENDS = [HealthAwareFallbacks, HealthAwareChatModel]


class OutageChat(ScriptedChat):
    """A scripted model that answers 503 until ``down_until`` (on ``clock``), then recovers."""

    down_until: float = 0.0
    calls_while_down: int = 0
    clock: Any = time.monotonic

    def _down(self) -> None:
        down = self.clock() < self.down_until
        self.calls_while_down += down
        self.fail = HTTPError(503, "overloaded") if down else None

    def _answer(self, **kwargs: Any) -> AIMessage:
        self._down()
        return super()._answer(**kwargs)

    def _chunks(self) -> Iterator[AIMessageChunk | Exception]:
        self._down()
        return super()._chunks()


CLOCK = ManualClock()  # reset for each test (fixture below); waits advance it


@pytest.fixture(autouse=True)
def _fresh_clock() -> None:
    global CLOCK
    CLOCK = ManualClock(1000.0)


async def _advance(seconds: float) -> None:
    CLOCK.advance(seconds)


def outage(seconds: float, *keys: str) -> dict[str, OutageChat]:
    until = CLOCK() + seconds
    return {key: OutageChat(key=key, down_until=until, clock=CLOCK) for key in keys}


def on_clock(keys: tuple[str, ...] | list[str], **kwargs: Any) -> Middleware:
    """A middleware on the test's clock: its waits advance the clock instead of sleeping."""
    clock = CLOCK
    return Middleware([Provider(id=k) for k in keys], clock=clock, sleep=clock.advance, async_sleep=_advance, **kwargs)


def middleware(*keys: str, ejection_s: float = 0.2, when_all_out: AllOutMode = AllOutMode.SOONEST) -> Middleware:
    """Two failures in a row open a breaker for 0.2 s, a failed trial for 0.4 s."""
    config = FailoverConfig.preset("aggressive", base_ejection_s=ejection_s, jitter=0.0)
    return on_clock(
        keys, strategy="failover", failover=config, seed=1, routing=RoutingConfig(when_all_out=when_all_out)
    )


def timed(llm: Any, mode: str) -> tuple[str, float]:
    start = CLOCK()
    return call(llm, mode), CLOCK() - start


@pytest.mark.parametrize("front_end", FRONT_ENDS)
@pytest.mark.parametrize("mode", MODES)
def test_an_outage_of_every_provider_shorter_than_max_wait_is_ridden_out_with_few_calls(front_end, mode):
    models = outage(0.5, "a", "b")
    llm = front_end(models, middleware=middleware("a", "b"), max_wait_s=2)

    text, took = timed(llm, mode)

    assert text == "a says hi"
    assert took >= 0.5  # it answered only once the outage was over ...
    assert took < 1.5
    # ... after passes at 0 s and 0.05 s (both breakers open for 0.2 s), the half-open trials at about
    # 0.25 s (open again for 0.4 s) and a pass at 0.65 s that succeeds; retrying without waiting would
    # have sent hundreds of calls into the outage.
    assert sum(m.calls_while_down for m in models.values()) <= 6


@pytest.mark.parametrize("mode", MODES)
def test_without_max_wait_the_same_outage_fails_at_once(mode):
    models = outage(0.5, "a", "b")
    llm = HealthAwareFallbacks(models, middleware=middleware("a", "b"))

    start = CLOCK()
    with pytest.raises(AllProvidersFailedError) as info:
        call(llm, mode)

    assert CLOCK() - start == 0  # no wait at all
    assert [a.provider_id for a in info.value.attempts] == ["a", "b"]


@pytest.mark.parametrize("mode", MODES)
def test_a_deadline_shorter_than_the_outage_gives_up_with_every_pass_attempts(mode):
    models = outage(3.0, "a", "b")
    llm = HealthAwareChatModel(models, middleware=middleware("a", "b"), max_wait_s=0.6)

    start = CLOCK()
    with pytest.raises(AllProvidersFailedError) as info:
        call(llm, mode)
    took = CLOCK() - start

    # Passes at 0, 0.05 and 0.25 s; then both breakers are open until 0.65 s, past the 0.6 s deadline,
    # so it gives up at once instead of sleeping until the deadline.
    assert took < 0.55
    ids = [a.provider_id for a in info.value.attempts]
    assert ids == ["a", "b"] * 3
    assert all(a.error_kind.fails_over for a in info.value.attempts)
    assert info.value.__cause__ is info.value.attempts[-1].error


def test_the_deadline_bounds_the_call_when_providers_keep_coming_back_to_fail():
    config = FailoverConfig.preset("aggressive", base_ejection_s=0.05, ejection_multiplier=1.0, jitter=0.0)
    mw = on_clock(["a"], failover=config)
    llm = HealthAwareFallbacks(outage(3.0, "a"), middleware=mw, max_wait_s=0.4)

    start = CLOCK()
    with pytest.raises(AllProvidersFailedError) as info:
        llm.invoke("q")

    assert CLOCK() - start <= 0.4
    assert len(info.value.attempts) >= 3  # a trial every 0.05 s ejection (at least the doubling backoff)


def test_providers_failing_with_closed_breakers_get_a_doubling_backoff_not_a_hammering():
    config = FailoverConfig(consecutive_failures=1000, minimum_calls=1000, jitter=0.0)  # never trips
    models = outage(0.3, "a")
    llm = HealthAwareFallbacks(models, middleware=on_clock(["a"], failover=config), max_wait_s=2)

    text, took = timed(llm, "invoke")

    assert text == "a says hi"
    assert took >= 0.3
    assert models["a"].calls_while_down <= 4  # passes at 0, 0.05, 0.15 s, then 0.35 s answers


@pytest.mark.parametrize("mode", MODES)
def test_waits_for_ejected_providers_when_no_provider_is_available_at_the_start(mode):
    models = {key: ScriptedChat(key=key) for key in ("a", "b")}
    mw = middleware("a", "b", ejection_s=0.4, when_all_out=AllOutMode.FAIL)
    for key in models:  # both ejected for 0.4 s, although they are healthy again
        mw.failover.record(key, False, ErrorKind.SERVER_ERROR)
        mw.failover.record(key, False, ErrorKind.SERVER_ERROR)

    with pytest.raises(NoProviderAvailableError):
        call(HealthAwareFallbacks(models, middleware=mw), mode)

    text, took = timed(HealthAwareFallbacks(models, middleware=mw, max_wait_s=1), mode)
    assert text == "a says hi"
    # woken by the end of the ejection, not by a backoff (passes at 0.05, 0.15, 0.35, 0.75 s)
    assert 0.3 <= took < 0.6
    assert (models["a"].calls, models["b"].calls) == (1, 0)


def test_providers_the_request_filters_out_are_not_waited_for():
    llm = HealthAwareFallbacks(
        {"a": ScriptedChat(key="a")},
        middleware=middleware("a"),
        max_wait_s=2,
        route=RouteRequest(required_capabilities=frozenset({"vision"})),
    )
    start = CLOCK()
    with pytest.raises(NoProviderAvailableError, match="missing capabilities"):
        llm.invoke("q")
    assert CLOCK() - start == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_bad_request_is_not_retried(mode):
    models = {key: ScriptedChat(key=key, fail=HTTPError(400, "bad field")) for key in ("a", "b")}
    llm = HealthAwareFallbacks(models, middleware=middleware("a", "b"), max_wait_s=2)

    start = CLOCK()
    with pytest.raises(HTTPError):
        call(llm, mode)

    assert CLOCK() - start == 0
    assert (models["a"].calls, models["b"].calls) == (1, 0)


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_stream_broken_after_its_first_chunk_is_not_retried(mode):
    models = {"a": ScriptedChat(key="a", fail=HTTPError(503), cut_after=1), "b": ScriptedChat(key="b")}
    llm = HealthAwareFallbacks(models, middleware=middleware("a", "b"), max_wait_s=2)

    with pytest.raises(StreamInterruptedError):
        call(llm, mode)
    assert (models["a"].calls, models["b"].calls) == (1, 0)


async def test_the_async_wait_can_be_cancelled():
    waiting = asyncio.Event()

    async def never(seconds: float) -> None:  # the wait that the caller cancels
        waiting.set()
        await asyncio.Event().wait()

    mw = on_clock(["a"], strategy="failover", failover=FailoverConfig.preset("aggressive", jitter=0.0))
    mw.async_sleep = never
    llm = HealthAwareFallbacks(outage(3.0, "a"), middleware=mw, max_wait_s=2)
    task = asyncio.ensure_future(llm.ainvoke("q"))
    await asyncio.wait_for(waiting.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert mw.monitor.candidate("a").inflight == 0


@pytest.mark.parametrize("front_end", FRONT_ENDS)
@pytest.mark.parametrize("value", [-1, "x", True, float("inf"), float("nan")])
def test_invalid_max_wait_raises_config_error_naming_the_field(front_end, value):
    with pytest.raises(ConfigError) as info:
        front_end({"a": ScriptedChat(key="a")}, max_wait_s=value)
    assert info.value.field == f"{front_end.__name__}.max_wait_s"


class Answer(BaseModel):
    text: str


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_max_wait_survives_the_copies_the_wrappers_make(front_end):
    llm = front_end({"a": ScriptedChat(key="a")}, max_wait_s=1.5)
    copies = [llm, llm.bind_tools([Answer]), llm.with_structured_output(Answer)]
    assert [c.max_wait_s for c in copies] == [1.5, 1.5, 1.5]
    assert [c._loop.max_wait_s for c in copies] == [1.5, 1.5, 1.5]
    if isinstance(llm, HealthAwareChatModel):
        assert llm._identifying_params["max_wait_s"] == 1.5
