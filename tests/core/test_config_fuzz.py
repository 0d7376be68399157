"""Fuzzing every configuration entry point: bad input raises ConfigError naming the field, good input works.

Each generated value is tagged "ok" (the documented constraints allow it) or "bad" (NaN, infinities,
out of range, wrong type, unknown key, ...). The oracle: with nothing bad, construction succeeds;
with something bad, the one exception is a :class:`ConfigError` (also a ``PiBuilderError`` and a
``ValueError``) whose ``field`` names one of the bad settings and whose message is not empty.
Values whose fate is a matter of taste (``"3"`` for an int, ``True`` for a number) are not generated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pi_builder_middleware import (
    MAX_COST,
    MAX_LATENCY_S,
    MAX_TOKENS,
    AlertThresholds,
    ConfigError,
    ErrorKind,
    FailoverConfig,
    HealthThresholds,
    ManualClock,
    Middleware,
    MonitorConfig,
    NoProviderAvailableError,
    Outcome,
    OutlierConfig,
    PiBuilderError,
    Provider,
    RouteRequest,
    Strategy,
    hookimpl,
)
from pi_builder_middleware._settings import SettingsBase

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Tagged = tuple[bool, Any]  # (is_ok, value)

NAN, INF = math.nan, math.inf
JUNK = st.sampled_from([None, "xyz", "", [1], {"a": 1}, object(), b"\x00", (), {1, 2}])
NON_FINITE = st.sampled_from([NAN, INF, -INF])
NAN_TEXT = st.sampled_from(["nan", "inf", "-inf", "infinity", "NaN"])


def ok(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Tagged]:
    return strategy.map(lambda v: (True, v))


def bad(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Tagged]:
    return strategy.map(lambda v: (False, v))


@dataclass(frozen=True)
class Choice:
    """Values a setting accepts and values it must refuse."""

    good: st.SearchStrategy[Any]
    bad: st.SearchStrategy[Any]

    @staticmethod
    def of(good: list[st.SearchStrategy[Any]], bad: list[st.SearchStrategy[Any]]) -> Choice:
        return Choice(st.one_of(good), st.one_of(bad))


def number(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    optional: bool = False,
) -> Choice:
    """A float setting within lo..hi (open ends as told); NaN, infinities, out of range and junk are bad."""

    def inside(v: float) -> bool:
        return (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or (v < hi if hi_open else v <= hi))

    good = [
        st.floats(
            lo,
            hi,
            exclude_min=lo_open and lo is not None,
            exclude_max=hi_open and hi is not None,
            allow_nan=False,
            allow_infinity=False,
        ),
        st.integers(-(10**6) if lo is None else math.ceil(lo), 10**6 if hi is None else math.floor(hi)).filter(inside),
    ]
    wrong = [
        st.just(INF),
        st.just(NAN),
        st.just(-INF),
        NAN_TEXT,
        JUNK.filter(lambda v: v is not None) if optional else JUNK,
    ]
    if lo is not None or hi is not None:
        wrong.append(st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: not inside(v)))
    if optional:
        good.append(st.none())
    return Choice.of(good, wrong)


def integer(lo: int | None = None, hi: int | None = None, *, optional: bool = False) -> Choice:
    """An int setting within [lo, hi]; fractions, NaN, out-of-range and junk are bad."""
    good = [st.integers(lo, hi), *([st.none()] if optional else [])]
    wrong = [
        st.floats(0.1, 0.9).map(lambda f: 3 + f),
        NON_FINITE,
        JUNK.filter(lambda v: v is not None) if optional else JUNK,
    ]
    if lo is not None:
        wrong.append(st.integers(max_value=lo - 1))
    if hi is not None:
        wrong.append(st.integers(min_value=hi + 1))
    return Choice.of(good, wrong)


def text(*, min_size: int = 0, optional: bool = False) -> Choice:
    good = [st.text(max_size=8, min_size=min_size), *([st.none()] if optional else [])]
    wrong = [
        st.integers(),
        st.floats(),
        st.sampled_from([True, [1], {"k": 1}, object()]),
        *([] if optional else [st.none()]),
        *([st.just("")] if min_size else []),
    ]
    return Choice.of(good, wrong)


def names(*, optional: bool = True) -> Choice:
    """A set of names: any iterable of str except a str; non-str members and scalars are bad."""
    members = st.text(max_size=6)
    good = [
        st.frozensets(members, max_size=3),
        st.lists(members, max_size=3),
        st.sets(members, max_size=3),
        *([st.none()] if optional else []),
    ]
    wrong = [
        st.text(min_size=1, max_size=6),
        st.lists(st.integers(), min_size=1, max_size=3),
        st.integers(),
        st.floats(),
        *([] if optional else [st.none()]),
    ]
    return Choice.of(good, wrong)


UNKNOWN_KEY = st.sampled_from(["foo", "consecutive_failure", "windows", "threshold", "Window_s", "id_", "x" * 40])


@dataclass(frozen=True)
class Spec:
    """One configuration surface: its factory, per-field value strategies and cross-field checks."""

    factory: Callable[..., Any]
    owner: str
    fields: Mapping[str, Choice]
    defaults: Mapping[str, Any]
    required: tuple[str, ...] = ()
    # (fields involved, predicate over the effective settings that must hold)
    relations: tuple[tuple[tuple[str, ...], Callable[[Mapping[str, Any]], bool]], ...] = ()


THRESHOLDS = Spec(
    HealthThresholds,
    "HealthThresholds",
    {name: number(0, 1) for name in HealthThresholds.FIELDS},
    HealthThresholds().to_dict(),
    relations=(
        (
            ("degraded_availability", "healthy_availability"),
            lambda c: c["degraded_availability"] <= c["healthy_availability"],
        ),
        (
            ("offline_availability", "degraded_availability"),
            lambda c: c["offline_availability"] <= c["degraded_availability"],
        ),
        (("healthy_error_rate", "degraded_error_rate"), lambda c: c["healthy_error_rate"] <= c["degraded_error_rate"]),
    ),
)

ALERTS = Spec(
    AlertThresholds,
    "AlertThresholds",
    {"high_latency_ms": number(0, None, lo_open=True), "high_error_rate": number(0, 1), "min_samples": integer(1)},
    AlertThresholds().to_dict(),
)

PROVIDER = Spec(
    Provider,
    "Provider",
    {
        "id": text(min_size=1),
        "cost_per_1k_input": number(0, MAX_COST),
        "cost_per_1k_output": number(0, MAX_COST),
        "quality": number(0, 1),
        "capabilities": names(optional=False),
        "max_context_tokens": integer(1, None, optional=True),
        "priority": integer(),
        "model": text(optional=True),
        "group": text(optional=True),
    },
    {},
    required=("id",),
)


Case = tuple[dict[str, bool], dict[str, Any]]  # (is_ok per argument, kwargs)


def kwargs_for(spec: Spec, *, unknown_keys: bool = True) -> st.SearchStrategy[Case]:
    """A random subset of the fields with tagged values, sometimes plus an unknown key."""

    @st.composite
    def build(draw: st.DrawFn) -> Case:
        chosen = draw(st.lists(st.sampled_from(sorted(spec.fields)), unique=True, max_size=len(spec.fields)))
        tags: dict[str, bool] = {}
        kwargs: dict[str, Any] = {}
        for name in [*spec.required, *(c for c in chosen if c not in spec.required)]:
            # Mostly good values, so that valid combinations are common too; shrinks towards good.
            tags[name] = draw(st.integers(0, 5)) < 5
            choice = spec.fields[name]
            kwargs[name] = draw(choice.good if tags[name] else choice.bad)
        if unknown_keys and draw(st.integers(0, 5)) == 0:
            key = draw(UNKNOWN_KEY)
            tags[key], kwargs[key] = False, draw(st.integers())
        return tags, kwargs

    return build()


def blamed_fields(spec: Spec, tags: Mapping[str, bool], kwargs: Mapping[str, Any]) -> set[str]:
    """What ConfigError may blame: bad values, plus both sides of a violated cross-field relation."""
    blamed = {name for name, is_ok in tags.items() if not is_ok}
    effective = {**spec.defaults, **kwargs}
    for involved, holds in spec.relations:
        if all(tags.get(name, True) for name in involved) and not holds(effective):
            blamed.update(involved)
    return blamed


def assert_config_error(exc: BaseException, owner: str, blamed: set[str]) -> None:
    assert type(exc) is ConfigError, f"{type(exc).__name__}: {exc}"
    assert isinstance(exc, PiBuilderError) and isinstance(exc, ValueError)
    assert exc.message.strip(), "the message must say what is wrong"
    assert str(exc) == f"{exc.field}: {exc.message}"
    head, _, rest = exc.field.partition(".")
    assert head == owner, exc.field
    assert rest.split(".")[0] in blamed, f"{exc.field!r} blamed, expected one of {sorted(blamed)}"


def run_spec(spec: Spec, case: Case) -> Any:
    tags, kwargs = case
    blamed = blamed_fields(spec, tags, kwargs)
    try:
        built = spec.factory(**kwargs)
    except Exception as exc:
        assert blamed, f"valid settings {kwargs!r} were refused: {exc!r}"
        assert_config_error(exc, spec.owner, blamed)
        return None
    assert not blamed, f"{spec.owner}({kwargs!r}) accepted although {sorted(blamed)} are invalid"
    if isinstance(built, SettingsBase):
        # A valid config round-trips through its JSON form, and every number in it is finite.
        dumped = built.to_dict()
        assert type(built)(**dumped) == built
        assert all(math.isfinite(v) for v in dumped.values() if isinstance(v, float))
    return built


def _nested(spec: Spec) -> Choice:
    """A nested model given as a dict of fuzzed values (maybe with an unknown key), an instance, or junk."""
    cases = kwargs_for(spec)
    return Choice.of(
        [cases.filter(lambda case: not blamed_fields(spec, *case)).map(lambda case: case[1]), st.builds(spec.factory)],
        [
            cases.filter(lambda case: bool(blamed_fields(spec, *case))).map(lambda case: case[1]),
            st.sampled_from([5, "x", [1]]),
        ],
    )


OUTLIER = Spec(
    OutlierConfig,
    "OutlierConfig",
    {
        "interval_s": number(0, None, lo_open=True),
        "success_rate_minimum_hosts": integer(1, None),
        "success_rate_request_volume": integer(1, None),
        "success_rate_stdev_factor": number(0, None),
        "success_rate_minimum_gap": number(0, 1),
        "failure_percentage_threshold": number(0, 100, lo_open=True, optional=True),
        "failure_percentage_request_volume": integer(1, None),
    },
    OutlierConfig().to_dict(),
)

FAILOVER = Spec(
    FailoverConfig,
    "FailoverConfig",
    {
        "policy": text(min_size=1),
        "consecutive_failures": integer(1, None),
        "failure_rate_threshold": number(0, 1, lo_open=True),
        "minimum_calls": integer(1, None),
        "window_s": number(0, None, lo_open=True),
        "base_ejection_s": number(0, None, lo_open=True),
        "ejection_multiplier": number(1, None),
        "max_ejection_s": number(0, None, lo_open=True),
        "jitter": number(0, 1, hi_open=True),
        "half_open_max_calls": integer(1, None),
        "recovery_successes": integer(1, None),
        "half_open_permit_timeout_s": number(0, None, lo_open=True),
        "rate_limit_base_cooldown_s": number(0, None),
        "default_rate_limit_cooldown_s": number(0, None),
        "max_rate_limit_cooldown_s": number(0, None),
        "rate_limit_streak_s": number(0, None),
        "rate_limit_pressure_half_life_s": number(0, None, lo_open=True),
        "trip_memory_s": number(0, None),
        "max_ejection_percent": number(0, 100, lo_open=True, optional=True),
        "outlier": _nested(OUTLIER),
        "max_events": integer(1, 1_000_000),
        "health_check_timeout_s": number(0, None, lo_open=True),
    },
    FailoverConfig().to_dict(),
    relations=(
        (("base_ejection_s", "max_ejection_s"), lambda c: c["max_ejection_s"] >= c["base_ejection_s"]),
        (
            ("default_rate_limit_cooldown_s", "max_rate_limit_cooldown_s"),
            lambda c: c["max_rate_limit_cooldown_s"] >= c["default_rate_limit_cooldown_s"],
        ),
    ),
)

MONITOR = Spec(
    MonitorConfig,
    "MonitorConfig",
    {
        "window_s": number(0, None, lo_open=True),
        "max_samples": integer(8, 1_000_000),
        "min_samples": integer(1, None),
        "max_clock_skew_s": number(0, 86_400, lo_open=True),
        "thresholds": _nested(THRESHOLDS),
        "alerts": _nested(ALERTS),
    },
    {},
)


@FUZZ
@given(case=kwargs_for(FAILOVER))
def test_failover_config(case: Case) -> None:
    run_spec(FAILOVER, case)


@FUZZ
@given(case=kwargs_for(OUTLIER))
def test_outlier_config(case: Case) -> None:
    run_spec(OUTLIER, case)


@FUZZ
@given(case=kwargs_for(THRESHOLDS))
def test_health_thresholds(case: Case) -> None:
    run_spec(THRESHOLDS, case)


@FUZZ
@given(case=kwargs_for(ALERTS))
def test_alert_thresholds(case: Case) -> None:
    run_spec(ALERTS, case)


@FUZZ
@given(case=kwargs_for(MONITOR))
def test_monitor_config(case: Case) -> None:
    run_spec(MONITOR, case)


@FUZZ
@given(case=kwargs_for(PROVIDER))
def test_provider(case: Case) -> None:
    run_spec(PROVIDER, case)


@pytest.mark.parametrize("name", ["aggressive", "balanced", "conservative"])
def test_presets_construct_and_accept_valid_overrides(name: str) -> None:
    cfg = FailoverConfig.preset(name, jitter=0.0, base_ejection_s=1.0)
    assert cfg.jitter == 0.0 and cfg.base_ejection_s == 1.0
    assert FailoverConfig.coerce(name) == FailoverConfig.preset(name)


@FUZZ
@given(
    name=st.one_of(st.text(max_size=12), st.integers(), st.none(), st.sampled_from([[], {}, 1.5, object()])),
    overrides=kwargs_for(FAILOVER),
)
def test_unknown_presets_and_bad_overrides(name: Any, overrides: Case) -> None:
    known = name in ("aggressive", "balanced", "conservative")
    try:
        FailoverConfig.preset(name, **overrides[1])
    except Exception as exc:
        assert type(exc) is ConfigError and exc.message.strip(), repr(exc)
        if not known:
            assert exc.field == "failover" and "aggressive, balanced, conservative" in exc.message
    else:
        assert known
    if name is not None and not isinstance(name, str):
        with pytest.raises(ConfigError) as info:
            FailoverConfig.coerce(name)
        assert info.value.field == "failover"


# -- RouteRequest and Outcome (frozen dataclasses, validated in __post_init__) ----------------------

ROUTE = Spec(
    RouteRequest,
    "RouteRequest",
    {
        "required_capabilities": names(),
        "max_latency_ms": number(0, None, lo_open=True, optional=True),
        "min_availability": number(0, 1, optional=True),
        "exclude": names(),
        "candidates": names(),
        "strategy": Choice(
            st.sampled_from([None, "cost-optimal", "failover", "no-such-strategy"]),
            st.sampled_from([5, 1.5, ["failover"], {"x": 1}]),
        ),
        "input_tokens": integer(0, MAX_TOKENS),
        "output_tokens": integer(0, MAX_TOKENS),
        "timeout_s": number(0, MAX_LATENCY_S, lo_open=True, optional=True),
        "stream": Choice(st.booleans(), st.sampled_from(["yes", "False", 1, 0, None, 1.5])),
    },
    {},
)


class _Boom(Exception):
    pass


OUTCOME = Spec(
    Outcome,
    "Outcome",
    {
        "provider_id": text(min_size=1),
        "ok": Choice(st.booleans(), st.sampled_from([None, "yes", "False", 1.5, [True]])),
        "latency_s": number(0, MAX_LATENCY_S),
        "ttft_s": number(0, MAX_LATENCY_S, optional=True),
        "input_tokens": integer(0, MAX_TOKENS),
        "output_tokens": integer(0, MAX_TOKENS),
        "cost": number(0, MAX_COST, optional=True),
        "error": Choice(st.sampled_from([None, _Boom("x"), TimeoutError()]), st.sampled_from(["boom", 5, _Boom])),
        "error_kind": Choice(
            st.sampled_from([None, *ErrorKind, *(k.value for k in ErrorKind)]),
            st.sampled_from(["RATE-LIMITED", "teapot", 429, 1.5, [ErrorKind.AUTH]]),
        ),
        "status_code": integer(100, 599, optional=True),
        "retry_after_s": number(0, None, optional=True),
        "probe": Choice(st.booleans(), st.sampled_from([None, "no", 0.5])),
        "at": number(optional=True),
    },
    {},
    required=("provider_id", "ok"),
)


def run_dataclass(spec: Spec, case: Case) -> Any:
    tags, kwargs = case
    # An unknown keyword argument of a dataclass is Python's own TypeError (a programming error, not
    # a configuration value): those keys are dropped here.
    tags = {k: v for k, v in tags.items() if k in spec.fields}
    kwargs = {k: v for k, v in kwargs.items() if k in spec.fields}
    return run_spec(spec, (tags, kwargs))


@FUZZ
@given(case=kwargs_for(ROUTE))
def test_route_request(case: Case) -> None:
    request = run_dataclass(ROUTE, case)
    if request is None:
        return
    mw = _middleware()
    try:
        decision = mw.select(request)
    except NoProviderAvailableError as exc:
        assert exc.reasons or request.candidates is not None
    except ConfigError as exc:  # an unknown strategy name is only known to be unknown at selection time
        assert exc.field == "strategy" and request.strategy == "no-such-strategy"
        assert "cost-optimal" in exc.message  # lists the known names
    else:
        assert decision.provider.id in mw.providers
        assert decision.provider.id not in request.exclude


@FUZZ
@given(case=kwargs_for(OUTCOME))
def test_outcome(case: Case) -> None:
    outcome = run_dataclass(OUTCOME, case)
    if outcome is None:
        return
    assert outcome.error_kind is None or isinstance(outcome.error_kind, ErrorKind)
    mw = _middleware(outcome.provider_id)
    if outcome.at is not None and abs(outcome.at - mw.clock()) > mw.monitor.config.max_clock_skew_s:
        with pytest.raises(ConfigError) as info:  # a reading of another clock: refused, nothing recorded
            mw.record(outcome)
        assert info.value.field == "Outcome.at"
        assert mw.health(outcome.provider_id).calls == 0
        return
    kind = mw.record(outcome)
    if not outcome.ok:
        assert isinstance(kind, ErrorKind)
        assert outcome.error_kind is None or kind is outcome.error_kind
    health = mw.health(outcome.provider_id)
    in_window = outcome.at is None or outcome.at >= mw.clock() - mw.monitor.config.window_s
    assert health.calls == (1 if in_window else 0)
    assert health.tokens_in == (outcome.input_tokens if in_window else 0)
    assert math.isfinite(health.cost_total) and 0 <= health.availability <= 1


def _middleware(*extra: str) -> Middleware:
    ids = dict.fromkeys(["a", "b", *extra])
    return Middleware([Provider(id=pid) for pid in ids], load_entrypoints=False, clock=ManualClock())


# -- Middleware(...) --------------------------------------------------------------------------------


class _Favourite(Strategy):
    name = "favourite"

    def rank(self, candidates, request, ctx):
        return [1.0 if c.provider.id == "b" else 0.0 for c in candidates]


class _Observer:
    def __init__(self) -> None:
        self.seen = 0

    def pbm_on_decision(self, decision):  # not marked as a hook: ignored by the host
        self.seen += 1


class _Misspelled:
    @hookimpl
    def pbm_on_decisoin(self, decision):  # no such hook: it would silently never run
        pass


class _WrongArguments:
    @hookimpl
    def pbm_on_decision(self, decision, extra):  # the hook has no 'extra' argument
        pass


_OBSERVER = _Observer()


P1, P2 = Provider(id="a"), Provider(id="b")
MIDDLEWARE_ARGS: dict[str, st.SearchStrategy[Tagged]] = {
    "providers": st.one_of(
        ok(st.sampled_from([[P1], [P1, P2], (P2,), []])),
        ok(st.just(iter([P1, P2]))),
        bad(
            st.sampled_from(
                [[P1, P1], [P1, Provider(id="a", quality=0.9)], [{"id": "a"}], ["a"], 5, None, "ab", [P1, None]]
            )
        ),
    ),
    "strategy": st.one_of(
        ok(st.sampled_from(["latency-optimal", "cost-optimal", "quality-optimal", "failover"])),
        ok(st.builds(_Favourite)),
        bad(st.sampled_from(["fastest", "", "Cost-Optimal", 5, None, ["failover"], _Favourite])),
    ),
    "failover": st.one_of(
        ok(st.sampled_from(["aggressive", "balanced", "conservative", None])),
        ok(st.builds(FailoverConfig, jitter=st.floats(0, 0.5))),
        bad(
            st.sampled_from(
                [
                    "reckless",
                    "",
                    "Balanced",
                    3,
                    1.5,
                    {"jitter": 0.1},
                    ["balanced"],
                    FailoverConfig(policy="no-such-policy"),
                ]
            )
        ),
    ),
    "monitor": st.one_of(
        ok(st.sampled_from([None, MonitorConfig(), MonitorConfig(window_s=10.0)])),
        bad(st.sampled_from([5, "fast", {"window_s": 10.0}, [], AlertThresholds()])),
    ),
    "health_scorer": st.one_of(
        ok(st.just("availability")), bad(st.sampled_from(["uptime", "", 5, None, ["availability"], {}]))
    ),
    "plugins": st.one_of(
        ok(st.sampled_from([[], (), [_Observer()]])),
        bad(st.sampled_from([5, None, [_Misspelled()], [_WrongArguments()], [_OBSERVER, _OBSERVER]])),
    ),
    "blocked_plugins": st.one_of(
        ok(st.sampled_from([[], ["x"], ("a", "b"), frozenset({"y"})])),
        bad(st.sampled_from([5, None, [1], "pi_builder_middleware.plugins.scorers"])),
    ),
    "clock": st.one_of(ok(st.sampled_from([None, ManualClock()])), bad(st.sampled_from([5, "now", 1.5]))),
    "seed": st.one_of(ok(st.one_of(st.none(), st.integers())), bad(st.sampled_from(["x", [1], {}, 1.5, object()]))),
    "history_size": st.one_of(ok(st.integers(1, 10_000)), bad(st.sampled_from([0, -1, 2.5, "10", None, NAN, INF]))),
}
#: What ConfigError.field may say for each argument (registry errors use the registry's label).
FIELD_NAMES = {
    "providers": ("providers",),
    "strategy": ("strategy",),
    "failover": ("failover", "failover policy"),
    "monitor": ("monitor",),
    "health_scorer": ("health_scorer", "health scorer"),
    "plugins": ("plugins",),
    "blocked_plugins": ("blocked_plugins",),
    "clock": ("clock",),
    "seed": ("seed",),
    "history_size": ("history_size",),
}


@st.composite
def middleware_args(draw: st.DrawFn) -> tuple[set[str], dict[str, Any]]:
    chosen = draw(st.lists(st.sampled_from(sorted(MIDDLEWARE_ARGS)), unique=True, max_size=4))
    bad_args: set[str] = set()
    kwargs: dict[str, Any] = {}
    for name in chosen:
        is_ok, kwargs[name] = draw(MIDDLEWARE_ARGS[name])
        if not is_ok:
            bad_args.add(name)
    return bad_args, kwargs


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=middleware_args())
def test_middleware_arguments(case: tuple[set[str], dict[str, Any]]) -> None:
    bad_args, kwargs = case
    try:
        mw = Middleware(load_entrypoints=False, **kwargs)
    except Exception as exc:
        assert bad_args, f"Middleware({kwargs!r}) refused: {exc!r}"
        assert type(exc) is ConfigError, f"{type(exc).__name__}: {exc}"
        assert exc.message.strip()
        allowed = {name for arg in bad_args for name in FIELD_NAMES[arg]}
        assert exc.field.split(".")[0] in allowed or exc.field.startswith("Provider."), (exc.field, bad_args)
        return
    assert not bad_args, f"Middleware({kwargs!r}) accepted although {sorted(bad_args)} are invalid"
    if mw.providers:
        decision = mw.select()
        assert decision.provider.id in mw.providers
        if isinstance(kwargs.get("strategy"), _Favourite) and "b" in mw.providers:
            assert decision.provider.id == "b"
    else:
        with pytest.raises(NoProviderAvailableError):
            mw.select()


def test_duplicate_provider_ids_name_the_id() -> None:
    with pytest.raises(ConfigError) as info:
        Middleware([Provider(id="a"), Provider(id="b"), Provider(id="a", quality=1.0)], load_entrypoints=False)
    assert info.value.field == "providers" and "'a'" in info.value.message


def test_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        Middleware([Provider(id="a")], strategy="fastest", load_entrypoints=False)
    assert info.value.field == "strategy"
    for known in ("cost-optimal", "failover", "latency-optimal", "quality-optimal"):
        assert known in info.value.message


def test_cross_field_errors_name_a_field() -> None:
    with pytest.raises(ConfigError) as info:
        FailoverConfig(base_ejection_s=60.0, max_ejection_s=10.0)
    assert info.value.field == "FailoverConfig.max_ejection_s"
    with pytest.raises(ConfigError) as info:
        MonitorConfig(thresholds={"healthy_availability": 0.9, "degraded_availability": 0.95})
    assert info.value.field == "MonitorConfig.thresholds.degraded_availability"
    with pytest.raises(ConfigError) as info:
        HealthThresholds(healthy_error_rate=0.2)
    assert info.value.field == "HealthThresholds.degraded_error_rate"
