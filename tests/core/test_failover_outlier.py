"""The ``outlier`` policy (peer-relative ejection) and ``max_ejection_percent``, on a ManualClock."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from pi_builder_middleware.plugins.policies import DefaultPolicy, OutlierPolicy

from pi_builder_middleware import (
    BreakerWindow,
    CircuitState,
    ConfigError,
    ErrorKind,
    EventKind,
    FailoverConfig,
    FailoverManager,
    FailoverPolicy,
    ManualClock,
    Middleware,
    OutlierConfig,
    PeerEjection,
    Provider,
)

FAIL = ErrorKind.SERVER_ERROR


def outlier_manager(clock: ManualClock, providers: Sequence[str] = "abcd", **overrides: Any) -> FailoverManager:
    outlier = overrides.pop("outlier", {})
    cfg = FailoverConfig(
        **{
            "policy": "outlier",
            "jitter": 0.0,
            "consecutive_failures": 1000,
            "outlier": {
                "interval_s": 10.0,
                "success_rate_request_volume": 20,
                "failure_percentage_request_volume": 20,
                **outlier,
            },
            **overrides,
        }
    )
    fm = FailoverManager(cfg, clock=clock)  # by name, through pbm_register_failover_policies
    for pid in providers:
        fm.add_provider(pid)
    return fm


def feed(
    fm: FailoverManager, clock: ManualClock, success_rates: Mapping[str, float], calls: int = 40, step_s: float = 0.1
) -> None:
    """Interleaved outcomes, failures spread evenly (no long runs) so only the rates differ."""
    debt = dict.fromkeys(success_rates, 0.0)
    for _ in range(calls):
        for pid, rate in success_rates.items():
            debt[pid] += 1.0 - rate
            failed = debt[pid] >= 1.0 - 1e-9
            debt[pid] -= failed
            fm.record(pid, not failed, FAIL if failed else None)
        clock.advance(step_s)


def evaluate(fm: FailoverManager, clock: ManualClock) -> None:
    """Let the interval pass and record one neutral outcome: the lazy peer check runs."""
    clock.advance(fm.config.outlier.interval_s)
    fm.record(next(iter(fm.stats()["providers"])), False, ErrorKind.CONTEXT_WINDOW)


def states(fm: FailoverManager) -> dict[str, str]:
    return {pid: info["state"] for pid, info in fm.stats()["providers"].items()}


def test_outlier_is_registered_by_name_with_a_default_cap() -> None:
    fm = outlier_manager(ManualClock())
    assert isinstance(fm.policy, OutlierPolicy) and fm.policy.name == "outlier"
    assert fm.max_ejection_percent == 50.0
    assert FailoverManager(FailoverConfig()).max_ejection_percent is None  # default policy: no cap
    mw = Middleware([Provider(id="a")], failover=FailoverConfig(policy="outlier"), load_entrypoints=False)
    assert mw.failover.policy.name == "outlier"


def test_the_one_bad_provider_among_four_is_ejected() -> None:
    clock = ManualClock(100.0)
    fm = outlier_manager(clock)
    feed(fm, clock, {"a": 1.0, "b": 0.975, "c": 1.0, "d": 0.5})
    evaluate(fm, clock)
    assert states(fm) == {"a": "closed", "b": "closed", "c": "closed", "d": "open"}
    event = [e for e in fm.events if e.kind is EventKind.BLACKLIST][-1]
    assert event.provider_id == "d" and event.detail.startswith("success rate 50.0% < ")
    assert "of 4 providers" in event.detail and "ejected for 30.0 s (trip 1)" in event.detail
    assert fm.breaker_info("d")["peer_ejections"] == 1


def test_nobody_is_ejected_when_all_are_equally_bad() -> None:
    clock = ManualClock(100.0)
    fm = outlier_manager(clock)
    feed(fm, clock, dict.fromkeys("abcd", 0.5))
    evaluate(fm, clock)
    assert set(states(fm).values()) == {"closed"}
    feed(fm, clock, {"a": 0.55, "b": 0.5, "c": 0.45, "d": 0.5})  # noise is not an outlier
    evaluate(fm, clock)
    assert set(states(fm).values()) == {"closed"}
    assert fm.event_counts[EventKind.BLACKLIST] == 0


def test_the_default_policy_would_have_ejected_them_all() -> None:
    clock = ManualClock(100.0)
    fm = FailoverManager(FailoverConfig(jitter=0.0, consecutive_failures=1000), policy=DefaultPolicy(), clock=clock)
    for pid in "abcd":
        fm.add_provider(pid)
    feed(fm, clock, dict.fromkeys("abcd", 0.5))
    assert set(states(fm).values()) == {"open"}


def test_request_volume_minimums_are_honoured() -> None:
    clock = ManualClock(100.0)
    fm = outlier_manager(clock)
    feed(fm, clock, {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.5}, calls=19)  # one short of the volume
    evaluate(fm, clock)
    assert set(states(fm).values()) == {"closed"}
    fm.reset()
    # Enough calls on the bad one, but only two peers have the volume (minimum hosts: 3).
    feed(fm, clock, {"a": 1.0, "d": 0.5}, calls=30)
    feed(fm, clock, {"b": 1.0, "c": 1.0}, calls=5)
    evaluate(fm, clock)
    assert set(states(fm).values()) == {"closed"}
    feed(fm, clock, {"b": 1.0, "c": 1.0}, calls=20)  # now they have it too
    evaluate(fm, clock)
    assert states(fm)["d"] == "open"


def test_checks_run_at_most_once_per_interval() -> None:
    clock = ManualClock(100.0)
    fm = outlier_manager(clock)
    fm.record("a", True)  # first record: a check (nothing to see), the next one is due 10 s later
    feed(fm, clock, {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.5}, calls=40, step_s=0.2)  # 8 s
    assert states(fm)["d"] == "closed"
    clock.advance(2.0)
    fm.record("a", True)
    assert states(fm)["d"] == "open"


def test_max_ejection_percent_caps_peer_ejections_and_says_so() -> None:
    clock = ManualClock(100.0)
    fm = outlier_manager(clock, providers="abc")  # 50 % of 3: one out at most
    feed(fm, clock, {"a": 1.0, "b": 0.1, "c": 0.05})  # b and c fail >= 85 %: failure-percentage ejection
    evaluate(fm, clock)
    assert states(fm) == {"a": "closed", "b": "closed", "c": "open"}  # the worst one goes
    capped = [e for e in fm.events if e.kind is EventKind.EJECTION_CAPPED]
    assert [e.provider_id for e in capped] == ["b"]
    assert "failure percentage 90 % >= 85 %" in capped[0].detail
    assert "not ejected: max_ejection_percent 50 % allows 1 of 3 out, 1 already are" in capped[0].detail
    assert fm.breaker_info("b")["ejections_capped"] == 1


@pytest.mark.parametrize(
    ("percent", "size", "allowed"), [(50, 3, 1), (50, 4, 2), (10, 4, 1), (100, 4, 4), (34, 3, 1), (67, 3, 2)]
)
def test_the_cap_allows_floor_of_the_share_but_always_one(percent: float, size: int, allowed: int) -> None:
    clock = ManualClock(100.0)
    providers = "abcdef"[:size]
    fm = outlier_manager(
        clock, providers=providers, max_ejection_percent=percent, outlier={"failure_percentage_threshold": 50.0}
    )
    feed(fm, clock, dict.fromkeys(providers, 0.0), calls=20)
    evaluate(fm, clock)
    assert list(states(fm).values()).count("open") == allowed


def test_the_cap_also_limits_the_default_policy_when_configured() -> None:
    clock = ManualClock(100.0)
    cfg = FailoverConfig(
        consecutive_failures=2, jitter=0.0, base_ejection_s=10.0, max_ejection_percent=50, recovery_successes=1
    )
    fm = FailoverManager(cfg, policy=DefaultPolicy(), clock=clock)
    for pid in "abc":
        fm.add_provider(pid)
    for pid in "ab":
        fm.record(pid, False, FAIL)
        fm.record(pid, False, FAIL)
    assert states(fm) == {"a": "open", "b": "closed", "c": "closed"}
    last = fm.events[-1]
    assert last.kind is EventKind.EJECTION_CAPPED and last.provider_id == "b"
    assert last.detail.startswith("2 consecutive failures; not ejected: max_ejection_percent 50 %")
    clock.advance(10.0)
    assert fm.acquire("a")
    fm.record("a", True)  # a recovers: room for b
    fm.record("b", False, FAIL)
    assert states(fm)["b"] == "open"
    # A half-open provider's failed trial always re-opens it (it is out already).
    clock.advance(10.0)
    assert fm.acquire("b")
    fm.record("b", False, FAIL)
    assert states(fm)["b"] == "open"


def test_without_a_cap_the_default_policy_is_unchanged() -> None:
    clock = ManualClock(100.0)
    fm = FailoverManager(FailoverConfig(consecutive_failures=1), policy=DefaultPolicy(), clock=clock)
    for pid in "abc":
        fm.add_provider(pid)
        fm.record(pid, False, FAIL)
    assert set(states(fm).values()) == {"open"}
    assert fm.event_counts[EventKind.EJECTION_CAPPED] == 0


def test_repeat_ejections_grow() -> None:
    clock = ManualClock(100.0)
    fm = outlier_manager(clock, base_ejection_s=10.0, recovery_successes=1, trip_memory_s=10_000.0)
    ejections = []
    for _ in range(3):
        feed(fm, clock, {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.3}, calls=30)
        evaluate(fm, clock)
        ejections.append(fm.breaker_info("d")["open_for_s"])
        clock.advance(ejections[-1])
        assert fm.acquire("d")
        fm.record("d", True)
        assert fm.state("d") is CircuitState.CLOSED
    assert ejections == [10.0, 20.0, 40.0]


def test_consecutive_failures_still_trip_under_the_outlier_policy() -> None:
    clock = ManualClock(100.0)
    fm = outlier_manager(clock, consecutive_failures=3)
    for _ in range(3):
        fm.record("a", False, FAIL)
    assert states(fm)["a"] == "open"


def test_groups_are_compared_separately() -> None:
    clock = ManualClock(100.0)
    fm = outlier_manager(clock, providers="")
    for pid in "abc":
        fm.add_provider(pid, group="gpt")
    for pid in "xyz":
        fm.add_provider(pid, group="claude")
    # x is as bad as c, but within its own group everyone is: only c is an outlier.
    feed(fm, clock, {"a": 1.0, "b": 1.0, "c": 0.5, "x": 0.5, "y": 0.5, "z": 0.5})
    evaluate(fm, clock)
    assert [pid for pid, state in states(fm).items() if state == "open"] == ["c"]


class Recorder(FailoverPolicy):
    """A third-party policy with peer ejections: records what it is shown, ejects what it is told."""

    name = "recorder"

    def __init__(self, eject: Sequence[str] = (), fail: bool = False) -> None:
        self.eject, self.fail = eject, fail
        self.seen: list[dict[str, BreakerWindow]] = []

    def should_trip(self, window: BreakerWindow, config: FailoverConfig) -> str | None:
        return None

    def ejection_s(self, trips: int, config: FailoverConfig, rng: Any) -> float:
        return 5.0

    def peer_ejections(
        self, windows: Mapping[str, BreakerWindow], config: FailoverConfig, now: float
    ) -> Sequence[PeerEjection]:
        self.seen.append(dict(windows))
        if self.fail:
            raise RuntimeError("boom")
        return [PeerEjection(pid, "told to") for pid in self.eject]


def test_a_custom_policy_sees_the_closed_providers_and_its_ejections_are_capped() -> None:
    clock = ManualClock(100.0)
    policy = Recorder(eject=["a", "b", "zz"])
    fm = FailoverManager(FailoverConfig(max_ejection_percent=50), policy=policy, clock=clock)
    for pid in "abcd":
        fm.add_provider(pid)
    fm.record("c", False, FAIL)
    assert list(policy.seen[-1]) == ["a", "b", "c", "d"]
    assert policy.seen[-1]["c"] == BreakerWindow("c", 1, 1, 1, 0)
    assert states(fm) == {"a": "open", "b": "open", "c": "closed", "d": "closed"}  # zz is unknown: ignored
    evaluate(fm, clock)
    assert list(policy.seen[-1]) == ["c", "d"]  # ejected ones are not peers


def test_a_policy_without_peer_ejections_is_never_asked() -> None:
    class Plain(FailoverPolicy):
        name = "plain"

        def should_trip(self, window: BreakerWindow, config: FailoverConfig) -> str | None:
            return None

        def ejection_s(self, trips: int, config: FailoverConfig, rng: Any) -> float:
            return 1.0

    fm = FailoverManager(FailoverConfig(), policy=Plain(), clock=ManualClock())
    fm.add_provider("a")
    fm.record("a", False, FAIL)
    assert fm._peer_checks is False
    assert "peer_check_errors" not in fm.stats()


def test_a_peer_check_that_raises_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    fm = FailoverManager(FailoverConfig(), policy=Recorder(fail=True), clock=ManualClock())
    fm.add_provider("a")
    with caplog.at_level(logging.ERROR):
        assert fm.record("a", False, FAIL) is CircuitState.CLOSED
    assert fm.stats()["peer_check_errors"] == 1
    assert "raised in peer_ejections" in caplog.text


class LazyGarbage(Recorder):
    """Peer ejections as a generator that yields one good ejection, then garbage, then raises."""

    name = "lazy-garbage"

    def peer_ejections(self, windows: Mapping[str, BreakerWindow], config: FailoverConfig, now: float) -> Any:
        yield PeerEjection("b", "told to")
        yield "not an ejection"
        raise RuntimeError("boom, half-way")


def test_peer_ejections_that_fail_half_way_or_hold_garbage_eject_nobody_and_never_raise() -> None:
    fm = FailoverManager(FailoverConfig(), policy=LazyGarbage(), clock=ManualClock())
    for pid in "ab":
        fm.add_provider(pid)
    assert fm.record("a", False, FAIL) is CircuitState.CLOSED
    assert fm.state("b") is CircuitState.CLOSED  # an answer that broke half-way is no answer
    assert fm.stats()["peer_check_errors"] == 1


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"max_ejection_percent": 0}, "FailoverConfig.max_ejection_percent"),
        ({"max_ejection_percent": 101}, "FailoverConfig.max_ejection_percent"),
        ({"rate_limit_base_cooldown_s": -1}, "FailoverConfig.rate_limit_base_cooldown_s"),
        ({"rate_limit_streak_s": float("nan")}, "FailoverConfig.rate_limit_streak_s"),
        ({"rate_limit_pressure_half_life_s": 0}, "FailoverConfig.rate_limit_pressure_half_life_s"),
        ({"outlier": {"interval_s": 0}}, "FailoverConfig.outlier.interval_s"),
        ({"outlier": {"success_rate_minimum_hosts": 0}}, "FailoverConfig.outlier.success_rate_minimum_hosts"),
        ({"outlier": {"success_rate_request_volume": 2.5}}, "FailoverConfig.outlier.success_rate_request_volume"),
        ({"outlier": {"success_rate_stdev_factor": -1}}, "FailoverConfig.outlier.success_rate_stdev_factor"),
        ({"outlier": {"success_rate_minimum_gap": 1.5}}, "FailoverConfig.outlier.success_rate_minimum_gap"),
        ({"outlier": {"failure_percentage_threshold": 0}}, "FailoverConfig.outlier.failure_percentage_threshold"),
        ({"outlier": {"failure_percentage_threshold": 150}}, "FailoverConfig.outlier.failure_percentage_threshold"),
        (
            {"outlier": {"failure_percentage_request_volume": 0}},
            "FailoverConfig.outlier.failure_percentage_request_volume",
        ),
        ({"outlier": {"intervals": 3}}, "FailoverConfig.outlier.intervals"),
        ({"outlier": 5}, "FailoverConfig.outlier"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        FailoverConfig(**settings)
    assert info.value.field == field


def test_outlier_settings_accept_a_model_a_dict_and_none_for_failure_percentage() -> None:
    cfg = FailoverConfig(policy="outlier", outlier=OutlierConfig(interval_s=1.0, failure_percentage_threshold=None))
    assert cfg.outlier.failure_percentage_threshold is None
    assert FailoverConfig(outlier={"interval_s": 1.0}).outlier == OutlierConfig(interval_s=1.0)
    assert FailoverConfig(**cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"OutlierConfig\.interval_s"):
        OutlierConfig(interval_s=-1)
    with pytest.raises(ConfigError, match="unknown failover policy 'outliers'"):
        FailoverManager(FailoverConfig(policy="outliers"))
