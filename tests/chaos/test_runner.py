"""The runner with small contenders of our own: a real simulator worker, real HTTP, no framework."""

from __future__ import annotations

import asyncio

import httpx
from pi_builder_middleware.tools.chaos import Contender, ContenderSpec, Reply, SimulatorProcess, load_chaos_scenario
from pi_builder_middleware.tools.chaos.runner import run_scenario

SCENARIO = load_chaos_scenario(
    {
        "name": "tiny",
        "seed": 5,
        "load": {"duration_s": 2.0, "rate_rps": 15, "arrival": "uniform", "output_tokens": 4, "timeout_s": 2},
        "bench": {"quiet_s": 0.3, "bucket_s": 0.5},
        "providers": [
            {
                "name": "a",
                "cost_per_1k_input": 1,
                "cost_per_1k_output": 1,
                "faults": [{"start_s": 0.5, "end_s": 1.0, "error_rate": 1.0}],
            },
            {"name": "b"},
        ],
    }
)


class PrimaryOnly(Contender):
    """Always asks provider ``a``, no failover: every attempt in the window is wasted and fails."""

    async def start(self, scenario, urls, clock):
        self.client = httpx.AsyncClient(base_url=urls["a"], timeout=5)

    async def call(self, request):
        response = await self.client.post(
            "/chat/completions",
            json={"model": "sim-model", "messages": request.messages, "max_tokens": request.max_tokens},
        )
        response.raise_for_status()
        body = response.json()
        usage = body["usage"]
        return Reply(body["choices"][0]["message"]["content"], usage["prompt_tokens"], usage["completion_tokens"])

    async def stop(self):
        await self.client.aclose()


class Broken(Contender):
    async def start(self, scenario, urls, clock):
        raise RuntimeError("cannot connect the thing")

    async def call(self, request):  # pragma: no cover - never reached
        raise AssertionError


def test_runner_scores_real_runs_and_skips_broken_contenders():
    specs = [
        ContenderSpec("primary-only", "Primary only", "test", lambda: PrimaryOnly("primary-only")),
        ContenderSpec("broken", "Broken", "test", lambda: Broken("broken")),
    ]
    with SimulatorProcess() as sims:
        result = asyncio.run(run_scenario(SCENARIO, specs, sims))
    assert result.skipped == {"broken": "failed: RuntimeError: cannot connect the thing"}
    (m,) = result.metrics
    assert m.requests == 29 and m.attempts == 29  # 15 req/s for 2 s, uniform; one attempt each
    # 0.5 s window at 15 req/s: requests at 0.533 .. 0.933 land in it, all fail, all wasted
    assert m.wasted_attempts == m.failed_attempts == m.requests - m.successes == 7
    assert m.attempts_by_provider["b"] == [0, 0, 0, 0]
    (window,) = m.windows
    assert window.detect_s is None  # it never stopped sending to a
    assert window.recover_s is not None and 0 <= window.recover_s < 0.2
    assert m.cost > 0 and m.latency_p50_ms is not None
