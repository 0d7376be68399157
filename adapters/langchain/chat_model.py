"""``HealthAwareChatModel``: a ``BaseChatModel`` over several chat models, routed per call by the middleware."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple, cast
from uuid import UUID

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackManager,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, BaseMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
)
from langchain_core.runnables.utils import ConfigurableFieldSpec, get_unique_config_specs
from langchain_core.utils.uuid import uuid7
from pydantic import PrivateAttr
from typing_extensions import override

from pi_builder_middleware import FailoverConfig, FailoverPreset, HedgePolicy, Middleware, RouteRequest, Strategy

from ._loop import RoutingLoop
from ._setup import ProvidersArg, check_models, check_routing, derive, provider_tag, runnable
from ._standard import TOOL_OPTIONS_KEY, ToolBindings, ToolSpec, openai_tools, split_tool_kwargs, standard_ls_params
from ._wrapper import RoutingWrapper
from .fallbacks import HealthAwareFallbacks

__all__ = ["HealthAwareChatModel"]

RunManager = CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun
#: LangGraph's tag for chat-model runs whose tokens its "messages" stream mode must not emit.
NOSTREAM_TAG = "nostream"


class _StreamParent(NamedTuple):
    """This model's streaming run, handed to ``_stream`` (which LangChain calls without its run manager).

    ``opened``: the async streams ``_astream`` returned, closed by ``astream`` when the reader stops:
    LangChain's ``astream`` leaves them to the garbage collector, so their attempt would stay in flight.
    """

    model: object
    run_id: UUID
    manager: BaseCallbackManager
    opened: list[AsyncGenerator[ChatGenerationChunk, None]]


_STREAM_PARENT: ContextVar[_StreamParent | None] = ContextVar("pbm_langchain_stream_parent", default=None)


class _CallerConfig(NamedTuple):
    """The config this model's public entry point was called with (``_generate`` & co never see it)."""

    model: object
    config: RunnableConfig


_CALLER_CONFIG: ContextVar[_CallerConfig | None] = ContextVar("pbm_langchain_caller_config", default=None)
#: Keys of the caller's config passed on to the wrapped models besides callbacks (which carry tags and
#: metadata): run_name and run_id name this model's own run, so they are not.
_PASSED_KEYS = ("configurable", "recursion_limit", "max_concurrency")


class HealthAwareChatModel(RoutingWrapper, BaseChatModel):
    """A chat model that sends each call to the provider the middleware picks, failing over as needed.

    ::

        llm = HealthAwareChatModel(
            models={"openai/gpt-4o": ChatOpenAI(max_retries=0), "anthropic/sonnet": ChatAnthropic(max_retries=0)},
            strategy="latency-optimal", failover="balanced",
        )
        agent_model = llm.bind_tools([search])      # a RunnableBinding of llm; each model binds the tools

    Same arguments and routing as :class:`HealthAwareFallbacks`; being a ``BaseChatModel`` it also works
    where LangChain insists on a chat model. Each call to a wrapped model is a child run of this
    model's run, tagged ``pbm:provider=<key>``; ``llm_output["provider_id"]`` says which one answered.
    """

    models: dict[str, Runnable[LanguageModelInput, BaseMessage]]
    """The wrapped chat models (or runnables returning messages, e.g. after ``bind_tools``) by provider id."""

    _tool_loops: ToolBindings = PrivateAttr(default_factory=ToolBindings)

    def __init__(
        self,
        models: Mapping[str, Runnable[LanguageModelInput, BaseMessage]],
        *,
        middleware: Middleware | None = None,
        strategy: str | Strategy | None = None,
        failover: FailoverConfig | FailoverPreset | str | None = None,
        providers: ProvidersArg | None = None,
        first_chunk_timeout_s: float | None = None,
        max_wait_s: float = 0.0,
        route: RouteRequest | None = None,
        hedge: HedgePolicy | bool | None = None,
        **kwargs: Any,
    ) -> None:
        owner = type(self).__name__
        routing = check_routing(
            owner,
            check_models(models, owner, runnable),
            middleware=middleware,
            strategy=strategy,
            failover=failover,
            providers=providers,
            first_chunk_timeout_s=first_chunk_timeout_s,
            max_wait_s=max_wait_s,
            route=route,
            hedge=hedge,
        )
        super().__init__(**routing.fields(), **kwargs)

    def _prepared(
        self,
        stop: list[str] | None,
        kwargs: dict[str, Any],
        run_manager: RunManager | None,
        *,
        streaming: bool = False,
    ) -> tuple[RoutingLoop, dict[str, Any], Callable[[str], RunnableConfig]]:
        """What one call of a LangChain hook needs: the loop (over the models bound to its tools, if any),
        the remaining call kwargs and the configs that make each attempt a child run of this one."""
        spec, rest = split_tool_kwargs(kwargs)
        call = _call_kwargs(stop, rest)
        configs = self._child_configs(run_manager, streaming=streaming)
        if spec is None:
            return self._loop, call, configs
        loop = self._tool_loops.get(spec, lambda: self._new_loop(self._tool_loops.derive(self.models, spec)))
        return loop, call, configs

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
            "max_wait_s": self.max_wait_s,
        }

    @property
    @override
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        """The wrapped models' configurable fields (the caller's ``configurable`` values reach them)."""
        return get_unique_config_specs(spec for model in self.models.values() for spec in model.config_specs)

    # -- LangChain's chat-model hooks ----------------------------------------------------------
    @override
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        loop, call, configs = self._prepared(stop, kwargs, run_manager)
        pid, message = loop.invoke(lambda model, cfg: model.invoke(messages, cfg, **call), configs)
        return _result(pid, message)

    @override
    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        loop, call, configs = self._prepared(stop, kwargs, run_manager)
        pid, message = await loop.ainvoke(lambda model, cfg: model.ainvoke(messages, cfg, **call), configs)
        return _result(pid, message)

    @override
    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        loop, call, configs = self._prepared(stop, kwargs, run_manager, streaming=True)
        chunks = loop.stream(lambda model, cfg: model.stream(messages, cfg, **call), configs)
        try:
            for chunk in chunks:
                yield ChatGenerationChunk(message=_as_chunk(chunk))
        finally:
            chunks.close()

    @override
    def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        stream = self._astream_routed(messages, stop, run_manager, **kwargs)
        parent = _STREAM_PARENT.get()
        if parent is not None and parent.model is self:
            parent.opened.append(stream)
        return stream

    async def _astream_routed(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: AsyncCallbackManagerForLLMRun | None,
        **kwargs: Any,
    ) -> AsyncGenerator[ChatGenerationChunk, None]:
        loop, call, configs = self._prepared(stop, kwargs, run_manager, streaming=True)
        chunks = loop.astream(lambda model, cfg: model.astream(messages, cfg, **call), configs)
        try:
            async for chunk in chunks:
                yield ChatGenerationChunk(message=_as_chunk(chunk))
        finally:
            await chunks.aclose()

    # -- keeping the real calls child runs of this model's run ------------------------------------
    # LangChain passes the run manager to _generate, but calls _stream from stream()/astream() (and from
    # invoke() when a streaming handler is attached) without it. stream()/astream() therefore fix this
    # run's id and callback manager up front and hand them to _stream; invoke() does not take the
    # _stream detour (the wrapped models stream to such handlers themselves, as child runs).
    @override
    def _should_stream(self, *, async_api: bool, run_manager: RunManager | None = None, **kwargs: Any) -> bool:
        if not kwargs.get("stream"):
            return False
        return super()._should_stream(async_api=async_api, run_manager=run_manager, **kwargs)

    # -- passing the caller's config (configurable & co) on to the wrapped models -------------------
    # invoke()/ainvoke() (and batch()/abatch(), which call them) and stream()/astream() record the
    # caller's config in a context variable that _child_configs reads. batch() runs each invoke() in a
    # copy of the caller's context, so every input keeps its own config.
    @override
    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        config = ensure_config(config)
        with self._entered(config):
            return super().invoke(input, config, stop=stop, **kwargs)

    @override
    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        config = ensure_config(config)
        with self._entered(config):
            return await super().ainvoke(input, config, stop=stop, **kwargs)

    @override
    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        config = ensure_config(config)
        parent = _StreamParent(self, config.get("run_id") or uuid7(), get_callback_manager_for_config(config), [])
        chunks = cast(
            Generator[AIMessageChunk, None, None], super().stream(input, _pinned(config, parent), stop=stop, **kwargs)
        )
        try:
            with self._entered(config, parent):
                first = next(chunks, None)  # _stream starts inside this call and picks the parent up
            if first is not None:
                yield first
                yield from chunks
        finally:
            chunks.close()

    @override
    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        config = ensure_config(config)
        parent = _StreamParent(self, config.get("run_id") or uuid7(), get_async_callback_manager_for_config(config), [])
        chunks = cast(
            AsyncGenerator[AIMessageChunk, None], super().astream(input, _pinned(config, parent), stop=stop, **kwargs)
        )
        try:
            with self._entered(config, parent):
                first = await anext(chunks, None)
            if first is not None:
                yield first
                async for chunk in chunks:
                    yield chunk
        finally:
            await chunks.aclose()
            for opened in parent.opened:
                await opened.aclose()

    @contextmanager
    def _entered(self, config: RunnableConfig, parent: _StreamParent | None = None) -> Iterator[None]:
        """Record the caller's config (and, for a stream, this model's run) for the hooks LangChain calls inside."""
        caller = _CALLER_CONFIG.set(_CallerConfig(self, config))
        stream = None if parent is None else _STREAM_PARENT.set(parent)
        try:
            yield
        finally:
            if stream is not None:
                _STREAM_PARENT.reset(stream)
            _CALLER_CONFIG.reset(caller)

    def _child_configs(
        self, run_manager: RunManager | None, *, streaming: bool = False
    ) -> Callable[[str], RunnableConfig]:
        """Configs that make each attempt a child run of this model's run.

        When this model streams, it emits the tokens itself, so the wrapped models' runs are tagged
        ``nostream`` (LangGraph's "messages" stream would otherwise show every token twice). The caller's
        ``configurable`` (and recursion / concurrency limits) are passed on, when a public entry point
        recorded them.
        """
        tags = [NOSTREAM_TAG] if streaming else []
        caller = _CALLER_CONFIG.get()
        passed = _passed(caller.config) if caller is not None and caller.model is self else RunnableConfig()
        if run_manager is not None:
            cls = AsyncCallbackManager if isinstance(run_manager, AsyncCallbackManagerForLLMRun) else CallbackManager
            return lambda pid: _child_config(run_manager, run_manager.run_id, pid, cls, tags, passed)
        parent = _STREAM_PARENT.get()
        if parent is not None and parent.model is self:
            return lambda pid: _child_config(parent.manager, parent.run_id, pid, type(parent.manager), tags, passed)
        # called some other way: at least keep the caller's callbacks
        return lambda pid: ensure_config(passed or None)

    # -- derived wrappers ----------------------------------------------------------------------
    @override
    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """This model bound to ``tools``: a ``RunnableBinding``, as LangChain's chat models return.

        Each call hands the tools (and ``tool_choice`` and further options) to the ``bind_tools`` of the
        model it goes to, so every provider formats them its own way. Raises NotImplementedError here,
        naming the model, if a wrapped model has no ``bind_tools``.
        """
        formatted = openai_tools(tools)
        spec = ToolSpec(formatted, tool_choice, kwargs)
        self._tool_loops.remember(spec, self._new_loop(self._tool_loops.derive(self.models, spec)))
        bound: dict[str, Any] = {"tools": formatted}
        if tool_choice is not None:
            bound["tool_choice"] = tool_choice
        if kwargs:
            bound[TOOL_OPTIONS_KEY] = dict(kwargs)
        return RunnableBinding(bound=self, kwargs=bound, config={})

    @override
    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """Standard tracing params: those of the model a call would start with (the first available key).

        Each attempt's own run (a child of this one) carries the params of the provider that served it.
        """
        return standard_ls_params(self.models, self.middleware, stop, kwargs)

    @override
    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> HealthAwareFallbacks[LanguageModelInput, Any]:
        """A wrapper over ``model.with_structured_output(schema, ...)`` of every model (same middleware).

        Each provider uses its own structured-output method; the result is a :class:`HealthAwareFallbacks`.
        """
        structured = derive(self.models, "with_structured_output", (schema,), {"include_raw": include_raw, **kwargs})
        return HealthAwareFallbacks(structured, **self._shared())


def _call_kwargs(stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    return kwargs if stop is None else {**kwargs, "stop": stop}


def _child_config(
    source: RunManager | BaseCallbackManager,
    run_id: UUID,
    pid: str,
    cls: type[BaseCallbackManager],
    tags: list[str],
    passed: RunnableConfig,
) -> RunnableConfig:
    """What ``run_manager.get_child(tag)`` gives chains (LLM run managers have no ``get_child``)."""
    manager = cls(handlers=[], parent_run_id=run_id)
    manager.set_handlers(source.inheritable_handlers)
    manager.add_tags(source.inheritable_tags)
    manager.add_metadata(source.inheritable_metadata)
    manager.add_tags([*tags, provider_tag(pid)], inherit=False)
    child = passed.copy()
    child["callbacks"] = manager
    return child


def _passed(config: RunnableConfig) -> RunnableConfig:
    """The part of the caller's config the wrapped models get besides callbacks (tags and metadata ride on those)."""
    passed = RunnableConfig()
    for key in _PASSED_KEYS:
        if key in config:
            passed[key] = config[key]  # type: ignore[literal-required]
    if "configurable" in passed:
        passed["configurable"] = dict(passed["configurable"])
    return passed


def _pinned(config: RunnableConfig, parent: _StreamParent) -> RunnableConfig:
    """``config`` with this run's id and (already configured) callback manager fixed."""
    pinned = config.copy()
    pinned["run_id"] = parent.run_id
    pinned["callbacks"] = parent.manager
    return pinned


def _result(provider_id: str, message: Any) -> ChatResult:
    if isinstance(message, str):
        message = AIMessage(content=message)
    if not isinstance(message, BaseMessage):
        raise TypeError(
            f"model {provider_id!r} returned {type(message).__name__}; HealthAwareChatModel needs "
            f"chat models (or runnables returning messages); use HealthAwareFallbacks for others"
        )
    return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"provider_id": provider_id})


def _as_chunk(chunk: Any) -> BaseMessageChunk:
    if isinstance(chunk, BaseMessageChunk):
        return chunk
    if isinstance(chunk, str):
        return AIMessageChunk(content=chunk)
    raise TypeError(
        f"a wrapped model streamed {type(chunk).__name__}; HealthAwareChatModel needs chat models "
        f"(or runnables streaming message chunks); use HealthAwareFallbacks for others"
    )


def _describe(model: Runnable[Any, Any]) -> dict[str, Any]:
    params = getattr(model, "_identifying_params", None)
    out: dict[str, Any] = {"type": type(model).__name__}
    if isinstance(params, Mapping):
        out.update({k: v for k, v in params.items() if isinstance(v, str | int | float | bool | type(None))})
    return out
