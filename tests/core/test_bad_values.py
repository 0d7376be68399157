"""Bad values must not poison state (issue 10): each input that used to overflow a total, freeze the
window or escape as a raw Python error is refused with a ConfigError naming the field, or absorbed.

Names added by these fixes (the bounds) are imported inside the tests that need them, so that every
test here fails on the code before its fix for its own reason rather than at import.
"""

from __future__ import annotations

import json
import math

import pytest

import pi_builder_middleware
from pi_builder_middleware import (
    AlertKind,
    ConfigError,
    ErrorKind,
    FailoverConfig,
    FailoverManager,
    HealthMonitor,
    HealthScorer,
    ManualClock,
    Middleware,
    MonitorConfig,
    Outcome,
    Provider,
    RouteRequest,
    Strategy,
    Usage,
    parse_retry_after,
)
from pi_builder_middleware.errorinfo import RETRY_AFTER_LIMIT_S

HUGE = 10**400  # an int no float can hold


def field_of(call) -> str:
    with pytest.raises(ConfigError) as info:
        call()
    assert info.value.message.strip()
    return info.value.field


@pytest.fixture
def mw(clock):
    return Middleware(
        [Provider(id="a", cost_per_1k_input=0.001), Provider(id="b")],
        clock=clock,
        monitor=MonitorConfig(window_s=60),
        failover=FailoverConfig(consecutive_failures=1000),
        load_entrypoints=False,
        seed=1,
    )


def strict_json(data: object) -> str:
    return json.dumps(data, allow_nan=False)


# -- huge latency / cost -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"latency_s": 1e308}, "Outcome.latency_s"),
        ({"latency_s": HUGE}, "Outcome.latency_s"),
        ({"ttft_s": 1e308}, "Outcome.ttft_s"),
        ({"cost": 1e308}, "Outcome.cost"),
        ({"cost": HUGE}, "Outcome.cost"),
        ({"at": HUGE}, "Outcome.at"),
        ({"retry_after_s": HUGE}, "Outcome.retry_after_s"),
    ],
)
def test_an_absurd_outcome_number_is_a_config_error(kwargs, field):
    assert field_of(lambda: Outcome("a", True, **kwargs)) == field


def test_outcomes_at_the_bounds_leave_no_trace_once_they_left_the_window(mw, clock):
    from pi_builder_middleware import MAX_COST, MAX_LATENCY_S

    # The scenario, with the largest values still accepted (1e308 is refused above).
    for _ in range(2):
        mw.record(Outcome("a", True, MAX_LATENCY_S, cost=MAX_COST))
    clock.advance(120)
    for _ in range(20):
        mw.record(Outcome("a", True, 0.01, cost=0.5))
        clock.advance(0.1)
    health = mw.health("a")
    assert health.cost_total == 10.0 and health.latency_avg_ms == pytest.approx(10.0)
    assert AlertKind.HIGH_LATENCY not in mw.monitor._windows["a"].active_alerts
    strict_json(mw.export())


def test_provider_prices_are_bounded_and_a_computed_cost_is_capped(clock):
    from pi_builder_middleware import MAX_COST, MAX_TOKENS

    assert field_of(lambda: Provider(id="x", cost_per_1k_input=1e308)) == "Provider.cost_per_1k_input"
    pricey = Provider(id="x", cost_per_1k_input=MAX_COST, cost_per_1k_output=MAX_COST)
    mw = Middleware([pricey], clock=clock, load_entrypoints=False)
    for _ in range(3):  # each costs 2e15 at these prices: recorded as MAX_COST
        mw.record(Outcome("x", True, 0.1, input_tokens=MAX_TOKENS, output_tokens=MAX_TOKENS))
    assert mw.health("x").cost_total == 3 * MAX_COST
    strict_json(mw.export())


def test_an_outlier_that_leaves_the_window_leaves_no_rounding_residue(clock):
    # 1e6 + 0.1 + ... - 1e6 is not the sum of the 0.1s in floats; the totals are recounted exactly
    # when a sample that made up most of them leaves.
    mon = HealthMonitor(MonitorConfig(window_s=60, min_samples=5), clock=clock)
    mon.add_provider(Provider(id="a"))
    mon.record(Outcome("a", True, 3600.0, ttft_s=3000.0), None, 1e6)
    costs, latencies, ttfts = [], [], []
    for i in range(1, 21):
        clock.advance(1)
        costs.append(0.1 * i)
        latencies.append(0.003 * i)
        ttfts.append(0.001 * i)
        mon.record(Outcome("a", True, latencies[-1], ttft_s=ttfts[-1]), None, costs[-1])
    clock.advance(40.5)  # the outlier (t=0) leaves; the others (t=1..20) stay
    m = mon.metrics("a")
    assert m["calls"] == 20
    assert m["cost_total"] == math.fsum(costs)
    w = mon._windows["a"]
    assert (w.latency_ok_sum, w.ttft_sum) == (math.fsum(latencies), math.fsum(ttfts))
    assert AlertKind.HIGH_LATENCY not in w.active_alerts


# -- Outcome.at from another clock ---------------------------------------------------------------------


def test_an_outcome_stamped_with_wall_time_is_refused_and_the_window_keeps_moving(mw, clock):
    wall_time = 1.7e9  # time.time() while the middleware runs on ManualClock(1000) (or time.monotonic())
    for _ in range(5):
        with pytest.raises(ConfigError) as info:
            mw.record(Outcome("a", False, 0.1, error_kind=ErrorKind.SERVER_ERROR, at=wall_time))
        assert info.value.field == "Outcome.at" and "max_clock_skew_s" in info.value.message
    assert mw.health("a").calls == 0  # refused before anything was counted
    # The outage, stamped correctly, then an hour: the 60 s window has forgotten it.
    for _ in range(5):
        mw.record(Outcome("a", False, 0.1, error_kind=ErrorKind.SERVER_ERROR, at=clock()))
    assert mw.health("a").failures == 5
    clock.advance(3600)
    assert mw.health("a").calls == 0


def test_an_outcome_slightly_ahead_of_the_clock_counts_as_now(mw, clock):
    mw.record(Outcome("a", False, 0.1, error_kind=ErrorKind.SERVER_ERROR, at=clock() + 30))
    assert mw.health("a").failures == 1
    clock.advance(61)  # 30 s ahead would still be in a 60 s window now; taken as "now", it is out
    assert mw.health("a").calls == 0


def test_the_clock_skew_tolerance_is_configurable(clock):
    assert field_of(lambda: MonitorConfig(max_clock_skew_s=math.inf)) == "MonitorConfig.max_clock_skew_s"
    mon = HealthMonitor(MonitorConfig(window_s=3600, max_clock_skew_s=2000), clock=clock)
    mon.add_provider(Provider(id="a"))
    mon.record(Outcome("a", True, 0.1, at=clock() - 1000), None, 0.0)
    assert mon.metrics("a")["calls"] == 1
    with pytest.raises(ConfigError):
        mon.record(Outcome("a", True, 0.1, at=clock() - 2001), None, 0.0)


# -- raw Python errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: RouteRequest(input_tokens=HUGE), "RouteRequest.input_tokens"),
        (lambda: RouteRequest(output_tokens=1e300), "RouteRequest.output_tokens"),
        (lambda: RouteRequest(max_latency_ms=HUGE), "RouteRequest.max_latency_ms"),
        (lambda: RouteRequest(timeout_s=1e300), "RouteRequest.timeout_s"),
        (lambda: Outcome("a", True, input_tokens=HUGE), "Outcome.input_tokens"),
        (lambda: Usage(input_tokens=HUGE), "Usage.input_tokens"),
        (lambda: Usage(output_tokens="12"), "Usage.output_tokens"),
        (lambda: Usage(cost=math.nan), "Usage.cost"),
    ],
)
def test_huge_or_malformed_numbers_in_requests_are_config_errors(call, field):
    assert field_of(call) == field


def test_record_and_select_refuse_what_is_not_an_outcome_or_request(mw, clock):
    outcome = {"provider_id": "a", "ok": True}
    assert field_of(lambda: mw.record(outcome)) == "outcome"
    assert field_of(lambda: mw.select({"stream": True})) == "request"
    assert field_of(lambda: mw.select({})) == "request"  # an empty dict is not "no request"
    assert field_of(lambda: mw.execute(lambda p: "x", {"strategy": "failover"})) == "request"
    assert field_of(lambda: mw.monitor.record(outcome)) == "outcome"
    assert field_of(lambda: mw.router.select(outcome)) == "request"


def test_stream_must_be_true_or_false():
    for value in ("yes", "False", 1, None):
        assert field_of(lambda value=value: RouteRequest(stream=value)) == "RouteRequest.stream"
    assert RouteRequest(stream=True).stream is True


def test_parse_retry_after_bounds_an_int_no_float_can_hold(mw):
    assert parse_retry_after(HUGE) == RETRY_AFTER_LIMIT_S  # "wait forever" reads as the longest wait allowed
    assert parse_retry_after(10**300) == RETRY_AFTER_LIMIT_S

    class Limited(Exception):
        retry_after = HUGE

    assert (
        mw.record(Outcome("a", False, 0.1, error=Limited(), error_kind=ErrorKind.RATE_LIMITED))
        is ErrorKind.RATE_LIMITED
    )
    assert mw.failover.stats()["providers"]["a"]["cooldown_for_s"] <= FailoverConfig().max_rate_limit_cooldown_s


@pytest.mark.parametrize(
    "call",
    [
        lambda: ManualClock(math.nan),
        lambda: ManualClock(HUGE),
        lambda: ManualClock(0).advance(math.inf),
        lambda: ManualClock(0).advance(math.nan),
        lambda: ManualClock(0).set(math.nan),
        lambda: ManualClock(0).set(math.inf),
        lambda: ManualClock(1e308).advance(1e308),
    ],
)
def test_manual_clock_refuses_non_finite_time(call):
    assert field_of(call).startswith("ManualClock.")


# -- the same class of defect elsewhere ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda mw: mw.execute(lambda p: "x", max_wait_s=math.nan), "max_wait_s"),
        (lambda mw: mw.execute(lambda p: "x", max_wait_s=math.inf), "max_wait_s"),
        (lambda mw: mw.execute(lambda p: "x", max_wait_s=-1), "max_wait_s"),
        (lambda mw: mw.execute(lambda p: "x", max_wait_s="5"), "max_wait_s"),
        (lambda mw: mw.monitor.trend("a", intervals="3"), "intervals"),
        (lambda mw: mw.monitor.trend("a", intervals=HUGE), "intervals"),
        (lambda mw: mw.monitor.trend("a", interval_s=math.inf), "interval_s"),
        (lambda mw: mw.monitor.trend("a", interval_s=math.nan), "interval_s"),
        (lambda mw: mw.monitor.record(Outcome("a", True), ErrorKind.SERVER_ERROR, 1e308), "cost"),
        (lambda mw: mw.monitor.record(Outcome("a", False), "server_error", 0.0), "error_kind"),
        (lambda mw: mw.failover.record("a", "no"), "ok"),
        (lambda mw: mw.failover.record("a", False, "server_error"), "kind"),
        (lambda mw: mw.failover.record("a", False, ErrorKind.RATE_LIMITED, math.nan), "retry_after_s"),
        (lambda mw: Middleware([Provider(id="a")], history_size=HUGE), "history_size"),
        (lambda mw: FailoverManager(FailoverConfig(max_events=HUGE)), "FailoverConfig.max_events"),
    ],
)
def test_other_entry_points_refuse_bad_numbers_and_types(mw, call, field):
    assert field_of(lambda: call(mw)) == field


async def test_health_checks_and_timeouts_refuse_non_finite_seconds(mw):
    async def probe(provider):
        return True

    assert field_of(lambda: mw.start_health_checks(probe, interval_s=math.nan)) == "interval_s"
    assert field_of(lambda: mw.start_health_checks(probe, interval_s=1.0, timeout_s=math.inf)) == "timeout_s"
    with pytest.raises(ConfigError) as info:
        await mw.aexecute_open(probe, timeout_s=math.nan)
    assert info.value.field == "timeout_s"
    await mw.stop_health_checks()


def test_a_usage_callback_that_returns_junk_still_records_the_success(mw):
    answer = mw.execute(lambda p: "answer", RouteRequest(strategy="failover"), usage=lambda r: {"input_tokens": 3})
    assert answer == "answer"  # the provider answered: a broken usage callback costs its tokens, not the answer
    assert mw.health("a").successes == 1
    assert mw.router.in_flight("a") == 0
    assert mw.stats()["callback_failures"] == {"usage": 1}


def test_bounds_are_public():
    for name in ("MAX_COST", "MAX_LATENCY_S", "MAX_TOKENS"):
        assert name in pi_builder_middleware.__all__


# -- export()/health() are O(providers) -------------------------------------------------------------


def test_export_reads_each_breaker_and_each_window_once(clock, monkeypatch):
    n = 40
    mw = Middleware([Provider(id=f"p{i}") for i in range(n)], clock=clock, load_entrypoints=False, seed=1)
    for i in range(n):
        mw.record(Outcome(f"p{i}", i % 3 != 0, 0.1, error_kind=ErrorKind.SERVER_ERROR))
    reads = {"breaker": 0, "window": 0}

    def counting(name, original):
        def spy(*args, **kwargs):
            reads[name] += 1
            return original(*args, **kwargs)

        return spy

    # Spies that call through: the real breakers and windows answer.
    monkeypatch.setattr(FailoverManager, "_refresh", counting("breaker", FailoverManager._refresh))
    monkeypatch.setattr(HealthMonitor, "metrics", counting("window", HealthMonitor.metrics))
    exported = mw.export()
    assert len(exported["health"]) == n
    assert reads == {"breaker": n, "window": n}  # was n * (n + 2) breaker refreshes and 2n percentile passes
    reads.update(breaker=0, window=0)
    mw.health("p7")
    assert reads == {"breaker": 1, "window": 1}
    strict_json(exported)


# -- bad values from plugins ---------------------------------------------------------------------------


class NonFinite(Strategy):
    name = "non-finite"

    def __init__(self, value: float) -> None:
        self.value = value

    def rank(self, candidates, request, ctx):
        return [self.value] + [0.5] * (len(candidates) - 1)


class Broken(Strategy):
    name = "broken"

    def rank(self, candidates, request, ctx):
        raise RuntimeError("strategy bug")


class BrokenScorer(HealthScorer):
    name = "broken-scorer"

    def score(self, candidate):
        raise RuntimeError("scorer bug")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_strategy_returning_non_finite_scores_counts_as_failed(clock, value):
    mw = Middleware(
        [Provider(id="a"), Provider(id="b")], strategy=NonFinite(value), clock=clock, load_entrypoints=False
    )
    decision = mw.select()
    assert all(math.isfinite(s) for s in decision.scores.values())  # ranked by the health scorer instead
    assert mw.stats()["router"]["strategy_failures"] == 1
    strict_json(mw.export())


def test_a_failing_strategy_with_a_failing_health_scorer_still_routes(clock):
    mw = Middleware(
        [Provider(id="a"), Provider(id="b")],
        strategy=Broken(),
        health_scorer=BrokenScorer(),
        clock=clock,
        load_entrypoints=False,
    )
    assert mw.select().provider.id == "a"  # the providers' own order
    strict_json(mw.export())
