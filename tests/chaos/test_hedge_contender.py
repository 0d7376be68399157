"""The hedging contender on a tiny heavy-tailed scenario: real simulator worker, real ChatOpenAI over HTTP."""

from __future__ import annotations

import asyncio

from pi_builder_middleware.tools.chaos import SimulatorProcess, load_chaos_scenario, resolve_scenario, select_contenders
from pi_builder_middleware.tools.chaos.runner import run_scenario

TAILED = load_chaos_scenario(
    {
        "name": "tiny-tail",
        "seed": 3,
        "load": {
            "duration_s": 3.0,
            "rate_rps": 20,
            "arrival": "uniform",
            "output_tokens": 4,
            "timeout_s": 5,
            "stream_share": 0.0,
        },
        "providers": [
            {"name": "a", "behaviour": {"latency": 20, "slow_tail": {"share": 0.3, "multiplier": 25}}},
            {"name": "b", "behaviour": {"latency": 30}},
        ],
    }
)


def test_the_heavy_tail_scenario_slows_only_the_primary():
    scenario = resolve_scenario("heavy-tail")
    tails = {p.name: p.behaviour.slow_tail for p in scenario.providers}
    assert tails["alpha"] is not None and (tails["alpha"].share, tails["alpha"].multiplier) == (0.05, 10)
    assert tails["beta"] is None and tails["gamma"] is None


def test_the_hedging_contenders_are_known_and_hedge():
    hedge, latency_hedge = select_contenders(["pbm-langchain-hedge", "pbm-langchain-latency-hedge"])
    built = hedge.build()
    assert built.hedge and built.strategy == "failover"  # type: ignore[attr-defined]
    assert latency_hedge.build().strategy == "latency-optimal"  # type: ignore[attr-defined]


def test_hedges_answer_the_slow_calls_within_the_budget():
    (spec,) = select_contenders(["pbm-langchain-hedge"])
    with SimulatorProcess() as sims:
        result = asyncio.run(run_scenario(TAILED, [spec], sims))
    (m,) = result.metrics
    assert m.successes == m.requests > 50
    extra = m.attempts - m.requests
    assert extra > 0 and sum(m.served_by_provider["b"]) > 0  # slow calls on a were hedged, b answered some
    # The budget: 5 hedges from the full bucket, then about one per ten answers.
    assert extra <= 5 + 0.1 * m.successes + 1
    assert m.failed_attempts == 0
