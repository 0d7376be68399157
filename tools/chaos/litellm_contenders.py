"""LiteLLM contenders: the Router alone, and the Router with this project installed through its adapter.

Both use the same deployments: one model group ``chat`` holding every provider, plus a fallback group
``chat-fallback`` holding the scenario's last (most reliable) provider again, wired with
``fallbacks=[{"chat": ["chat-fallback"]}]``: LiteLLM's documented shape of load balancing inside a
group, retries that re-pick within the group, and a fallback to another group. Prices go in
``litellm_params`` (``input_cost_per_token``/``output_cost_per_token``), which the adapter reads too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from .contenders import API_KEY, WAIT_SHARE, Contender, openai_reply
from .load import PlannedRequest, Reply, RunTime
from .scenario import ChaosScenario

__all__ = ["LiteLLMRouterContender", "MiddlewareLiteLLMContender", "router_settings"]

GROUP = "chat"
FALLBACK_GROUP = "chat-fallback"


def _import_litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return litellm


def _model_list(scenario: ChaosScenario, urls: Mapping[str, str]) -> list[dict[str, Any]]:
    def deployment(group: str, name: str, dep_id: str) -> dict[str, Any]:
        p = scenario.provider(name)
        return {
            "model_name": group,
            "litellm_params": {
                "model": f"openai/{p.models[0]}",
                "api_base": urls[name],
                "api_key": API_KEY,
                "input_cost_per_token": p.cost_per_1k_input / 1000.0,
                "output_cost_per_token": p.cost_per_1k_output / 1000.0,
            },
            "model_info": {"id": dep_id, "quality": p.quality},
        }

    backup = scenario.provider_names[-1]
    deployments = [deployment(GROUP, name, name) for name in scenario.provider_names]
    deployments.append(deployment(FALLBACK_GROUP, backup, f"{backup}-fallback"))
    return deployments


def router_settings(scenario: ChaosScenario, *, routing: str | None, cooldowns: bool) -> dict[str, Any]:
    """The Router arguments (besides ``model_list``) a contender uses."""
    settings: dict[str, Any] = {
        "num_retries": 2,
        "retry_after": 0,
        "timeout": scenario.load.timeout_s,
        "stream_timeout": scenario.load.timeout_s,
        "fallbacks": [{GROUP: [FALLBACK_GROUP]}],
    }
    if routing is not None:
        settings["routing_strategy"] = routing
    if cooldowns:
        settings.update(allowed_fails=1, cooldown_time=scenario.bench.cooldown_s)
    else:
        settings["disable_cooldowns"] = True
    return settings


class _RouterContender(Contender):
    """Shared calling code: ``Router.acompletion`` on the ``chat`` group, streams with usage."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.router: Any = None
        self.settings: dict[str, Any] = {}
        self._clock: RunTime | None = None
        self._saved: dict[str, list[Any]] = {}

    async def _build_router(
        self, scenario: ChaosScenario, urls: Mapping[str, str], clock: RunTime, settings: dict[str, Any]
    ) -> Any:
        litellm = _import_litellm()
        from pi_builder_middleware.adapters.litellm._candidates import CALLBACK_LISTS

        # LiteLLM callbacks are process-wide; put the lists back as they were after the run.
        self._saved = {
            n: list(getattr(litellm, n)) for n in CALLBACK_LISTS if isinstance(getattr(litellm, n, None), list)
        }
        self._clock = clock
        self.settings = settings
        self.router = litellm.Router(model_list=_model_list(scenario, urls), **settings)
        return self.router

    async def call(self, request: PlannedRequest) -> Reply:
        assert self.router is not None and self._clock is not None
        return await openai_reply(self.router.acompletion, GROUP, request, self._clock)

    async def stop(self) -> None:
        if self._saved:
            import litellm

            for name, entries in self._saved.items():
                current = getattr(litellm, name, None)
                if isinstance(current, list):
                    current[:] = entries
        self.router = None

    def describe(self) -> dict[str, object]:
        return {
            "router": {k: v for k, v in self.settings.items()},
            "model_list": f"group {GROUP!r} = every provider; group {FALLBACK_GROUP!r} = the last provider again",
        }


class LiteLLMRouterContender(_RouterContender):
    """``litellm.Router`` alone with a built-in routing strategy, cooldowns, retries and a fallback group."""

    def __init__(self, name: str, routing: str) -> None:
        super().__init__(name)
        self.routing = routing

    async def start(self, scenario: ChaosScenario, urls: Mapping[str, str], clock: RunTime) -> None:
        await self._build_router(scenario, urls, clock, router_settings(scenario, routing=self.routing, cooldowns=True))


class MiddlewareLiteLLMContender(_RouterContender):
    """The same Router with ``install(router, strategy=..., failover=...)``, configured as the adapter recommends.

    Router settings follow the adapter's documentation: ``num_retries=2, retry_after=0,
    disable_cooldowns=True`` (the middleware's breakers decide); the breaker is the ``balanced`` preset
    (or ``preset``) with ``base_ejection_s`` set to the scenario's ``cooldown_s``, the same memory LiteLLM gets;
    ``max_wait_s`` is :data:`WAIT_SHARE` of the load's timeout, as for the LangChain contenders (with every
    deployment out a pick waits for the soonest re-admission within it).
    """

    def __init__(self, name: str, strategy: str, preset: str = "balanced") -> None:
        super().__init__(name)
        self.strategy = strategy
        self.preset = preset
        self.handle: Any = None
        self.failover: dict[str, object] = {}
        self.max_wait_s = 0.0

    async def start(self, scenario: ChaosScenario, urls: Mapping[str, str], clock: RunTime) -> None:
        from pi_builder_middleware.adapters.litellm import install  # the litellm extra: only when this contender runs

        from pi_builder_middleware import FailoverConfig

        settings = router_settings(scenario, routing=None, cooldowns=False)
        router = await self._build_router(scenario, urls, clock, settings)
        failover = FailoverConfig.preset(self.preset, base_ejection_s=scenario.bench.cooldown_s)
        self.failover = {"preset": self.preset, "base_ejection_s": scenario.bench.cooldown_s}
        self.max_wait_s = round(scenario.load.timeout_s * WAIT_SHARE, 3)
        self.handle = install(
            router, strategy=self.strategy, failover=failover, seed=scenario.seed, max_wait_s=self.max_wait_s
        )

    async def stop(self) -> None:
        if self.handle is not None:
            self.handle.uninstall()
            self.handle = None
        await super().stop()

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "install": {"strategy": self.strategy, "failover": self.failover, "max_wait_s": self.max_wait_s},
        }
