"""The plugin time budget: a slow third-party strategy, observer or classifier is counted and logged once.

Plugins here "take time" by moving the middleware's ManualClock (the budget reads the injected clock),
so nothing sleeps and nothing depends on the machine's speed.
"""

from __future__ import annotations

import logging
import math

import pytest

from pi_builder_middleware import (
    ConfigError,
    ErrorKind,
    HealthScorer,
    ManualClock,
    Middleware,
    Outcome,
    Provider,
    RouteRequest,
    Strategy,
    hookimpl,
)

PROVIDERS = [Provider(id="a"), Provider(id="b")]
BUDGET_LOG = "pi_builder_middleware.plugins"


class SlowObserver:
    """Takes ``seconds`` of (manual) time on every outcome and decision."""

    def __init__(self, clock: ManualClock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds

    @hookimpl
    def pbm_on_outcome(self, outcome, error_kind):
        self.clock.advance(self.seconds)

    @hookimpl
    def pbm_on_decision(self, decision):
        self.clock.advance(self.seconds)


class QuickObserver:
    def __init__(self) -> None:
        self.seen = 0

    @hookimpl
    def pbm_on_outcome(self, outcome, error_kind):
        self.seen += 1


class SlowStrategy(Strategy):
    name = "slow"

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock

    def rank(self, candidates, request, ctx):
        self.clock.advance(0.3)
        return [1.0 for _ in candidates]


class SlowScorer(HealthScorer):
    name = "slow-scorer"

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock

    def score(self, candidate):
        self.clock.advance(0.2)
        return 1.0


def budget_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == BUDGET_LOG and "budget" in r.getMessage()]


def test_a_slow_observer_is_counted_and_logged_once(clock, caplog):
    slow, quick = SlowObserver(clock, 0.2), QuickObserver()
    mw = Middleware(PROVIDERS, clock=clock, plugins=[slow, quick], plugin_budget_s=0.1, load_entrypoints=False)
    with caplog.at_level(logging.WARNING, logger=BUDGET_LOG):
        for _ in range(3):
            mw.record(Outcome("a", True, 0.1))
    name = f"{__name__}.SlowObserver.pbm_on_outcome"
    assert mw.stats()["plugin_slow_calls"] == {
        name: {"calls": 3, "total_s": pytest.approx(0.6), "max_s": pytest.approx(0.2)}
    }
    assert mw.stats()["plugin_budget_s"] == 0.1
    [line] = budget_lines(caplog)
    assert name in line and "200.0 ms" in line and "100.0 ms budget" in line
    assert quick.seen == 3  # the quick one ran every time and is not reported
    mw.select()
    assert f"{__name__}.SlowObserver.pbm_on_decision" in mw.stats()["plugin_slow_calls"]
    assert mw.export()["plugins"]["slow_calls"] == mw.stats()["plugin_slow_calls"]


def test_a_slow_strategy_is_reported_under_its_name(clock, caplog):
    mw = Middleware(PROVIDERS, strategy=SlowStrategy(clock), clock=clock, plugin_budget_s=0.1, load_entrypoints=False)
    with caplog.at_level(logging.WARNING, logger=BUDGET_LOG):
        assert mw.select().provider.id in ("a", "b")
        mw.select(RouteRequest(strategy="failover"))  # a built-in for this request: not timed
        mw.select()
    assert mw.stats()["plugin_slow_calls"] == {
        "strategy:slow": {"calls": 2, "total_s": pytest.approx(0.6), "max_s": pytest.approx(0.3)}
    }
    assert len(budget_lines(caplog)) == 1


def test_a_slow_health_scorer_inside_a_built_in_strategy_is_found(clock):
    mw = Middleware(
        PROVIDERS,
        strategy="failover",
        health_scorer=SlowScorer(clock),
        clock=clock,
        plugin_budget_s=0.1,
        load_entrypoints=False,
    )
    mw.select()  # the built-in failover strategy asks the health scorer about every candidate
    [name] = mw.stats()["plugin_slow_calls"]
    assert name == "strategy:failover with health scorer:slow-scorer"


def test_a_slow_classifier_is_timed_even_when_it_raises(clock):
    class SlowFailingClassifier:
        @hookimpl
        def pbm_classify_error(self, error, provider):
            clock.advance(0.5)
            raise RuntimeError("classifier bug")

    mw = Middleware(
        PROVIDERS, clock=clock, plugins=[SlowFailingClassifier()], plugin_budget_s=0.1, load_entrypoints=False
    )
    assert mw.record(Outcome("a", False, 0.1, error=TimeoutError())) is ErrorKind.TIMEOUT  # the built-in answered
    [(name, slow)] = mw.stats()["plugin_slow_calls"].items()
    assert name.endswith("SlowFailingClassifier.pbm_classify_error") and slow["calls"] == 1
    assert sum(mw.plugins.failures.values()) == 1


def test_within_budget_or_with_the_budget_off_nothing_is_reported(clock, caplog):
    with caplog.at_level(logging.WARNING, logger=BUDGET_LOG):
        within = Middleware(
            PROVIDERS, clock=clock, plugins=[SlowObserver(clock, 0.05)], plugin_budget_s=0.1, load_entrypoints=False
        )
        off = Middleware(
            PROVIDERS, clock=clock, plugins=[SlowObserver(clock, 5.0)], plugin_budget_s=None, load_entrypoints=False
        )
        for mw in (within, off):
            mw.record(Outcome("a", True, 0.1))
            mw.select()
            assert mw.stats()["plugin_slow_calls"] == {}
    assert budget_lines(caplog) == []


@pytest.mark.parametrize("budget", [0, -1, math.nan, math.inf, "0.1", True])
def test_the_budget_must_be_a_positive_finite_number_or_none(budget):
    with pytest.raises(ConfigError) as info:
        Middleware(PROVIDERS, plugin_budget_s=budget, load_entrypoints=False)
    assert info.value.field == "plugin_budget_s"
