"""HealthAwareFallbacks routing with in-process LangChain models: order, memory, errors, batches."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from lc_fakes import HTTPError, ScriptedChat
from pi_builder_middleware.adapters.langchain import HealthAwareFallbacks

from pi_builder_middleware import (
    AllProvidersFailedError,
    CircuitState,
    ErrorKind,
    ManualClock,
    NoProviderAvailableError,
    Provider,
    RouteRequest,
    RoutingConfig,
)

PROMPT = ChatPromptTemplate.from_messages([("user", "{question}")])


def test_lcel_chain_uses_the_primary_and_records_tokens(make_mw):
    a, b = ScriptedChat(key="a"), ScriptedChat(key="b")
    llm = HealthAwareFallbacks({"a": a, "b": b}, middleware=make_mw("a", "b"))
    chain = PROMPT | llm | StrOutputParser()

    assert chain.invoke({"question": "hi?"}) == "a says hi"
    assert (a.calls, b.calls) == (1, 0)
    health = llm.middleware.health("a")
    assert (health.successes, health.tokens_in, health.tokens_out) == (1, 7, 3)


async def test_lcel_chain_async(make_mw):
    a, b = ScriptedChat(key="a", fail=HTTPError(500)), ScriptedChat(key="b")
    chain = PROMPT | HealthAwareFallbacks({"a": a, "b": b}, middleware=make_mw("a", "b")) | StrOutputParser()
    assert await chain.ainvoke({"question": "hi?"}) == "b says hi"
    assert (a.calls, b.calls) == (1, 1)


def test_dead_primary_is_skipped_after_its_breaker_opens_and_used_again_after_recovery(make_mw, clock: ManualClock):
    a, b = ScriptedChat(key="a", fail=HTTPError(503)), ScriptedChat(key="b")
    llm = HealthAwareFallbacks({"a": a, "b": b}, middleware=make_mw("a", "b", base_ejection_s=10.0))

    assert [llm.invoke("q").content for _ in range(2)] == ["b says hi", "b says hi"]
    assert a.calls == 2  # aggressive preset: two failures in a row open the breaker
    assert llm.middleware.failover.state("a") is CircuitState.OPEN

    for _ in range(5):
        assert llm.invoke("q").content == "b says hi"
    assert a.calls == 2  # not even tried while open
    assert b.calls == 7

    a.fail = None  # the provider recovers ...
    clock.advance(10.5)  # ... and its ejection ends: the next call is its half-open trial
    assert llm.invoke("q").content == "a says hi"
    assert llm.middleware.failover.state("a") is CircuitState.CLOSED
    assert llm.invoke("q").content == "a says hi"
    assert (a.calls, b.calls) == (4, 7)


def test_with_fallbacks_keeps_hitting_the_dead_primary():
    """The behaviour this adapter replaces: every call starts at the primary again."""
    a, b = ScriptedChat(key="a", fail=HTTPError(503)), ScriptedChat(key="b")
    llm = a.with_fallbacks([b])
    for _ in range(5):
        llm.invoke("q")
    assert a.calls == 5


def test_bad_request_propagates_without_trying_others(make_mw):
    bad = HTTPError(400, "invalid 'messages'")
    a, b = ScriptedChat(key="a", fail=bad), ScriptedChat(key="b")
    llm = HealthAwareFallbacks({"a": a, "b": b}, middleware=make_mw("a", "b"))
    with pytest.raises(HTTPError) as info:
        llm.invoke("q")
    assert info.value is bad
    assert (a.calls, b.calls) == (1, 0)
    assert llm.middleware.failover.state("a") is CircuitState.CLOSED  # the request's fault, not a's


def test_all_failed_lists_every_attempt_and_chains_the_cause(make_mw):
    errors = {"a": HTTPError(503), "b": HTTPError(500), "c": TimeoutError("read timed out")}
    models = {k: ScriptedChat(key=k, fail=e) for k, e in errors.items()}
    llm = HealthAwareFallbacks(models, middleware=make_mw("a", "b", "c"))
    with pytest.raises(AllProvidersFailedError) as info:
        llm.invoke("q")
    attempts = info.value.attempts
    assert [a.provider_id for a in attempts] == ["a", "b", "c"]
    assert [a.error for a in attempts] == [errors["a"], errors["b"], errors["c"]]
    assert [a.error_kind for a in attempts] == [ErrorKind.OVERLOADED, ErrorKind.SERVER_ERROR, ErrorKind.TIMEOUT]
    assert info.value.__cause__ is errors["c"]
    assert "a: overloaded" in str(info.value) and "c: timeout" in str(info.value)


def test_every_breaker_open_fails_fast_when_configured(make_mw):
    models = {k: ScriptedChat(key=k, fail=HTTPError(503)) for k in "ab"}
    llm = HealthAwareFallbacks(models, middleware=make_mw("a", "b", routing=RoutingConfig(when_all_out="fail")))
    for _ in range(2):
        with pytest.raises(AllProvidersFailedError):
            llm.invoke("q")
    with pytest.raises(NoProviderAvailableError) as info:
        llm.invoke("q")
    assert set(info.value.reasons) == {"a", "b"}
    assert [m.calls for m in models.values()] == [2, 2]


def test_every_breaker_open_sends_to_the_soonest_readmission_by_default(make_mw, clock: ManualClock):
    models = {k: ScriptedChat(key=k, fail=HTTPError(503)) for k in "ab"}
    llm = HealthAwareFallbacks(models, middleware=make_mw("a", "b"))
    for _ in range(2):
        with pytest.raises(AllProvidersFailedError):
            llm.invoke("q")
    clock.advance(1.0)
    models["b"].fail = None  # b recovered; both breakers are still open (a's ejection ends first)
    with pytest.raises(AllProvidersFailedError) as info:  # the soonest back (a) is tried instead of failing
        llm.invoke("q")
    assert [attempt.provider_id for attempt in info.value.attempts] == ["a"]
    assert llm.middleware.stats()["router"]["all_out_decisions"] == 1


def test_rate_limited_provider_cools_down_without_tripping(make_mw, clock: ManualClock):
    limited = HTTPError(429, "slow down")
    a, b = ScriptedChat(key="a", fail=limited), ScriptedChat(key="b")
    llm = HealthAwareFallbacks({"a": a, "b": b}, middleware=make_mw("a", "b"))
    assert llm.invoke("q").content == "b says hi"
    a.fail = None
    assert llm.invoke("q").content == "b says hi"  # still cooling down (default 5 s without Retry-After)
    assert a.calls == 1
    clock.advance(6)
    assert llm.invoke("q").content == "a says hi"
    assert llm.middleware.failover.state("a") is CircuitState.CLOSED


def test_cost_optimal_routes_to_the_cheapest_provider_given_per_key():
    models = {k: ScriptedChat(key=k) for k in ("premium", "cheap")}
    llm = HealthAwareFallbacks(
        models,
        strategy="cost-optimal",
        providers={
            "premium": {"cost_per_1k_input": 5.0, "cost_per_1k_output": 15.0},
            "cheap": Provider(id="cheap", cost_per_1k_input=0.1, cost_per_1k_output=0.3),
        },
    )
    assert llm.invoke("q").content == "cheap says hi"
    assert llm.middleware.health("cheap").cost_total == pytest.approx(7 * 0.1 / 1000 + 3 * 0.3 / 1000)


def test_plain_runnables_fail_over_too(make_mw):
    seen: list[str] = []

    def broken(text: str) -> str:
        seen.append("a")
        raise ConnectionError("refused")

    def shout(text: str) -> str:
        seen.append("b")
        return text.upper()

    llm = HealthAwareFallbacks({"a": RunnableLambda(broken), "b": RunnableLambda(shout)}, middleware=make_mw("a", "b"))
    assert llm.invoke("hello") == "HELLO"
    assert seen == ["a", "b"]
    assert llm.middleware.health("a").failures == 1


@pytest.mark.parametrize("use_async", [False, True])
async def test_batch_returns_per_input_results_in_order(make_mw, use_async: bool):
    def a_fn(text: str) -> str:
        if text == "bad":
            raise HTTPError(400, "bad input")
        if text == "doomed":
            raise HTTPError(503)
        return f"a:{text}"

    def b_fn(text: str) -> str:
        if text == "doomed":
            raise HTTPError(500)
        return f"b:{text}"

    llm = HealthAwareFallbacks(
        {"a": RunnableLambda(a_fn), "b": RunnableLambda(b_fn)},
        middleware=make_mw("a", "b", consecutive_failures=100, minimum_calls=100),
    )
    inputs = ["one", "bad", "doomed", "two"]
    if use_async:
        out = await llm.abatch(inputs, return_exceptions=True)
    else:
        out = llm.batch(inputs, return_exceptions=True, config={"max_concurrency": 2})
    assert out[0] == "a:one" and out[3] == "a:two"  # one 503 of "a" moves nothing
    assert isinstance(out[1], HTTPError) and out[1].status_code == 400  # propagated from a, b never asked
    assert isinstance(out[2], AllProvidersFailedError)
    assert [a.provider_id for a in out[2].attempts] == ["a", "b"]

    with pytest.raises(HTTPError):
        await llm.abatch(inputs) if use_async else llm.batch(inputs)


def test_one_transient_error_does_not_move_traffic_away_from_the_primary(make_mw):
    a, b = ScriptedChat(key="a", fail=HTTPError(500)), ScriptedChat(key="b")
    llm = HealthAwareFallbacks({"a": a, "b": b}, middleware=make_mw("a", "b"))
    assert llm.invoke("q").content == "b says hi"
    a.fail = None
    assert [llm.invoke("q").content for _ in range(3)] == ["a says hi"] * 3  # its breaker never opened


async def test_route_timeout_bounds_each_async_attempt(make_mw):
    async def slow(text: str) -> str:
        await asyncio.sleep(5)
        return "slow"

    async def fast(text: str) -> str:
        return "fast"

    llm = HealthAwareFallbacks(
        {"a": RunnableLambda(slow), "b": RunnableLambda(fast)},
        middleware=make_mw("a", "b"),
        route=RouteRequest(attempt_timeout_s=0.05),
    )
    assert await llm.ainvoke("q") == "fast"
    assert llm.middleware.failover.stats()["providers"]["a"]["timeout"] == 1


def test_config_reaches_the_wrapped_runnables(make_mw):
    def down(text: str) -> str:
        raise HTTPError(503)

    def echo_config(text: str, config) -> tuple:
        return config["configurable"]["user"], config["metadata"]["team"], "mine" in config["tags"]

    llm = HealthAwareFallbacks(
        {"a": RunnableLambda(down), "b": RunnableLambda(echo_config)}, middleware=make_mw("a", "b")
    )
    config = {"configurable": {"user": "u1"}, "metadata": {"team": "t1"}, "tags": ["mine"]}
    assert llm.invoke("q", config=config) == ("u1", "t1", True)


async def test_cancelled_trial_call_gives_the_half_open_permit_back(make_mw, clock: ManualClock):
    started = asyncio.Event()
    state = {"down": True}

    async def primary(_: object) -> str:
        if state["down"]:
            raise HTTPError(503)
        started.set()
        await asyncio.sleep(30)
        return "a"

    llm = HealthAwareFallbacks(
        {"a": RunnableLambda(primary), "b": RunnableLambda(lambda _: "b")},
        middleware=make_mw("a", "b", base_ejection_s=10.0),
    )
    for _ in range(2):
        assert await llm.ainvoke("q") == "b"
    assert llm.middleware.failover.state("a") is CircuitState.OPEN
    state["down"] = False
    clock.advance(10.5)
    task = asyncio.create_task(llm.ainvoke("q"))  # the half-open trial call, cancelled by its caller
    await started.wait()
    assert llm.middleware.failover.unavailable_reason("a") is not None  # its only permit is out
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert llm.middleware.failover.unavailable_reason("a") is None  # given back: the next call can probe
