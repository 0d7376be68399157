"""The settings classes (Provider, the *Config and *Thresholds classes): frozen, slotted dataclasses with checks.

They are built by ``_settings.settings`` rather than pydantic (import cost, BENCHMARKS.md "Import cost"); these
tests hold them to what the pydantic models gave: pydantic's lax conversions, ConfigError with the field path,
JSON-ready dumps that build the same object again, copies, pickling, equality and hashing.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from typing import Any

import pytest

from pi_builder_middleware import (
    AlertThresholds,
    AllOutMode,
    ConfigError,
    FailoverConfig,
    HealthThresholds,
    MonitorConfig,
    OutlierConfig,
    Provider,
    RoutingConfig,
)

ALL = [
    Provider(id="p", capabilities=["tools", "vision"], max_context_tokens=8000, group="g"),
    HealthThresholds(healthy_availability=0.98),
    AlertThresholds(min_samples=3),
    MonitorConfig(thresholds={"offline_availability": 0.4}, alerts=AlertThresholds(high_error_rate=0.1)),
    OutlierConfig(failure_percentage_threshold=None),
    FailoverConfig.preset("conservative", max_ejection_percent=50, outlier={"interval_s": 3}),
    RoutingConfig(when_all_out="fail", slow_factor=None),
]


@pytest.mark.parametrize("settings", ALL, ids=lambda s: type(s).__name__)
def test_to_dict_is_json_and_builds_the_same_settings(settings: Any) -> None:
    dumped = settings.to_dict()
    assert json.loads(json.dumps(dumped)) == dumped
    assert set(dumped) == type(settings).FIELDS == {f.name for f in dataclasses.fields(settings)}
    again = type(settings)(**dumped)
    assert again == settings and hash(again) == hash(settings)


@pytest.mark.parametrize("settings", ALL, ids=lambda s: type(s).__name__)
def test_frozen_slotted_copyable_picklable(settings: Any) -> None:
    assert dataclasses.is_dataclass(settings) and not hasattr(settings, "__dict__")
    name = next(iter(type(settings).FIELDS))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(settings, name, getattr(settings, name))
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(settings, name)
    for twin in (copy.copy(settings), copy.deepcopy(settings), pickle.loads(pickle.dumps(settings))):
        assert twin == settings and twin is not settings
    assert repr(settings).startswith(f"{type(settings).__name__}({dataclasses.fields(settings)[0].name}=")


def test_replace_checks_the_new_values() -> None:
    cfg = FailoverConfig()
    assert dataclasses.replace(cfg, jitter=0).jitter == 0.0
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(cfg, jitter=1)
    assert info.value.field == "FailoverConfig.jitter"


def test_lax_conversions_as_pydantic_made_them() -> None:
    p = Provider(id=b"p", quality="0.75", priority=" 3 ", max_context_tokens=4096.0, capabilities=("a", "a"))
    assert (p.id, p.quality, p.priority, p.max_context_tokens, p.capabilities) == ("p", 0.75, 3, 4096, {"a"})
    assert type(p.max_context_tokens) is int and type(Provider(id="x", quality=1).quality) is float
    cfg = FailoverConfig(escalate_when_all_out="no", consecutive_failures=True, policy=AllOutMode.FAIL)
    assert cfg.escalate_when_all_out is False and cfg.consecutive_failures == 1 and type(cfg.policy) is str
    assert RoutingConfig(when_all_out="soonest").when_all_out is AllOutMode.SOONEST


@pytest.mark.parametrize(
    ("build", "field", "words"),
    [
        (lambda: Provider(id="p", quality="nan"), "Provider.quality", ">= 0 and <= 1"),
        (lambda: Provider(id="p", capabilities="tools"), "Provider.capabilities", "not one string"),
        (lambda: Provider(id="p", capabilities=["a", 1]), "Provider.capabilities.1", "strings"),
        (lambda: Provider(quality=0.5), "Provider.id", "required"),
        (lambda: FailoverConfig(consecutive_failures=2.5), "FailoverConfig.consecutive_failures", "whole number"),
        (lambda: FailoverConfig(escalate_when_all_out="maybe"), "FailoverConfig.escalate_when_all_out", "True or"),
        (lambda: FailoverConfig(outlier=5), "FailoverConfig.outlier", "OutlierConfig or a dict"),
        (lambda: FailoverConfig(outlier={"interval": 1}), "FailoverConfig.outlier.interval", "unknown setting"),
        (lambda: RoutingConfig(when_all_out="later"), "RoutingConfig.when_all_out", "soonest, fail"),
        (lambda: MonitorConfig(window_s=0, max_samples=1), "MonitorConfig.window_s", "also invalid: max_samples"),
        (lambda: HealthThresholds(offline_availability=0.99), "HealthThresholds.offline_availability", "<= degr"),
    ],
)
def test_bad_values_name_the_field_and_say_what_to_give(build: Any, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.field == field
    assert words in info.value.message
