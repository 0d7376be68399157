"""What a provider reports cannot lose an answer the LangChain adapter already has (invoke and streams)."""

from __future__ import annotations

import pytest
from lc_fakes import HTTPError, ScriptedChat, call
from pi_builder_middleware.adapters.langchain import HealthAwareFallbacks

from pi_builder_middleware import (
    Alert,
    AlertThresholds,
    CircuitState,
    ErrorKind,
    ManualClock,
    MonitorConfig,
    Outcome,
)


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream"])
def test_negative_token_counts_never_fail_an_answer_and_the_trial_still_counts(make_mw, clock: ManualClock, mode):
    broken = {"input_tokens": -7, "output_tokens": 3, "total_tokens": -4}
    a, b = ScriptedChat(key="a", reported_usage=broken), ScriptedChat(key="b")
    mw = make_mw("a", "b", base_ejection_s=10.0, recovery_successes=1)
    for _ in range(2):
        mw.record(Outcome("a", False, 0.1, error_kind=ErrorKind.SERVER_ERROR))
    clock.advance(10.5)
    assert mw.failover.state("a") is CircuitState.HALF_OPEN
    llm = HealthAwareFallbacks({"a": a, "b": b}, middleware=mw)

    assert call(llm, mode) == "a says hi"
    assert mw.failover.state("a") is CircuitState.CLOSED  # the trial's success was recorded
    health = mw.health("a")
    # counts are clamped into 0..MAX_TOKENS: the negative one reads 0, the usable one is kept
    assert (health.successes, health.tokens_in, health.tokens_out) == (1, 0, 3)
    assert mw.monitor.candidate("a").inflight == 0


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream"])
def test_an_alert_subscriber_that_raises_never_fails_the_call(make_mw, mode):
    a, b = ScriptedChat(key="a", fail=HTTPError(503)), ScriptedChat(key="b")
    mw = make_mw("a", "b")
    mw.monitor.config = MonitorConfig(min_samples=1, alerts=AlertThresholds(min_samples=1))

    def broken(alert: Alert) -> None:
        raise RuntimeError("subscriber bug")

    mw.subscribe_alerts(broken)
    llm = HealthAwareFallbacks({"a": a, "b": b}, middleware=mw)
    assert [call(llm, mode) for _ in range(2)] == ["b says hi", "b says hi"]
    assert mw.failover.state("a") is CircuitState.OPEN  # both failures reached the breaker
    assert mw.stats()["callback_failures"]["alert_subscriber"] >= 1
