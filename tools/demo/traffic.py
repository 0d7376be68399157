"""Live traffic for the demo: one Middleware shared by a LiteLLM Router and a LangChain Runnable."""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from pi_builder_middleware.testing import Simulator

from pi_builder_middleware import FailoverConfig, Middleware, MonitorConfig, Provider

from .scenario import DemoScenario

__all__ = ["DemoRun", "RequestResult", "build_middleware", "preload", "run_traffic"]

_FAKE_KEY = "sk-demo-placeholder"  # the simulator accepts any key; nothing real is ever sent
_PROMPT = [{"role": "user", "content": "Say hello in five words."}]


@dataclass(frozen=True, slots=True)
class RequestResult:
    """One caller-visible request."""

    at: float
    framework: str
    stream: bool
    ok: bool
    latency_s: float
    error: str = ""


@dataclass
class DemoRun:
    """Everything the view and the summary read while traffic flows."""

    scenario: DemoScenario
    sim: Simulator
    middleware: Middleware
    results: list[RequestResult] = field(default_factory=list)
    done: bool = False

    def elapsed(self) -> float:
        """Seconds since the simulator started; the fault schedule runs on the same clock."""
        return self.sim.elapsed()


def preload() -> None:
    """Import the frameworks before the simulator's clock starts (litellm alone takes seconds)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import langchain_openai  # noqa: F401
    import litellm  # noqa: F401
    import pi_builder_middleware.adapters.langchain
    import pi_builder_middleware.adapters.litellm  # noqa: F401


def build_middleware(scenario: DemoScenario) -> Middleware:
    """One middleware for both frameworks; provider ids are the simulator's provider names."""
    providers = [
        Provider(
            id=p.sim.name,
            cost_per_1k_input=p.cost_per_1k_input,
            cost_per_1k_output=p.cost_per_1k_output,
            quality=p.quality,
            capabilities={"streaming"},
            model="openai/sim-model",
            group="chat",
        )
        for p in scenario.providers
    ]
    failover = FailoverConfig.preset("aggressive", base_ejection_s=max(2.0, scenario.duration_s / 20))
    monitor = MonitorConfig(window_s=max(10.0, scenario.duration_s / 4), min_samples=3)
    return Middleware(
        providers=providers, strategy="latency-optimal", failover=failover, monitor=monitor, seed=scenario.seed
    )


def _router(scenario: DemoScenario, sim: Simulator) -> Any:
    from litellm.router import Router

    model_list = [
        {
            "model_name": "chat",
            "litellm_params": {
                "model": "openai/sim-model",
                "api_base": sim.base_url(p.sim.name),
                "api_key": _FAKE_KEY,
                "timeout": 10,
                "max_retries": 0,
            },
            "model_info": {
                "id": p.sim.name,
                "input_cost_per_token": p.cost_per_1k_input / 1000,
                "output_cost_per_token": p.cost_per_1k_output / 1000,
            },
        }
        for p in scenario.providers
    ]
    # Retries inside the group go through our routing strategy, which skips ejected deployments.
    return Router(model_list=model_list, num_retries=2, retry_after=0, allowed_fails=1000, cooldown_time=0)


def _langchain(scenario: DemoScenario, sim: Simulator, mw: Middleware) -> Any:
    from langchain_openai import ChatOpenAI
    from pi_builder_middleware.adapters.langchain import HealthAwareFallbacks

    models = {
        p.sim.name: ChatOpenAI(
            model="sim-model",
            base_url=sim.base_url(p.sim.name),
            api_key=_FAKE_KEY,  # type: ignore[arg-type]
            max_retries=0,
            timeout=10,
            stream_usage=True,
        )
        for p in scenario.providers
    }
    return HealthAwareFallbacks(models=models, middleware=mw)


async def run_traffic(run: DemoRun) -> None:
    """Send requests at the scenario's rate until its duration is over."""
    from pi_builder_middleware.adapters.litellm import install

    scenario = run.scenario
    router = _router(scenario, run.sim)
    handle = install(router, middleware=run.middleware)
    chain = _langchain(scenario, run.sim, run.middleware)
    rng = random.Random(scenario.seed)
    gate = asyncio.Semaphore(scenario.concurrency)
    tasks: set[asyncio.Task[None]] = set()
    try:
        n = 0
        while run.elapsed() < scenario.duration_s:
            framework = "litellm" if rng.random() < 2 / 3 else "langchain"
            stream = rng.random() < scenario.stream_share
            await gate.acquire()
            task = asyncio.create_task(_one(run, router, chain, framework, stream, gate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
            await asyncio.sleep(max(0.0, n / scenario.rate_per_s - run.elapsed()))
        await asyncio.gather(*tasks)
    finally:
        run.done = True
        handle.uninstall()


async def _one(run: DemoRun, router: Any, chain: Any, framework: str, stream: bool, gate: asyncio.Semaphore) -> None:
    start = time.monotonic()
    at = run.elapsed()
    error = ""
    try:
        if framework == "litellm":
            if stream:
                response = await router.acompletion(
                    model="chat", messages=_PROMPT, stream=True, stream_options={"include_usage": True}
                )
                async for _ in response:
                    pass
            else:
                await router.acompletion(model="chat", messages=_PROMPT)
        elif stream:
            async for _ in chain.astream(_PROMPT):
                pass
        else:
            await chain.ainvoke(_PROMPT)
        ok = True
    except Exception as exc:  # the demo counts failures; it never stops on one
        ok, error = False, type(exc).__name__
    finally:
        gate.release()
    run.results.append(RequestResult(at, framework, stream, ok, time.monotonic() - start, error))
