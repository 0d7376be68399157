"""Contenders: the routing set-ups the bench compares, each behind one small interface.

Every contender is built fresh for a run, started against that run's simulator (base URLs by provider
name, the load clock), asked to answer each planned request, and stopped. Frameworks are imported
inside ``start`` so listing contenders stays cheap.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .load import PlannedRequest, Reply, RunTime
from .scenario import ChaosConfigError, ChaosScenario

__all__ = [
    "DEFAULT_CONTENDERS",
    "QUICK_CONTENDERS",
    "WAIT_SHARE",
    "Contender",
    "ContenderSpec",
    "contender_specs",
    "openai_reply",
    "select_contenders",
]

API_KEY = "sk-chaos-bench"
"""The fake key every contender sends (the simulator accepts any key)."""

WAIT_SHARE = 0.9
"""``max_wait_s`` of this project's contenders (both adapters) = this share of the load's timeout (4.5 s of
5 s): the margin leaves the attempt started just before the deadline a moment to answer."""


class Contender(ABC):
    """One routing set-up under test."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    async def start(self, scenario: ChaosScenario, urls: Mapping[str, str], clock: RunTime) -> None:
        """Build clients/routers for this run's simulator (``urls``: provider name -> base URL)."""

    @abstractmethod
    async def call(self, request: PlannedRequest) -> Reply:
        """Answer one request (raise on failure); streams report their first-token time on ``clock``."""

    async def stop(self) -> None:  # noqa: B027  # optional hook: most contenders have nothing to release
        """Release what :meth:`start` built (callbacks, clients)."""

    def describe(self) -> dict[str, object]:
        """The exact settings this contender ran with (for the report)."""
        return {}


async def openai_reply(
    create: Callable[..., Awaitable[Any]], model: str, request: PlannedRequest, clock: RunTime
) -> Reply:
    """Send ``request`` through an OpenAI-shaped ``create`` (the ``openai`` client's
    ``chat.completions.create`` or LiteLLM's ``Router.acompletion``) and read the reply; a stream asks
    for its usage and notes the load-clock time of its first content."""
    if not request.stream:
        response = await create(model=model, messages=request.messages, max_tokens=request.max_tokens)
        return _completion_reply(response)
    stream = await create(
        model=model,
        messages=request.messages,
        max_tokens=request.max_tokens,
        stream=True,
        stream_options={"include_usage": True},
    )
    return await _stream_reply(stream, clock)


def _completion_reply(response: Any) -> Reply:
    """The reply in an OpenAI-shaped chat completion (the ``openai`` client's or LiteLLM's)."""
    usage = getattr(response, "usage", None)
    return Reply(
        text=response.choices[0].message.content or "",
        input_tokens=_tokens(usage, "prompt_tokens"),
        output_tokens=_tokens(usage, "completion_tokens"),
    )


async def _stream_reply(stream: AsyncIterator[Any], clock: RunTime) -> Reply:
    """The reply in an OpenAI-shaped chat completion stream (asked for with ``include_usage``): its text,
    the load-clock time of its first content and the usage its last chunk carries."""
    parts: list[str] = []
    first: float | None = None
    tokens_in = tokens_out = 0
    async for chunk in stream:
        choices = getattr(chunk, "choices", None)
        if choices and choices[0].delta is not None and choices[0].delta.content:
            if first is None:
                first = clock()
            parts.append(choices[0].delta.content)
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            tokens_in, tokens_out = _tokens(usage, "prompt_tokens"), _tokens(usage, "completion_tokens")
    return Reply(text="".join(parts), input_tokens=tokens_in, output_tokens=tokens_out, first_token_s=first)


def _tokens(usage: Any, name: str) -> int:
    return int(getattr(usage, name, 0) or 0)


@dataclass(frozen=True)
class ContenderSpec:
    """A named contender: how to build it and what it is."""

    name: str
    label: str
    family: str
    build: Callable[[], Contender]


def _litellm(name: str, label: str, routing: str) -> ContenderSpec:
    def build() -> Contender:
        from .litellm_contenders import LiteLLMRouterContender

        return LiteLLMRouterContender(name, routing)

    return ContenderSpec(name, label, "litellm", build)


def _pbm_litellm(name: str, label: str, strategy: str, preset: str = "balanced") -> ContenderSpec:
    def build() -> Contender:
        from .litellm_contenders import MiddlewareLiteLLMContender

        return MiddlewareLiteLLMContender(name, strategy, preset)

    return ContenderSpec(name, label, "pbm", build)


def _langchain(name: str, label: str) -> ContenderSpec:
    def build() -> Contender:
        from .langchain_contenders import LangChainFallbacksContender

        return LangChainFallbacksContender(name)

    return ContenderSpec(name, label, "langchain", build)


def _pbm_langchain(
    name: str, label: str, strategy: str, preset: str = "balanced", *, hedge: bool = False
) -> ContenderSpec:
    def build() -> Contender:
        from .langchain_contenders import MiddlewareLangChainContender

        return MiddlewareLangChainContender(name, strategy, preset, hedge=hedge)

    return ContenderSpec(name, label, "pbm", build)


_PRESETS = ("aggressive", "balanced", "conservative")
_STRATEGIES = {
    "latency": "latency-optimal",
    "cost": "cost-optimal",
    "failover": "failover",
    "quality": "quality-optimal",
}


def _variant(name: str) -> ContenderSpec | None:
    """``pbm-<adapter>-<strategy>@<preset>``: one of this project's contenders with another failover preset."""
    base, _, preset = name.partition("@")
    parts = base.split("-")
    if preset not in _PRESETS or len(parts) != 3 or parts[0] != "pbm" or parts[2] not in _STRATEGIES:
        return None
    strategy = _STRATEGIES[parts[2]]
    if parts[1] == "litellm":
        return _pbm_litellm(name, f"pi-builder via LiteLLM, {strategy}, {preset}", strategy, preset)
    if parts[1] == "langchain":
        return _pbm_langchain(name, f"pi-builder via LangChain, {strategy}, {preset}", strategy, preset)
    return None


def _oracle(name: str, label: str) -> ContenderSpec:
    def build() -> Contender:
        from .oracle import OracleContender

        return OracleContender(name)

    return ContenderSpec(name, label, "oracle", build)


def contender_specs() -> dict[str, ContenderSpec]:
    """Every known contender by name, in report order."""
    specs = [
        _litellm("litellm-shuffle", "LiteLLM Router, simple-shuffle", "simple-shuffle"),
        _litellm("litellm-latency", "LiteLLM Router, latency-based-routing", "latency-based-routing"),
        _langchain("langchain-fallbacks", "LangChain with_fallbacks"),
        _pbm_litellm("pbm-litellm-latency", "pi-builder via LiteLLM, latency-optimal", "latency-optimal"),
        _pbm_litellm("pbm-litellm-cost", "pi-builder via LiteLLM, cost-optimal", "cost-optimal"),
        _pbm_litellm("pbm-litellm-failover", "pi-builder via LiteLLM, failover", "failover"),
        _pbm_litellm("pbm-litellm-quality", "pi-builder via LiteLLM, quality-optimal", "quality-optimal"),
        _pbm_langchain("pbm-langchain-latency", "pi-builder via LangChain, latency-optimal", "latency-optimal"),
        _pbm_langchain("pbm-langchain-cost", "pi-builder via LangChain, cost-optimal", "cost-optimal"),
        _pbm_langchain("pbm-langchain-failover", "pi-builder via LangChain, failover", "failover"),
        _pbm_langchain("pbm-langchain-quality", "pi-builder via LangChain, quality-optimal", "quality-optimal"),
        _pbm_langchain(
            "pbm-langchain-hedge", "pi-builder via LangChain, failover order, hedged", "failover", hedge=True
        ),
        _pbm_langchain(
            "pbm-langchain-latency-hedge",
            "pi-builder via LangChain, latency-optimal, hedged",
            "latency-optimal",
            hedge=True,
        ),
        _oracle("oracle", "Oracle (knows the fault schedule)"),
    ]
    return {spec.name: spec for spec in specs}


DEFAULT_CONTENDERS = (
    "litellm-shuffle",
    "litellm-latency",
    "langchain-fallbacks",
    "pbm-litellm-latency",
    "pbm-litellm-cost",
    "pbm-litellm-failover",
    "pbm-langchain-latency",
    "pbm-langchain-cost",
    "pbm-langchain-failover",
    "oracle",
)
"""What ``pi-builder bench`` runs by default (quality-optimal only on request)."""

QUICK_CONTENDERS = ("litellm-shuffle", "langchain-fallbacks", "pbm-litellm-latency", "pbm-langchain-latency", "oracle")
"""The ``--quick`` subset: LiteLLM alone, LangChain with_fallbacks, this project via both adapters, the oracle."""


def select_contenders(names: list[str] | None, *, quick: bool = False) -> list[ContenderSpec]:
    """Specs for ``names`` (``all`` means every known one); the default or quick set when None.

    This project's contenders also come with another failover preset: ``pbm-langchain-latency@aggressive``.
    """
    specs = contender_specs()
    if not names:
        names = list(QUICK_CONTENDERS if quick else DEFAULT_CONTENDERS)
    if names == ["all"]:
        names = list(specs)
    for name in names:
        if name not in specs and (variant := _variant(name)) is not None:
            specs[name] = variant
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ChaosConfigError(
            [
                (
                    "--contenders",
                    f"unknown contender(s) {', '.join(unknown)}; "
                    f"known: {', '.join(specs)}, all; this project's contenders "
                    f"take another failover preset as pbm-...@aggressive",
                )
            ]
        )
    seen: dict[str, ContenderSpec] = {}
    for name in names:
        seen.setdefault(name, specs[name])
    return list(seen.values())
