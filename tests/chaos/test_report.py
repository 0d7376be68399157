"""Report pieces on hand-made metrics: the scoreboard's targets and the traffic-share table."""

from __future__ import annotations

from dataclasses import replace

from pi_builder_middleware.tools.chaos import ChaosScenario, ContenderMetrics, ScenarioResult, load_chaos_scenario
from pi_builder_middleware.tools.chaos.report import (
    COLUMNS,
    scenario_section,
    scenario_table,
    targets,
    traffic_share_table,
)


def scenario() -> ChaosScenario:
    return load_chaos_scenario(
        {
            "name": "hand",
            "load": {"duration_s": 4, "rate_rps": 1},
            "providers": [{"name": "a", "behaviour": {"max_concurrent": 2}}, {"name": "b"}],
        }
    )


def metrics(name: str, *, success: float = 1.0, wasted: int = 0, p99: float | None = 100.0) -> ContenderMetrics:
    return ContenderMetrics(
        contender=name,
        requests=100,
        successes=round(success * 100),
        success_rate=success,
        attempts=100,
        failed_attempts=0,
        wasted_attempts=wasted,
        latency_p50_ms=p99,
        latency_p95_ms=p99,
        latency_p99_ms=p99,
        ttft_p50_ms=None,
        ttft_p95_ms=None,
        ttft_p99_ms=None,
        cost=0.0,
        detect_mean_s=None,
        undetected=0,
        recover_mean_s=None,
        unrecovered=0,
    )


def checked(result: ScenarioResult, contender: str) -> dict[str, bool | None]:
    return {t.name: t.met for t in targets(result) if t.contender == contender}


def test_targets_compare_with_the_best_baselines() -> None:
    result = ScenarioResult(
        scenario=scenario(),
        metrics=[
            metrics("litellm-shuffle", success=0.97, wasted=30, p99=400.0),
            metrics("litellm-latency", success=0.95, wasted=12, p99=300.0),  # best LiteLLM on wasted and p99
            metrics("langchain-fallbacks", success=0.99, wasted=5, p99=200.0),  # best baseline on success only
            metrics("pbm-litellm-latency", success=0.99, wasted=4, p99=300.0),
            metrics("pbm-langchain-latency", success=0.98, wasted=5, p99=301.0),
        ],
    )
    assert checked(result, "pbm-litellm-latency") == {
        "success >= every baseline": True,
        "wasted <= 1/3 of LiteLLM": True,
        "p99 <= LiteLLM": True,
    }
    assert checked(result, "pbm-langchain-latency") == {
        "success >= every baseline": False,
        "wasted <= 1/3 of LiteLLM": False,
        "p99 <= LiteLLM": False,
    }
    assert {t.contender for t in targets(result)} == {"pbm-litellm-latency", "pbm-langchain-latency"}
    (wasted,) = [t for t in targets(result) if t.contender == "pbm-litellm-latency" and "wasted" in t.name]
    assert wasted.detail == "4 vs 12 (litellm-latency)"


def test_no_faults_means_zero_wasted_meets_the_target() -> None:
    result = ScenarioResult(scenario=scenario(), metrics=[metrics("litellm-shuffle"), metrics("pbm-litellm-cost")])
    assert checked(result, "pbm-litellm-cost")["wasted <= 1/3 of LiteLLM"] is True


def test_traffic_share_table_shows_attempts_and_answers_per_provider() -> None:
    m = replace(
        metrics("litellm-shuffle"),
        attempts_by_provider={"a": [3, 3], "b": [2, 0]},
        served_by_provider={"a": [2, 2], "b": [1, 0]},
    )
    table = traffic_share_table(ScenarioResult(scenario=scenario(), metrics=[m]))
    assert table.splitlines() == [
        "| contender | a | b |",
        "|---|---|---|",
        "| `litellm-shuffle` | 75 % (80 %) | 25 % (20 %) |",
    ]


def test_section_has_the_share_table_the_limits_and_a_back_to_share_column() -> None:
    m = replace(metrics("pbm-litellm-latency"), share_return_mean_s=0.25, share_unreturned=1)
    result = ScenarioResult(scenario=scenario(), metrics=[m])
    text = scenario_section(result, {})
    assert "Traffic share (hand)" in text and "2 in flight (429 beyond)" in text
    header, _, row = scenario_table(result).splitlines()
    assert COLUMNS[-1] == "back to share s" and header.endswith("| back to share s |")
    assert row.endswith("| 0.25 (1 never) |")
