"""``HealthAwareChatModel``: a ``BaseChatModel`` over several chat models, routed per call by the middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, BaseMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import ConfigDict, PrivateAttr, SkipValidation
from typing_extensions import override

from pi_builder_middleware import FailoverConfig, FailoverPreset, Middleware, RouteRequest, Strategy

from ._loop import RoutingLoop
from ._setup import ProvidersArg, build_middleware, check_models, check_timeout, derive, provider_tag
from .fallbacks import HealthAwareFallbacks

__all__ = ["HealthAwareChatModel"]

RunManager = CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun


class HealthAwareChatModel(BaseChatModel):
    """A chat model that sends each call to the provider the middleware picks, failing over as needed.

    ::

        llm = HealthAwareChatModel(
            models={"openai/gpt-4o": ChatOpenAI(max_retries=0), "anthropic/sonnet": ChatAnthropic(max_retries=0)},
            strategy="latency-optimal", failover="balanced",
        )
        agent_model = llm.bind_tools([search])      # still a HealthAwareChatModel

    Same arguments and routing as :class:`HealthAwareFallbacks`; being a ``BaseChatModel`` it also works
    where LangChain insists on a chat model. Each call to a wrapped model is a child run of this
    model's run, tagged ``pbm:provider=<key>``; ``llm_output["provider_id"]`` says which one answered.
    """

    models: dict[str, Runnable[LanguageModelInput, BaseMessage]]
    """The wrapped chat models (or runnables returning messages, e.g. after ``bind_tools``) by provider id."""
    middleware: SkipValidation[Middleware]
    """Routing, health monitoring and breakers (shared by copies made with ``bind_tools`` & co)."""
    first_chunk_timeout_s: float | None = None
    """Fail a stream over when its first chunk takes longer than this (None: wait)."""
    route: SkipValidation[RouteRequest | None] = None
    """Request template for every call."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _loop: RoutingLoop = PrivateAttr()

    def __init__(
        self,
        models: Mapping[str, Runnable[LanguageModelInput, BaseMessage]],
        *,
        middleware: Middleware | None = None,
        strategy: str | Strategy | None = None,
        failover: FailoverConfig | FailoverPreset | str | None = None,
        providers: ProvidersArg | None = None,
        first_chunk_timeout_s: float | None = None,
        route: RouteRequest | None = None,
        **kwargs: Any,
    ) -> None:
        owner = type(self).__name__
        checked = check_models(models, owner)
        mw = build_middleware(checked, middleware=middleware, strategy=strategy, failover=failover,
                              providers=providers, owner=owner)
        fields: dict[str, Any] = {"models": checked, "middleware": mw, "route": route,
                                  "first_chunk_timeout_s": check_timeout(first_chunk_timeout_s, owner)}
        super().__init__(**fields, **kwargs)

    @override
    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        self._loop = RoutingLoop(self.middleware, self.models, route=self.route,
                                 first_chunk_timeout_s=self.first_chunk_timeout_s)

    @property
    @override
    def _llm_type(self) -> str:
        return "pi-builder-middleware"

    @property
    @override
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "models": {key: _describe(model) for key, model in self.models.items()},
            "strategy": self.middleware.router.strategy.name,
            "first_chunk_timeout_s": self.first_chunk_timeout_s,
        }

    # -- LangChain's chat-model hooks ----------------------------------------------------------
    @override
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        call = _call_kwargs(stop, kwargs)
        pid, message = self._loop.invoke(lambda model, cfg: model.invoke(messages, cfg, **call),
                                         _config_for(run_manager))
        return _result(pid, message)

    @override
    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        call = _call_kwargs(stop, kwargs)
        pid, message = await self._loop.ainvoke(lambda model, cfg: model.ainvoke(messages, cfg, **call),
                                                _config_for(run_manager))
        return _result(pid, message)

    @override
    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        call = _call_kwargs(stop, kwargs)
        chunks = self._loop.stream(lambda model, cfg: model.stream(messages, cfg, **call), _config_for(run_manager))
        try:
            for chunk in chunks:
                yield ChatGenerationChunk(message=_as_chunk(chunk))
        finally:
            chunks.close()

    @override
    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
                       ) -> AsyncIterator[ChatGenerationChunk]:
        call = _call_kwargs(stop, kwargs)
        chunks = self._loop.astream(lambda model, cfg: model.astream(messages, cfg, **call),
                                    _config_for(run_manager))
        try:
            async for chunk in chunks:
                yield ChatGenerationChunk(message=_as_chunk(chunk))
        finally:
            await chunks.aclose()

    # -- derived wrappers ----------------------------------------------------------------------
    @override
    def bind_tools(self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any
                   ) -> HealthAwareChatModel:
        """A chat model over ``model.bind_tools(tools, ...)`` of every model (same middleware)."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return HealthAwareChatModel(
            derive(self.models, "bind_tools", (tools,), kwargs), middleware=self.middleware,
            first_chunk_timeout_s=self.first_chunk_timeout_s, route=self.route,
        )

    @override
    def with_structured_output(self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
                               ) -> HealthAwareFallbacks[LanguageModelInput, Any]:
        """A wrapper over ``model.with_structured_output(schema, ...)`` of every model (same middleware).

        Each provider uses its own structured-output method; the result is a :class:`HealthAwareFallbacks`.
        """
        return HealthAwareFallbacks(
            derive(self.models, "with_structured_output", (schema,), {"include_raw": include_raw, **kwargs}),
            middleware=self.middleware, first_chunk_timeout_s=self.first_chunk_timeout_s, route=self.route,
        )


def _call_kwargs(stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    return kwargs if stop is None else {**kwargs, "stop": stop}


def _config_for(run_manager: RunManager | None) -> Callable[[str], RunnableConfig]:
    """Configs whose callbacks make each attempt a child run of this model's run (as ``get_child`` does
    for chains; LLM run managers have no ``get_child``)."""
    if run_manager is None:
        return lambda _pid: RunnableConfig()
    manager_cls = AsyncCallbackManager if isinstance(run_manager, AsyncCallbackManagerForLLMRun) else CallbackManager

    def config_for(pid: str) -> RunnableConfig:
        manager = manager_cls(handlers=[], parent_run_id=run_manager.run_id)
        manager.set_handlers(run_manager.inheritable_handlers)
        manager.add_tags(run_manager.inheritable_tags)
        manager.add_metadata(run_manager.inheritable_metadata)
        manager.add_tags([provider_tag(pid)], inherit=False)
        return RunnableConfig(callbacks=manager)

    return config_for


def _result(provider_id: str, message: Any) -> ChatResult:
    if isinstance(message, str):
        message = AIMessage(content=message)
    if not isinstance(message, BaseMessage):
        raise TypeError(f"model {provider_id!r} returned {type(message).__name__}; HealthAwareChatModel needs "
                        f"chat models (or runnables returning messages); use HealthAwareFallbacks for others")
    return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"provider_id": provider_id})


def _as_chunk(chunk: Any) -> BaseMessageChunk:
    if isinstance(chunk, BaseMessageChunk):
        return chunk
    if isinstance(chunk, str):
        return AIMessageChunk(content=chunk)
    raise TypeError(f"a wrapped model streamed {type(chunk).__name__}; HealthAwareChatModel needs chat models "
                    f"(or runnables streaming message chunks); use HealthAwareFallbacks for others")


def _describe(model: Runnable[Any, Any]) -> dict[str, Any]:
    params = getattr(model, "_identifying_params", None)
    out: dict[str, Any] = {"type": type(model).__name__}
    if isinstance(params, Mapping):
        out.update({k: v for k, v in params.items() if isinstance(v, str | int | float | bool | type(None))})
    return out
