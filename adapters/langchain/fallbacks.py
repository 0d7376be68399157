"""``HealthAwareFallbacks``: a Runnable over several runnables, routed per call by the middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
    patch_config,
)
from langchain_core.runnables.utils import ConfigurableFieldSpec, Input, Output, get_unique_config_specs
from langchain_core.utils.pydantic import TypeBaseModel
from typing_extensions import override

from pi_builder_middleware import FailoverConfig, FailoverPreset, HedgePolicy, Middleware, RouteRequest, Strategy

from ._setup import ProvidersArg, check_models, check_routing, derive, provider_tag, runnable
from ._wrapper import RoutingWrapper

__all__ = ["HealthAwareFallbacks"]


class HealthAwareFallbacks(RoutingWrapper, RunnableSerializable[Input, Output]):
    """Several runnables behind one, tried in the order the middleware decides for each call.

    ::

        llm = HealthAwareFallbacks(
            models={"openai/gpt-4o": ChatOpenAI(max_retries=0), "local": ChatLiteLLM(...)},
            strategy="cost-optimal", failover="balanced",
        )
        chain = prompt | llm | StrOutputParser()

    Keys are provider ids. Without ``middleware`` a :class:`Middleware` is built from the keys
    (``providers`` may give costs, quality, capabilities per key); with ``middleware=mw`` every key
    must be one of its provider ids and routing, health and breakers are shared with whoever else
    uses ``mw``. ``first_chunk_timeout_s`` fails a stream over when a provider has not produced its
    first chunk in time. ``route`` is the :class:`RouteRequest` template for every call (filters,
    strategy override, token estimates; its ``timeout_s`` is each call's deadline, its
    ``attempt_timeout_s`` bounds each ``ainvoke`` attempt). ``max_wait_s`` > 0: when no provider can
    answer (all ejected, cooling down, or each failed over), wait for the first to come back and try
    again, until that long after the call started. ``hedge``: a :class:`HedgePolicy` (or True for the
    default one) for the middleware built here, hedging ``ainvoke``/``abatch``/``astream``; False: no
    hedging for this wrapper even over a hedging ``middleware``; None: as the middleware says.

    ``invoke``/``ainvoke``/``batch``/``abatch``/``stream``/``astream`` all route each input on its own
    (``batch`` runs ``invoke`` per input, so ``return_exceptions`` gives per-input errors).
    """

    models: dict[str, Runnable[Input, Output]]
    """The wrapped runnables by provider id."""

    def __init__(
        self,
        models: Mapping[str, Runnable[Input, Output]],
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

    # -- types ---------------------------------------------------------------------------------
    @property
    def _first(self) -> Runnable[Input, Output]:
        return next(iter(self.models.values()))

    @property
    @override
    def InputType(self) -> type[Input]:
        return self._first.InputType

    @property
    @override
    def OutputType(self) -> type[Output]:
        return self._first.OutputType

    @override
    def get_input_schema(self, config: RunnableConfig | None = None) -> TypeBaseModel:
        return self._first.get_input_schema(config)

    @override
    def get_output_schema(self, config: RunnableConfig | None = None) -> TypeBaseModel:
        return self._first.get_output_schema(config)

    @property
    @override
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        return get_unique_config_specs(spec for model in self.models.values() for spec in model.config_specs)

    # -- calls ---------------------------------------------------------------------------------
    @override
    def invoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Output:
        config = ensure_config(config)
        run = get_callback_manager_for_config(config).on_chain_start(**self._run_start(input, config))
        try:
            served = self._loop.invoke(lambda model, cfg: model.invoke(input, cfg, **kwargs), _children(config, run))
        except BaseException as exc:
            run.on_chain_error(exc)
            raise
        output: Output = served[1]
        run.on_chain_end(output)
        return output

    @override
    async def ainvoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Output:
        config = ensure_config(config)
        run = await get_async_callback_manager_for_config(config).on_chain_start(**self._run_start(input, config))
        try:
            served = await self._loop.ainvoke(
                lambda model, cfg: model.ainvoke(input, cfg, **kwargs), _children(config, run)
            )
        except BaseException as exc:
            await run.on_chain_error(exc)
            raise
        output: Output = served[1]
        await run.on_chain_end(output)
        return output

    @override
    def stream(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any | None) -> Iterator[Output]:
        config = ensure_config(config)
        run = get_callback_manager_for_config(config).on_chain_start(**self._run_start(input, config))
        chunks = self._loop.stream(lambda model, cfg: model.stream(input, cfg, **kwargs), _children(config, run))
        output: Any = _NOTHING
        try:
            for chunk in chunks:
                yield chunk
                output = _add(output, chunk)
        except BaseException as exc:
            chunks.close()
            run.on_chain_error(exc)
            raise
        run.on_chain_end(None if output is _NOTHING else output)

    @override
    async def astream(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any | None
    ) -> AsyncIterator[Output]:
        config = ensure_config(config)
        run = await get_async_callback_manager_for_config(config).on_chain_start(**self._run_start(input, config))
        chunks = self._loop.astream(lambda model, cfg: model.astream(input, cfg, **kwargs), _children(config, run))
        output: Any = _NOTHING
        try:
            async for chunk in chunks:
                yield chunk
                output = _add(output, chunk)
        except BaseException as exc:
            await chunks.aclose()
            await run.on_chain_error(exc)
            raise
        await run.on_chain_end(None if output is _NOTHING else output)

    def _run_start(self, input: Any, config: RunnableConfig) -> dict[str, Any]:
        """``on_chain_start``'s arguments for this wrapper's run (named by the caller's run_name and run_id)."""
        return {
            "serialized": None,
            "inputs": input,
            "name": config.get("run_name") or self.get_name(),
            "run_id": config.pop("run_id", None),
        }

    # -- derived wrappers ----------------------------------------------------------------------
    def bind_tools(self, tools: Any, **kwargs: Any) -> HealthAwareFallbacks[Input, Any]:
        """A wrapper over ``model.bind_tools(tools, **kwargs)`` of every model (same middleware)."""
        return self._derive("bind_tools", tools, **kwargs)

    def with_structured_output(self, schema: Any, **kwargs: Any) -> HealthAwareFallbacks[Input, Any]:
        """A wrapper over ``model.with_structured_output(schema, **kwargs)`` of every model (same middleware)."""
        return self._derive("with_structured_output", schema, **kwargs)

    def _derive(self, method: str, *args: Any, **kwargs: Any) -> HealthAwareFallbacks[Input, Any]:
        return HealthAwareFallbacks(derive(self.models, method, args, kwargs), **self._shared())


_NOTHING: Any = object()


def _children(
    config: RunnableConfig, run: CallbackManagerForChainRun | AsyncCallbackManagerForChainRun
) -> Callable[[str], RunnableConfig]:
    """Configs that make each attempt a child run of the wrapper's run, tagged with its provider."""
    return lambda pid: patch_config(config, callbacks=run.get_child(provider_tag(pid)))


def _add(total: Any, chunk: Any) -> Any:
    """Running sum of the chunks for the trace (None once they turn out not to add up)."""
    if total is _NOTHING:
        return chunk
    if total is None:
        return None
    try:
        return total + chunk
    except TypeError:
        return None
