"""Typed configuration: validation messages, latency sampling, fault windows, scenario loading."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from pi_builder_middleware.testing import (
    Behaviour,
    FaultWindow,
    Latency,
    LatencyDistribution,
    SimOutcome,
    SimProvider,
    SimulatorConfigError,
    load_scenario,
    load_scenario_file,
)
from pi_builder_middleware.testing.behaviour import decide, effective_behaviour
from pydantic import ValidationError


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"providers": [{"name": "a"}, {"name": "b", "faults": [{"error_rate": 2}]}]},
            "providers[1].faults[0].error_rate: must be between 0 and 1",
        ),
        ({}, "providers: is required"),
        ({"providers": []}, "providers: needs at least one provider"),
        ({"providers": [{"name": "a"}, {"name": "a"}]}, "providers: duplicate provider names: a"),
        ({"providers": [{"name": "a", "behavior": {}}]}, "providers[0].behavior: unknown field"),
        ({"providers": [{"name": "a b"}]}, "providers[0].name: must start with a letter or digit"),
        ({"providers": [{"name": "a", "port": 70000}]}, "providers[0].port: must be between 0 and 65535"),
        (
            {"providers": [{"name": "a", "behaviour": {"latency": {"median_ms": -1}}}]},
            "providers[0].behaviour.latency.median_ms: must be a finite number >= 0",
        ),
        (
            {"providers": [{"name": "a", "behaviour": {"latency": "fast"}}]},
            "providers[0].behaviour.latency: must be a number of milliseconds or a table",
        ),
        (
            {"providers": [{"name": "a", "behaviour": {"latency": {"median_ms": 5, "spread": 0.2}}}]},
            "spread has no effect with distribution 'fixed'",
        ),
        (
            {"providers": [{"name": "a", "behaviour": {"errors": {"success": 1}}}]},
            "providers[0].behaviour.errors: 'success' is not an error kind",
        ),
        (
            {"providers": [{"name": "a", "behaviour": {"errors": {"teapot": 1}}}]},
            "providers[0].behaviour.errors.teapot: Input should be",
        ),
        (
            {"providers": [{"name": "a", "behaviour": {"errors": {"rate_limit": 0}}}]},
            "needs at least one error kind with a weight > 0",
        ),
        (
            {"providers": [{"name": "a", "faults": [{"start_s": 5, "end_s": 5}]}]},
            "providers[0].faults[0]: end_s (5.0) must be greater than start_s (5.0)",
        ),
        (
            {"providers": [{"name": "a", "behaviour": {"tokens_per_second": 0}}]},
            "providers[0].behaviour.tokens_per_second: must be a finite number > 0",
        ),
    ],
)
def test_scenario_errors_name_the_field(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(SimulatorConfigError) as info:
        load_scenario(data)
    assert expected in str(info.value)
    assert isinstance(info.value, ValueError)
    assert info.value.problems


def test_every_problem_is_reported() -> None:
    data = {"seed": "x", "providers": [{"name": "a", "behaviour": {"error_rate": -1, "hang_s": 0}}]}
    with pytest.raises(SimulatorConfigError) as info:
        load_scenario(data)
    paths = [path for path, _ in info.value.problems]
    assert paths == ["seed", "providers[0].behaviour.error_rate", "providers[0].behaviour.hang_s"]


def test_scenario_from_dict() -> None:
    scenario = load_scenario(
        {
            "seed": 7,
            "providers": [
                {
                    "name": "primary",
                    "behaviour": {
                        "latency": {"distribution": "lognormal", "median_ms": 80, "spread": 0.3},
                        "error_rate": 0.1,
                        "errors": {"server_error": 3, "rate_limit": 1},
                    },
                    "faults": [{"start_s": 10, "end_s": 25, "error_rate": 1, "errors": {"service_unavailable": 1}}],
                },
                {"name": "backup", "behaviour": {"latency": 120}},
            ],
        }
    )
    primary, backup = scenario.providers
    assert scenario.seed == 7
    assert primary.behaviour.latency == Latency.lognormal(80, 0.3)
    assert primary.behaviour.errors == {SimOutcome.SERVER_ERROR: 3, SimOutcome.RATE_LIMIT: 1}
    assert primary.faults[0].errors == {SimOutcome.SERVICE_UNAVAILABLE: 1}
    assert backup.behaviour.latency == Latency.fixed(120)


def test_scenario_from_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        'seed = 3\n[[providers]]\nname = "a"\nbehaviour = { latency = 5, error_rate = 0.5 }\n'
        "[[providers.faults]]\nstart_s = 1\nlatency_multiplier = 4\n"
    )
    scenario = load_scenario_file(path)
    assert scenario.seed == 3
    assert scenario.providers[0].faults[0].latency_multiplier == 4
    path.write_text("providers = [")
    with pytest.raises(SimulatorConfigError, match="invalid TOML"):
        load_scenario_file(path)
    with pytest.raises(SimulatorConfigError, match="cannot read"):
        load_scenario_file(tmp_path / "missing.toml")
    with pytest.raises(SimulatorConfigError, match="must be a mapping"):
        load_scenario([])  # type: ignore[arg-type]


def test_models_are_frozen_and_strict() -> None:
    behaviour = Behaviour()
    with pytest.raises(ValidationError):
        behaviour.error_rate = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError):
        SimProvider(name="a", colour="blue")  # type: ignore[call-arg]
    assert Behaviour.failing(SimOutcome.TIMEOUT, hang_s=1).errors == {SimOutcome.TIMEOUT: 1.0}


def test_latency_sampling() -> None:
    assert Latency.fixed(40).sample_ms(3.0) == 40
    lognormal = Latency.lognormal(100, 0.5)
    assert lognormal.sample_ms(0.0) == 100
    assert lognormal.sample_ms(1.0) == pytest.approx(100 * math.exp(0.5))
    normal = Latency.normal(100, 0.2)
    assert normal.sample_ms(1.0) == pytest.approx(120)
    assert normal.sample_ms(-10.0) == 0  # clipped, never negative
    assert Latency.lognormal(100, 1.0, max_ms=150).sample_ms(3.0) == 150
    assert Latency.model_validate(25).distribution is LatencyDistribution.FIXED


def test_fault_windows_apply_in_order() -> None:
    base = Behaviour(error_rate=0.1, latency_multiplier=2)
    faults = (
        FaultWindow(start_s=0, end_s=10, error_rate=0.5, latency_multiplier=3),
        FaultWindow(start_s=5, error_rate=1.0, errors={SimOutcome.OVERLOADED: 1}, retry_after_s=9),
    )
    assert effective_behaviour(base, faults, 20) == base.model_copy(
        update={"error_rate": 1.0, "errors": {SimOutcome.OVERLOADED: 1}, "retry_after_s": 9}
    )
    during_both = effective_behaviour(base, faults, 7)
    assert (during_both.error_rate, during_both.latency_multiplier) == (1.0, 6)
    assert effective_behaviour(base, faults, 2).error_rate == 0.5
    assert effective_behaviour(base, (), 2) is base


def test_decide_is_a_pure_function_of_seed_name_and_n() -> None:
    behaviour = Behaviour(latency=Latency.lognormal(50, 0.5), error_rate=0.3, errors={SimOutcome.TIMEOUT: 1})
    first = [decide(1, "a", n, behaviour) for n in range(50)]
    assert first == [decide(1, "a", n, behaviour) for n in range(50)]
    assert first != [decide(2, "a", n, behaviour) for n in range(50)]
    assert first != [decide(1, "b", n, behaviour) for n in range(50)]
    assert len({d.latency_s for d in first}) == 50
    errors = sum(d.outcome is SimOutcome.TIMEOUT for d in first)
    assert 5 <= errors <= 25
    forced = decide(1, "a", 0, behaviour, SimOutcome.RATE_LIMIT)
    assert forced.outcome is SimOutcome.RATE_LIMIT and forced.latency_s == first[0].latency_s


def test_error_mix_follows_weights() -> None:
    behaviour = Behaviour(error_rate=1.0, errors={SimOutcome.SERVER_ERROR: 3, SimOutcome.RATE_LIMIT: 1})
    outcomes = [decide(0, "a", n, behaviour).outcome for n in range(2000)]
    share = outcomes.count(SimOutcome.SERVER_ERROR) / len(outcomes)
    assert 0.70 < share < 0.80
    assert set(outcomes) == {SimOutcome.SERVER_ERROR, SimOutcome.RATE_LIMIT}
