"""Scenario loading and validation, the request plan, the oracle's ordering and contender selection."""

from __future__ import annotations

import pytest
from pi_builder_middleware.testing import SimulatorConfigError
from pi_builder_middleware.tools.chaos import (
    DEFAULT_CONTENDERS,
    QUICK_CONTENDERS,
    ChaosConfigError,
    Objective,
    builtin_scenarios,
    load_chaos_scenario,
    load_chaos_scenario_file,
    plan_requests,
    resolve_scenario,
    select_contenders,
    trouble_windows,
)
from pi_builder_middleware.tools.chaos.oracle import oracle_order

REQUIRED = {
    "outage",
    "brownout",
    "rate-limit",
    "flapping",
    "slow-ttft",
    "cost-vs-reliability",
    "all-down",
    "outage-return",
    "single-blip",
    "capacity",
    "cold-start",
}
WITHOUT_FAULTS = {"capacity", "cold-start", "heavy-tail"}  # what they test is a provider's nature, not trouble


def minimal(**changes):
    data = {"name": "t", "load": {"duration_s": 10, "rate_rps": 5}, "providers": [{"name": "a"}, {"name": "b"}]}
    data.update(changes)
    return data


def test_every_builtin_scenario_loads_and_has_faults():
    found = builtin_scenarios()
    assert set(found) >= REQUIRED
    for name in found:
        scenario = resolve_scenario(name)
        assert scenario.name == name
        assert any(trouble_windows(scenario).values()) is (name not in WITHOUT_FAULTS), name
        assert len(scenario.providers) >= 2


def test_cost_scenario_optimises_cost_and_all_down_takes_everyone_down():
    assert resolve_scenario("cost-vs-reliability").bench.objective is Objective.COST
    all_down = trouble_windows(resolve_scenario("all-down"))
    assert all(windows for windows in all_down.values())


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (minimal(load={"duration_s": 10, "rate_rps": 0}), "load.rate_rps"),
        (minimal(load={"duration_s": 10}), "load.rate_rps"),
        (minimal(load={"duration_s": 10, "rate_rps": 1, "stream_share": 2}), "load.stream_share"),
        (minimal(load={"duration_s": 10, "rate_rps": 1, "arrival": "burst"}), "load.arrival"),
        (minimal(bench={"cooldown_s": -1}), "bench.cooldown_s"),
        (minimal(bench={"objective": "speed"}), "bench.objective"),
        (minimal(providers=[{"name": "a", "cost_per_1k_input": -1}]), "providers[0].cost_per_1k_input"),
        (minimal(providers=[{"name": "a", "faults": [{"start_s": 5, "end_s": 2}]}]), "providers[0].faults[0]"),
        (minimal(providers=[{"name": "a", "faults": [{"start_s": 50}]}]), "providers[0].faults[0].start_s"),
        (minimal(providers=[{"name": "a", "behaviour": {"error_rate": 3}}]), "providers[0].behaviour.error_rate"),
        (minimal(providers=[{"name": "a", "port": 8080}]), "providers[0].port"),
        (minimal(providers=[{"name": "a"}, {"name": "a"}]), "providers"),
        (minimal(providers=[]), "providers"),
        (minimal(extra_field=1), "extra_field"),
    ],
)
def test_bad_scenarios_name_the_field(data, field):
    with pytest.raises(ChaosConfigError) as info:
        load_chaos_scenario(data)
    assert isinstance(info.value, SimulatorConfigError)  # same family as the simulator's own errors
    assert any(path == field for path, _ in info.value.problems), info.value.problems
    assert field in str(info.value)


def test_file_errors_name_the_file_and_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[load]\nduration_s = 10\nrate_rps = "fast"\n[[providers]]\nname = "a"\n')
    with pytest.raises(ChaosConfigError, match=r"bad\.toml: load\.rate_rps"):
        load_chaos_scenario_file(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("[load\n")
    with pytest.raises(ChaosConfigError, match="invalid TOML"):
        load_chaos_scenario_file(broken)
    with pytest.raises(ChaosConfigError, match="cannot read"):
        load_chaos_scenario_file(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("providers", "message"),
    [([], "providers: needs at least one provider"), ([{"name": "a"}, {"name": "a"}], "duplicate provider names: a")],
)
def test_providers_must_be_named_once_each(providers, message):
    data = {"name": "x", "load": {"duration_s": 10, "rate_rps": 5}, "providers": providers}
    with pytest.raises(ChaosConfigError, match=message):
        load_chaos_scenario(data)


def test_file_name_is_the_default_scenario_name(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[load]\nduration_s = 3\nrate_rps = 2\n[[providers]]\nname = "a"\n')
    assert resolve_scenario(str(path)).name == "mine"


def test_unknown_scenario_name_lists_the_builtins():
    with pytest.raises(ChaosConfigError, match="outage"):
        resolve_scenario("no-such-scenario")


def test_scaled_compresses_the_schedule_but_not_latency():
    s = resolve_scenario("outage")
    half = s.scaled(s.load.duration_s / 2)
    assert half.load.duration_s == s.load.duration_s / 2
    assert half.bench.cooldown_s == s.bench.cooldown_s / 2
    (window,) = trouble_windows(half)["alpha"]
    (original,) = trouble_windows(s)["alpha"]
    assert (window.start, window.end) == (original.start / 2, original.end / 2)
    assert half.providers[0].behaviour == s.providers[0].behaviour
    assert half.load.rate_rps == s.load.rate_rps


def test_plan_is_deterministic_and_follows_the_load():
    s = load_chaos_scenario(
        minimal(load={"duration_s": 20, "rate_rps": 10, "stream_share": 0.3, "input_tokens": 120, "output_tokens": 9})
    )
    plan = plan_requests(s)
    assert plan == plan_requests(s)
    assert plan != plan_requests(s.model_copy(update={"seed": 1}))
    assert 150 < len(plan) < 250
    assert all(0 < r.at_s < 20 for r in plan) and [r.at_s for r in plan] == sorted(r.at_s for r in plan)
    assert 0.15 < sum(r.stream for r in plan) / len(plan) < 0.45
    assert all(r.max_tokens == 9 for r in plan)
    # the simulator estimates ~4 characters per token plus 3 per message
    assert all(abs((len(r.prompt) / 4 + 3) - 120) <= 2 for r in plan)


def test_uniform_arrivals_are_evenly_spaced():
    s = load_chaos_scenario(minimal(load={"duration_s": 2, "rate_rps": 4, "arrival": "uniform"}))
    assert [r.at_s for r in plan_requests(s)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75])


def test_providers_default_their_reply_size_to_the_loads_output_tokens():
    s = load_chaos_scenario(
        minimal(
            load={"duration_s": 2, "rate_rps": 1, "output_tokens": 7},
            providers=[{"name": "a"}, {"name": "b", "behaviour": {"response_tokens": 3}}],
        )
    )
    a, b = s.sim_providers()
    assert (a.behaviour.response_tokens, b.behaviour.response_tokens) == (7, 3)


def test_oracle_avoids_providers_in_or_about_to_enter_trouble():
    s = resolve_scenario("outage")  # alpha (fastest) down 4-10 s; beta faster than gamma
    troubles = trouble_windows(s)
    assert oracle_order(s, troubles, 1.0, stream=False, lookahead_s=0.3) == ["alpha", "beta", "gamma"]
    assert oracle_order(s, troubles, 3.8, stream=False, lookahead_s=0.3) == ["beta", "gamma"]
    assert oracle_order(s, troubles, 9.99, stream=False, lookahead_s=0.3) == ["beta", "gamma"]
    assert oracle_order(s, troubles, 10.0, stream=False, lookahead_s=0.3)[0] == "alpha"


def test_oracle_ranks_by_price_on_cost_scenarios_and_sends_nothing_when_all_are_down():
    cost = resolve_scenario("cost-vs-reliability")
    assert oracle_order(cost, trouble_windows(cost), 0.5, stream=False, lookahead_s=0.3) == ["cheap", "expensive"]
    down = resolve_scenario("all-down")
    (window,) = trouble_windows(down)["alpha"]
    assert (
        oracle_order(down, trouble_windows(down), (window.start + window.end) / 2, stream=True, lookahead_s=0.3) == []
    )


def test_contender_selection():
    assert [s.name for s in select_contenders(None)] == list(DEFAULT_CONTENDERS)
    quick = [s.name for s in select_contenders(None, quick=True)]
    assert quick == list(QUICK_CONTENDERS)
    assert {"litellm-shuffle", "langchain-fallbacks", "pbm-litellm-latency", "pbm-langchain-latency", "oracle"} <= set(
        quick
    )
    assert "pbm-litellm-quality" in [s.name for s in select_contenders(["all"])]
    with pytest.raises(ChaosConfigError, match="--contenders"):
        select_contenders(["nobody"])


def test_oracle_waits_for_the_first_provider_back_when_everyone_is_down():
    from pi_builder_middleware.tools.chaos.oracle import next_healthy_at

    down = resolve_scenario("all-down")
    troubles = trouble_windows(down)
    (window,) = troubles["alpha"]
    assert next_healthy_at(troubles, window.start + 0.5, 0.3) == window.end
    assert next_healthy_at(troubles, 0.0, 0.3) == 0.0
    flapping = trouble_windows(resolve_scenario("flapping"))
    first, second = flapping["alpha"][:2]
    assert next_healthy_at({"alpha": flapping["alpha"]}, first.start, 0.3) == first.end
    assert next_healthy_at({"alpha": [first, second]}, first.start, second.start - first.end + 0.1) == second.end


def test_pbm_contenders_come_with_other_failover_presets():
    (spec,) = select_contenders(["pbm-langchain-latency@aggressive"])
    assert spec.name == "pbm-langchain-latency@aggressive" and "aggressive" in spec.label
    assert spec.build().preset == "aggressive"  # type: ignore[attr-defined]
    for bad in ("pbm-langchain-latency@wild", "litellm-shuffle@aggressive", "pbm-foo-latency@aggressive"):
        with pytest.raises(ChaosConfigError):
            select_contenders([bad])


def test_builtin_scenarios_come_in_report_order():
    assert list(builtin_scenarios())[:12] == [
        "outage",
        "long-outage",
        "brownout",
        "rate-limit",
        "flapping",
        "slow-ttft",
        "cost-vs-reliability",
        "all-down",
        "outage-return",
        "single-blip",
        "capacity",
        "cold-start",
    ]


def test_capacity_scenario_fits_the_callers_concurrency_exactly():
    s = resolve_scenario("capacity")
    limits = [p.behaviour.max_concurrent for p in s.providers]
    assert len(limits) == 3 and all(limit is not None for limit in limits)
    assert sum(limit or 0 for limit in limits) == s.load.concurrency
    assert all(not p.faults for p in s.providers)


def test_cold_start_scenario_slows_only_the_fastest_providers_first_requests():
    s = resolve_scenario("cold-start")
    fastest, *others = sorted(s.providers, key=lambda p: p.behaviour.latency.median_ms)
    assert fastest.behaviour.cold_start is not None
    assert fastest.behaviour.cold_start.extra_ms > max(p.behaviour.latency.median_ms for p in others)
    assert all(p.behaviour.cold_start is None for p in others)
    assert trouble_windows(s) == {p.name: [] for p in s.providers}
    assert len({(p.cost_per_1k_input, p.cost_per_1k_output) for p in s.providers}) == 1  # only speed differs


def test_single_blip_window_meets_one_planned_request_in_full_and_quick_mode():
    for s in (resolve_scenario("single-blip"), resolve_scenario("single-blip").scaled(6.0)):
        (window,) = trouble_windows(s)["alpha"]
        inside = [r for r in plan_requests(s) if window.start <= r.at_s < window.end]
        assert len(inside) == 1, s.load.duration_s


def test_scaling_keeps_share_lookback_in_proportion():
    s = resolve_scenario("outage-return")
    half = s.scaled(s.load.duration_s / 2)
    assert half.bench.share_lookback_s == pytest.approx(s.bench.share_lookback_s / 2)
    assert half.bench.share_fraction == s.bench.share_fraction


def test_bad_share_settings_name_the_field():
    with pytest.raises(ChaosConfigError) as info:
        load_chaos_scenario(minimal(bench={"share_fraction": 1.5, "share_lookback_s": 0}))
    assert {path for path, _ in info.value.problems} == {"bench.share_fraction", "bench.share_lookback_s"}
