"""The oracle: knows the fault schedule, sends each request only to providers healthy at that moment.

An upper bound, not a product: it ranks the providers that are out of trouble from now until
``oracle_lookahead_s`` ahead (so a request never lands just as a window opens) by the scenario's
objective (expected latency from the configured medians, or price), tries them in that order with the
plain OpenAI SDK; a provider whose concurrency limit its own calls already fill goes to the back. When
every provider is in trouble it holds the request until the first one is back, if that is within the
load's timeout, and otherwise fails it without sending anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from pi_builder_middleware.testing.behaviour import effective_behaviour

from .contenders import API_KEY, Contender, openai_reply
from .load import PlannedRequest, Reply, RunTime
from .metrics import Window, trouble_windows
from .scenario import ChaosProvider, ChaosScenario, Objective

__all__ = ["NoHealthyProviderError", "OracleContender", "next_healthy_at", "oracle_order"]


class NoHealthyProviderError(RuntimeError):
    """Every provider is in trouble at this moment (the oracle fails fast, sending nothing)."""


def _expected_latency_ms(provider: ChaosProvider, stream: bool, tokens: int) -> float:
    b = provider.behaviour
    if not stream:
        return b.latency.median_ms * b.latency_multiplier
    ttft = (b.ttft or b.latency).median_ms * b.latency_multiplier
    return ttft + (0.0 if b.tokens_per_second is None else 1000.0 * tokens / b.tokens_per_second)


def oracle_order(
    scenario: ChaosScenario, troubles: Mapping[str, Sequence[Window]], t: float, *, stream: bool, lookahead_s: float
) -> list[str]:
    """Providers out of trouble during ``[t, t + lookahead_s]``, best first for the scenario's objective."""
    load = scenario.load
    healthy = [
        p
        for p in scenario.providers
        if not any(w.start < t + lookahead_s and w.end > t for w in troubles.get(p.name, ()))
    ]

    def key(p: ChaosProvider) -> tuple[float, float]:
        latency = _expected_latency_ms(p, stream, load.output_tokens)
        if scenario.bench.objective is Objective.COST:
            return p.cost_of(load.input_tokens, load.output_tokens), latency
        return latency, p.cost_of(load.input_tokens, load.output_tokens)

    return [p.name for p in sorted(healthy, key=key)]


def next_healthy_at(troubles: Mapping[str, Sequence[Window]], t: float, lookahead_s: float) -> float | None:
    """The first moment after ``t`` when some provider is out of trouble for ``lookahead_s`` (None: never)."""
    best: float | None = None
    for windows in troubles.values():
        moment = t
        for w in sorted(windows, key=lambda w: w.start):
            if w.start < moment + lookahead_s and w.end > moment:
                moment = w.end
        best = moment if best is None else min(best, moment)
    return best


class OracleContender(Contender):
    """Schedule-aware routing with the OpenAI SDK (``max_retries=0``); falls over only to healthy providers."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._clients: dict[str, Any] = {}
        self._scenario: ChaosScenario | None = None
        self._troubles: dict[str, list[Window]] = {}
        self._clock: RunTime | None = None
        self._in_flight: dict[str, int] = {}

    async def start(self, scenario: ChaosScenario, urls: Mapping[str, str], clock: RunTime) -> None:
        import openai

        self._scenario, self._clock = scenario, clock
        self._troubles = trouble_windows(scenario)
        self._clients = {
            name: openai.AsyncOpenAI(base_url=url, api_key=API_KEY, max_retries=0, timeout=scenario.load.timeout_s)
            for name, url in urls.items()
        }

    async def call(self, request: PlannedRequest) -> Reply:
        assert self._scenario is not None and self._clock is not None
        bench = self._scenario.bench
        order = oracle_order(
            self._scenario, self._troubles, self._clock(), stream=request.stream, lookahead_s=bench.oracle_lookahead_s
        )
        if not order:
            # Everyone is in trouble: wait for the first provider to come back if that fits the timeout.
            wake = next_healthy_at(self._troubles, self._clock(), bench.oracle_lookahead_s)
            if wake is None or wake - request.at_s > self._scenario.load.timeout_s:
                raise NoHealthyProviderError("every provider is in a fault window until after the timeout")
            await asyncio.sleep(max(0.0, wake - self._clock()))
            order = oracle_order(
                self._scenario,
                self._troubles,
                self._clock(),
                stream=request.stream,
                lookahead_s=bench.oracle_lookahead_s,
            )
            if not order:
                raise NoHealthyProviderError("every provider is in a fault window now")
        now = self._clock()
        order = sorted(order, key=lambda name: self._full(name, now))  # stable: keeps the objective's order
        error: Exception | None = None
        for name in order:
            self._in_flight[name] = self._in_flight.get(name, 0) + 1
            try:
                return await self._ask(name, request)
            except Exception as exc:  # a base-rate error on a healthy provider: take the next healthy one
                error = exc
            finally:
                self._in_flight[name] -= 1
        assert error is not None
        raise error

    def _full(self, name: str, t: float) -> bool:
        """Whether the oracle's own calls fill ``name``'s concurrency limit in force at ``t``."""
        assert self._scenario is not None
        provider = self._scenario.provider(name)
        limit = effective_behaviour(provider.behaviour, provider.faults, t).max_concurrent
        return limit is not None and self._in_flight.get(name, 0) >= limit

    async def _ask(self, name: str, request: PlannedRequest) -> Reply:
        assert self._scenario is not None and self._clock is not None
        client = self._clients[name]
        model = self._scenario.provider(name).models[0]
        return await openai_reply(client.chat.completions.create, model, request, self._clock)

    async def stop(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients = {}

    def describe(self) -> dict[str, object]:
        return {
            "client": "openai.AsyncOpenAI(max_retries=0, timeout=load.timeout_s)",
            "objective": self._scenario.bench.objective.value if self._scenario else None,
        }
