"""Plugins: registration hooks, overriding built-ins, classification, observers, faulty plugins."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pi_builder_middleware import (
    AlertKind,
    CircuitState,
    ConfigError,
    ErrorKind,
    FailoverConfig,
    FailoverPolicy,
    HealthScorer,
    HealthStatus,
    Middleware,
    Outcome,
    Provider,
    RouteRequest,
    Strategy,
    hookimpl,
)
from pi_builder_middleware import hookspecs as hookspecs_module

PROVIDERS = [Provider(id="a", quality=0.9), Provider(id="b", quality=0.1)]


class Reverse(Strategy):
    name = "reverse-quality"

    def rank(self, candidates, request, ctx):
        return [1.0 - c.provider.quality for c in candidates]


class StrategyPlugin:
    @hookimpl
    def pbm_register_strategies(self, registry):
        registry.add(Reverse())


class OverrideQuality:
    """Replaces the built-in 'quality-optimal' by name."""

    class Lowest(Strategy):
        name = "quality-optimal"

        def rank(self, candidates, request, ctx):
            return [1.0 - c.provider.quality for c in candidates]

    @hookimpl
    def pbm_register_strategies(self, registry):
        registry.add(self.Lowest())


class QuotaExceeded(Exception):
    pass


class ClassifierPlugin:
    @hookimpl
    def pbm_classify_error(self, error, provider):
        if isinstance(error, QuotaExceeded):
            return ErrorKind.RATE_LIMITED
        return None


class Recorder:
    def __init__(self):
        self.outcomes, self.decisions, self.changes, self.alerts = [], [], [], []

    @hookimpl
    def pbm_on_outcome(self, outcome, error_kind):
        self.outcomes.append((outcome.provider_id, error_kind))

    @hookimpl
    def pbm_on_decision(self, decision):
        self.decisions.append(decision.provider.id)

    @hookimpl
    def pbm_on_health_change(self, event):
        self.changes.append((event.provider_id, event.new))

    @hookimpl
    def pbm_on_alert(self, alert):
        self.alerts.append((alert.provider_id, alert.kind))


class Exploding:
    """Raises in every hook."""

    @hookimpl(tryfirst=True)
    def pbm_register_strategies(self, registry):
        raise RuntimeError("boom strategies")

    @hookimpl(tryfirst=True)
    def pbm_register_health_scorers(self, registry):
        raise RuntimeError("boom scorers")

    @hookimpl(tryfirst=True)
    def pbm_register_failover_policies(self, registry):
        raise RuntimeError("boom policies")

    @hookimpl(tryfirst=True)
    def pbm_classify_error(self, error, provider):
        raise RuntimeError("boom classify")

    @hookimpl
    def pbm_on_outcome(self, outcome, error_kind):
        raise RuntimeError("boom outcome")

    @hookimpl
    def pbm_on_decision(self, decision):
        raise RuntimeError("boom decision")

    @hookimpl
    def pbm_on_health_change(self, event):
        raise RuntimeError("boom health")

    @hookimpl
    def pbm_on_alert(self, alert):
        raise RuntimeError("boom alert")


class BrokenStrategy(Strategy):
    name = "broken"

    def rank(self, candidates, request, ctx):
        raise ZeroDivisionError("oops")


class BrokenStrategyPlugin:
    @hookimpl
    def pbm_register_strategies(self, registry):
        registry.add(BrokenStrategy())


def test_third_party_strategy_selected_by_name():
    mw = Middleware(providers=PROVIDERS, strategy="reverse-quality", plugins=[StrategyPlugin()])
    assert mw.select().provider.id == "b"
    assert "reverse-quality" in mw.registries.strategies.names()
    assert mw.select(RouteRequest(strategy="quality-optimal")).provider.id == "a"


def test_third_party_overrides_builtin_by_name():
    mw = Middleware(providers=PROVIDERS, strategy="quality-optimal", plugins=[OverrideQuality()])
    assert mw.select().provider.id == "b"
    assert not mw.registries.strategies.is_builtin("quality-optimal")
    assert mw.registries.strategies.is_builtin("cost-optimal")


def test_two_plugins_same_name_is_reported_not_fatal(caplog):
    with caplog.at_level(logging.ERROR):
        mw = Middleware(providers=PROVIDERS, strategy="reverse-quality", plugins=[StrategyPlugin(), StrategyPlugin()])
    assert any("two plugins register a strategy named 'reverse-quality'" in r.message for r in caplog.records)
    assert sum(mw.plugins.failures.values()) == 1
    assert mw.select().provider.id == "b"


def test_classifier_plugin_answers_before_builtin():
    mw = Middleware(providers=PROVIDERS, plugins=[ClassifierPlugin()])
    assert mw.classify(QuotaExceeded("over quota"), "a") is ErrorKind.RATE_LIMITED
    assert mw.classify(TimeoutError(), "a") is ErrorKind.TIMEOUT  # plugin said None: built-in decides
    mw.record(Outcome("a", False, 0.0, error=QuotaExceeded()))
    assert mw.failover.unavailable_reason("a") == "rate limited for 0.2 s more"  # no Retry-After: 0.25 s backoff
    assert mw.failover.state("a") is CircuitState.CLOSED


def test_a_classifier_returning_garbage_is_counted_and_the_next_one_asked():
    class Unhashable:
        def __hash__(self) -> int:
            raise RuntimeError("no hash")

    class Garbage:
        def __init__(self, result: object) -> None:
            self.result = result

        @hookimpl(tryfirst=True)
        def pbm_classify_error(self, error, provider):
            return self.result

    for result in (42, "teapot", [ErrorKind.AUTH], Unhashable()):
        plugin = Garbage(result)
        mw = Middleware(providers=PROVIDERS, plugins=[plugin], load_entrypoints=False)
        assert mw.execute(lambda p: p.id) == "a"
        assert mw.classify(TimeoutError(), "a") is ErrorKind.TIMEOUT  # the built-in's answer
        assert mw.plugins.failures[f"{mw.plugins.pm.get_name(plugin)}.pbm_classify_error"] == 1
    mw = Middleware(providers=PROVIDERS, plugins=[Garbage("rate_limited")], load_entrypoints=False)
    assert mw.classify(TimeoutError(), "a") is ErrorKind.RATE_LIMITED  # the value of a kind is an answer


def test_observers_see_outcomes_decisions_health_and_alerts():
    rec = Recorder()
    mw = Middleware(providers=PROVIDERS, plugins=[rec], failover=FailoverConfig.preset("aggressive"))
    mw.select()
    for _ in range(5):
        mw.record(Outcome("a", True, 0.1))
    mw.record(Outcome("a", False, 0.1, error=TimeoutError()))
    mw.record(Outcome("a", False, 0.1, error=TimeoutError()))
    assert rec.decisions == ["a"]
    assert rec.outcomes[-1] == ("a", ErrorKind.TIMEOUT)
    assert ("a", HealthStatus.HEALTHY) in rec.changes
    assert ("a", HealthStatus.OFFLINE) in rec.changes  # breaker opened
    assert ("a", AlertKind.UNAVAILABLE) in rec.alerts


def test_faulty_plugin_never_breaks_a_request(caplog):
    rec = Recorder()
    with caplog.at_level(logging.ERROR):
        mw = Middleware(
            providers=PROVIDERS,
            strategy="quality-optimal",
            plugins=[Exploding(), rec],
            failover=FailoverConfig.preset("aggressive"),
        )
        assert mw.execute(lambda p: p.id) == "a"
        for _ in range(3):
            mw.record(Outcome("a", False, 0.1, error=TimeoutError()))
    # every hook raised once or more, was logged and counted, and the built-ins carried on
    failed_hooks = {key.split(".")[-1] for key in mw.plugins.failures}
    assert failed_hooks == {
        "pbm_register_strategies",
        "pbm_register_health_scorers",
        "pbm_register_failover_policies",
        "pbm_classify_error",
        "pbm_on_outcome",
        "pbm_on_decision",
        "pbm_on_health_change",
        "pbm_on_alert",
    }
    assert mw.failover.state("a") is CircuitState.OPEN  # classification fell back to the built-in TIMEOUT
    assert rec.outcomes[-1] == ("a", ErrorKind.TIMEOUT)  # other observers still called
    assert any("boom outcome" in r.message for r in caplog.records)
    assert mw.stats()["plugin_failures"]


def test_a_plugin_or_strategy_failing_on_every_request_is_logged_once_and_counted_each_time(caplog):
    mw = Middleware(providers=PROVIDERS, strategy="broken", plugins=[BrokenStrategyPlugin(), Exploding()])
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        for _ in range(5):
            assert mw.execute(lambda p: p.id) == "a"
    assert [n for key, n in mw.plugins.failures.items() if key.endswith(".pbm_on_outcome")] == [5]
    assert mw.router.statistics()["strategy_failures"] == 5
    assert len([r for r in caplog.records if "pbm_on_outcome" in r.getMessage()]) == 1
    assert len([r for r in caplog.records if "strategy 'broken' failed" in r.getMessage()]) == 1


def test_broken_strategy_falls_back_to_health_ranking(caplog):
    mw = Middleware(providers=PROVIDERS, strategy="broken", plugins=[BrokenStrategyPlugin()])
    with caplog.at_level(logging.ERROR):
        decision = mw.select()
    assert decision.provider.id == "a"
    assert mw.router.statistics()["strategy_failures"] == 1
    assert "strategy 'broken' failed" in caplog.text


class Scripted(Strategy):
    """Returns the scores it is given, by provider id."""

    name = "scripted"

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def rank(self, candidates, request, ctx):
        return [self.scores[c.provider.id] for c in candidates]


@pytest.mark.parametrize("odd", [float("nan"), float("inf"), float("-inf")])
def test_a_score_that_is_not_a_finite_number_is_a_strategy_failure(odd, caplog):
    mw = Middleware(
        providers=[Provider(id=pid) for pid in "abc"],
        strategy=Scripted({"a": 0.1, "b": odd, "c": 0.9}),
        load_entrypoints=False,
    )
    for pid in "ab":  # health ranking (the fallback) puts c first
        mw.record(Outcome(pid, False, 0.1, error=TimeoutError()))
    with caplog.at_level(logging.ERROR):
        decision = mw.select()
    assert decision.provider.id == "c"
    assert [p.id for p in decision.providers] == ["c", "a", "b"]
    assert mw.router.statistics()["strategy_failures"] == 1
    assert "not a finite number" in caplog.text


def test_a_health_scorer_that_fails_too_leaves_the_given_order():
    class Broken(HealthScorer):
        name = "broken-scorer"

        def __init__(self, value: float | None) -> None:
            self.value = value

        def score(self, candidate):
            if self.value is None:
                raise RuntimeError("scorer bug")
            return self.value

    for value in (None, float("nan")):
        mw = Middleware(
            providers=[Provider(id=pid) for pid in "abc"],
            strategy=Scripted({"a": 0.1, "b": 0.5}),
            health_scorer=Broken(value),
            load_entrypoints=False,
        )  # type: ignore[arg-type]
        assert [p.id for p in mw.select().providers] == ["a", "b", "c"]  # KeyError 'c' in the strategy
        assert mw.router.statistics()["strategy_failures"] == 2  # the strategy, then its fallback


def test_custom_scorer_and_policy_plugins():
    class Pessimist(HealthScorer):
        name = "pessimist"

        def score(self, candidate):
            return 0.0 if candidate.provider.id == "a" else 1.0

    class NeverTrip(FailoverPolicy):
        name = "never"

        def should_trip(self, window, config):
            return None

        def ejection_s(self, trips, config, rng):
            return 1.0

    class Plugin:
        @hookimpl
        def pbm_register_health_scorers(self, registry):
            registry.add(Pessimist())

        @hookimpl
        def pbm_register_failover_policies(self, registry):
            registry.add(NeverTrip())

    mw = Middleware(
        providers=PROVIDERS,
        strategy="failover",
        health_scorer="pessimist",
        failover=FailoverConfig(policy="never"),
        plugins=[Plugin()],
    )
    assert mw.select().provider.id == "b"
    for _ in range(50):
        mw.record(Outcome("b", False, 0.1, error=TimeoutError()))
    assert mw.failover.state("b") is CircuitState.CLOSED
    with pytest.raises(ConfigError, match="unknown failover policy 'nope'"):
        Middleware(providers=PROVIDERS, failover=FailoverConfig(policy="nope"))


def test_wrong_registration_type_is_a_plugin_error_not_a_crash():
    class Bad:
        @hookimpl
        def pbm_register_strategies(self, registry):
            registry.add(object())

    mw = Middleware(providers=PROVIDERS, plugins=[Bad()])
    assert sum(mw.plugins.failures.values()) == 1
    assert mw.select().provider.id in {"a", "b"}


def test_blocking_builtin_plugins(monkeypatch):
    monkeypatch.setenv("PI_BUILDER_BLOCK_PLUGINS", "pi_builder_middleware.plugins.classify")
    mw = Middleware(providers=PROVIDERS)
    assert mw.classify(TimeoutError(), "a") is ErrorKind.UNKNOWN  # no classifier left: host default
    with pytest.raises(ConfigError, match="unknown strategy 'cost-optimal'"):
        Middleware(
            providers=PROVIDERS, strategy="cost-optimal", blocked_plugins=["pi_builder_middleware.plugins.strategies"]
        )


def test_every_hook_has_a_builtin_and_a_test():
    import importlib

    from pi_builder_middleware.pluginmanager import BUILTIN_PLUGINS

    specs = [n for n in dir(hookspecs_module) if n.startswith("pbm_")]
    builtin_hooks = {n for mod in BUILTIN_PLUGINS for n in dir(importlib.import_module(mod)) if n.startswith("pbm_")}
    assert set(specs) <= builtin_hooks, set(specs) - builtin_hooks
    here = Path(__file__).read_text()
    for name in specs:
        assert here.count(name) >= 2, f"{name} has no test here"


def test_plugins_registered_later_are_called_and_unregistered_ones_not():
    mw = Middleware(providers=PROVIDERS, strategy="failover")
    mw.select()  # hook implementations are cached after the first call
    rec = Recorder()
    mw.plugins.pm.register(rec)
    mw.select()
    assert rec.decisions == ["a"]
    mw.plugins.pm.unregister(rec)
    mw.select()
    assert rec.decisions == ["a"]
