"""LangChain contenders: ``with_fallbacks`` over ChatOpenAI models, and this project's ``HealthAwareFallbacks``.

Every provider is a ``ChatOpenAI(base_url=<simulator>, max_retries=0, timeout=<load.timeout_s>,
max_tokens=<load.output_tokens>, stream_usage=True)``; the provider order of the scenario is the
fallback order (first = primary).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .contenders import API_KEY, WAIT_SHARE, Contender
from .load import PlannedRequest, Reply, RunTime
from .scenario import ChaosScenario

__all__ = ["WAIT_SHARE", "LangChainFallbacksContender", "MiddlewareLangChainContender", "chat_models"]


def chat_models(scenario: ChaosScenario, urls: Mapping[str, str]) -> dict[str, Any]:
    """One ChatOpenAI per provider, in the scenario's order, without SDK retries."""
    from langchain_openai import ChatOpenAI

    load = scenario.load
    return {
        p.name: ChatOpenAI(
            model=p.models[0],
            base_url=urls[p.name],
            api_key=API_KEY,  # type: ignore[arg-type]
            max_retries=0,
            timeout=load.timeout_s,
            max_tokens=load.output_tokens,  # type: ignore[call-arg]
            stream_usage=True,
        )
        for p in scenario.providers
    }


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part if isinstance(part, str) else str(part.get("text", ""))
            for part in content
            if isinstance(part, str | dict)
        )
    return ""


def _usage(message: Any) -> tuple[int, int]:
    usage = getattr(message, "usage_metadata", None) or {}
    return int(usage.get("input_tokens", 0) or 0), int(usage.get("output_tokens", 0) or 0)


class _RunnableContender(Contender):
    """Shared calling code: ``ainvoke`` / ``astream`` on one runnable."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.runnable: Any = None
        self._clock: RunTime | None = None

    async def call(self, request: PlannedRequest) -> Reply:
        assert self.runnable is not None and self._clock is not None
        messages = [("user", request.prompt)]
        if not request.stream:
            message = await self.runnable.ainvoke(messages)
            tokens_in, tokens_out = _usage(message)
            return Reply(text=_text(message.content), input_tokens=tokens_in, output_tokens=tokens_out)
        parts: list[str] = []
        first: float | None = None
        tokens_in = tokens_out = 0
        async for chunk in self.runnable.astream(messages):
            piece = _text(getattr(chunk, "content", ""))
            if piece:
                if first is None:
                    first = self._clock()
                parts.append(piece)
            chunk_in, chunk_out = _usage(chunk)
            tokens_in += chunk_in
            tokens_out += chunk_out
        return Reply(text="".join(parts), input_tokens=tokens_in, output_tokens=tokens_out, first_token_s=first)

    async def stop(self) -> None:
        self.runnable = None


class LangChainFallbacksContender(_RunnableContender):
    """``primary.with_fallbacks([backup, ...])``: every call starts at the primary, no memory of health."""

    async def start(self, scenario: ChaosScenario, urls: Mapping[str, str], clock: RunTime) -> None:
        models = list(chat_models(scenario, urls).values())
        self.runnable = models[0].with_fallbacks(models[1:])
        self._clock = clock

    def describe(self) -> dict[str, object]:
        return {
            "runnable": "models[0].with_fallbacks(models[1:]) (exceptions_to_handle=(Exception,))",
            "chat_model": "ChatOpenAI(max_retries=0, timeout=load.timeout_s, stream_usage=True)",
        }


class MiddlewareLangChainContender(_RunnableContender):
    """``HealthAwareFallbacks(models=..., strategy=..., failover=...)`` over the same ChatOpenAI models.

    Prices and quality go in ``providers``; the breaker is the ``balanced`` preset (or ``preset``) with
    ``base_ejection_s`` = the scenario's ``cooldown_s`` (what LiteLLM's cooldown gets);
    ``first_chunk_timeout_s`` and ``route.timeout_s`` equal the load's timeout, as the other contenders'.
    ``max_wait_s`` is :data:`WAIT_SHARE` of the load's timeout: when every provider is down the
    call waits for the first breaker to let calls through again and retries within the request's time
    budget, as the LiteLLM contenders' routers retry within the same timeout (0 would fail at once);
    with it, ``escalate_when_all_out=False`` (as the README recommends for waiting callers): while every
    provider is out, a failed trial re-ejects for the base time, so a recovery is found within the budget.
    ``hedge`` True: the middleware gets the default :class:`HedgePolicy` (adaptive delay, one hedge,
    retry budget ratio 0.1).
    """

    def __init__(self, name: str, strategy: str, preset: str = "balanced", *, hedge: bool = False) -> None:
        super().__init__(name)
        self.strategy = strategy
        self.preset = preset
        self.hedge = hedge
        self.settings: dict[str, object] = {}

    async def start(self, scenario: ChaosScenario, urls: Mapping[str, str], clock: RunTime) -> None:
        from pi_builder_middleware.adapters.langchain import HealthAwareFallbacks as fallbacks  # the langchain extra

        from pi_builder_middleware import FailoverConfig, HedgePolicy, RouteRequest

        load = scenario.load
        providers = {
            p.name: {
                "cost_per_1k_input": p.cost_per_1k_input,
                "cost_per_1k_output": p.cost_per_1k_output,
                "quality": p.quality,
            }
            for p in scenario.providers
        }
        failover = FailoverConfig.preset(
            self.preset, base_ejection_s=scenario.bench.cooldown_s, escalate_when_all_out=False
        )
        route = RouteRequest(input_tokens=load.input_tokens, output_tokens=load.output_tokens, timeout_s=load.timeout_s)
        max_wait_s = round(load.timeout_s * WAIT_SHARE, 3)
        policy = HedgePolicy() if self.hedge else None
        self.runnable = fallbacks(
            chat_models(scenario, urls),
            strategy=self.strategy,
            failover=failover,
            providers=providers,
            route=route,
            first_chunk_timeout_s=load.timeout_s,
            max_wait_s=max_wait_s,
            hedge=policy,
        )
        self._clock = clock
        self.settings = {
            "strategy": self.strategy,
            "failover": {
                "preset": self.preset,
                "base_ejection_s": scenario.bench.cooldown_s,
                "escalate_when_all_out": False,
            },
            "first_chunk_timeout_s": load.timeout_s,
            "route.timeout_s": load.timeout_s,
            "max_wait_s": max_wait_s,
        }
        if policy is not None:
            self.settings["hedge"] = {
                "delay_s": policy.delay_s,
                "max_hedges": policy.max_hedges,
                "budget_ratio": policy.budget_ratio,
                "quantile": policy.quantile,
                "stream_quantile": policy.stream_quantile,
            }

    def describe(self) -> dict[str, object]:
        return {
            "runnable": "HealthAwareFallbacks(models, strategy, failover, providers, route, first_chunk_timeout_s, "
            "max_wait_s=0.9 * load.timeout_s" + (", hedge=HedgePolicy())" if self.hedge else ")"),
            **self.settings,
        }
