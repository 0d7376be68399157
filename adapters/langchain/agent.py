"""``HealthAwareModelMiddleware``: health-aware model choice and failover inside LangChain 1.x agents.

::

    from langchain.agents import create_agent
    from pi_builder_middleware.adapters.langchain import HealthAwareModelMiddleware

    health = HealthAwareModelMiddleware(
        models={"openai/gpt-4o": ChatOpenAI(model="gpt-4o", max_retries=0),
                "anthropic/sonnet": "anthropic:claude-sonnet-4-5"},   # or a "provider:model" string
        failover="balanced",
    )
    agent = create_agent("openai:gpt-4o", tools=[search], middleware=[health])

Every model call of the agent asks the middleware for the order: a provider whose breaker is open is
not tried, each attempt is recorded (latency, time to first token when streamed, tokens from
``usage_metadata``, cost, error) and errors that fail over go to the next provider. The agent binds its
tools to whichever model is chosen (``handler(request.override(model=...))``). LangGraph's control flow
(``GraphBubbleUp``: interrupts) passes through untouched and counts as no failure.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from langchain.agents.middleware.types import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from typing_extensions import override

from pi_builder_middleware import (
    ConfigError,
    FailoverConfig,
    FailoverPreset,
    HedgePolicy,
    Middleware,
    OpenAttempt,
    Provider,
    RouteRequest,
    Strategy,
    Usage,
)
from pi_builder_middleware.attempts import run_attempts

from ._agent_call import ControlFlow, Served, call_async, call_sync, is_streaming, response_messages, usage_of_response
from ._loop import FirstChunkTimeoutError
from ._setup import ProvidersArg, check_models, check_routing

__all__ = ["HealthAwareModelMiddleware"]

log = logging.getLogger("pi_builder_middleware.adapters.langchain")

ModelArg = BaseChatModel | str
Handler = Callable[[ModelRequest[Any]], ModelResponse[Any]]
AsyncHandler = Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]]
_OWNER = "HealthAwareModelMiddleware"


class HealthAwareModelMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """An agent middleware that sends each model call to the provider the middleware picks.

    ``models``: provider id -> chat model, or a ``"provider:model"`` string for ``init_chat_model``.
    ``strategy``/``failover``/``providers`` build a new :class:`~pi_builder_middleware.Middleware`
    (default: the keys' order, breakers gating it), or ``middleware=`` shares one (and its view of
    provider health) with the other adapters. ``max_wait_s`` waits out an outage of every provider
    (as in :class:`HealthAwareFallbacks`). ``first_chunk_timeout_s`` fails an async, streamed model call
    over when its first token takes longer; ``route`` is the request template (its ``timeout_s`` is a
    deadline across every attempt, hedge and wait; ``attempt_timeout_s`` bounds each async attempt).
    ``hedge``: a :class:`~pi_builder_middleware.HedgePolicy` (or True for the default one) hedges the
    agent's async model calls that are not streamed (a streamed call sends its tokens to the agent's
    stream as they come, so two racing providers would both show); with ``middleware=``, the shared
    middleware's policy decides and ``hedge=False`` turns it off here.

    Groups: when the model the request arrives with is one of ``models`` (e.g. chosen by
    ``ModelRouterMiddleware`` before this one), only providers of its group (``Provider.group``; all
    models when it has none) are candidates, so content routing picks the group and this middleware the
    healthy member.
    """

    def __init__(
        self,
        models: Mapping[str, ModelArg],
        *,
        middleware: Middleware | None = None,
        strategy: str | Strategy | None = None,
        failover: FailoverConfig | FailoverPreset | str | None = None,
        providers: ProvidersArg | None = None,
        first_chunk_timeout_s: float | None = None,
        max_wait_s: float = 0.0,
        route: RouteRequest | None = None,
        hedge: HedgePolicy | bool | None = None,
    ) -> None:
        super().__init__()
        routing = check_routing(
            _OWNER,
            check_models(models, _OWNER, _chat_model, "chat model"),
            middleware=middleware,
            strategy=strategy,
            failover=failover,
            providers=providers,
            first_chunk_timeout_s=first_chunk_timeout_s,
            max_wait_s=max_wait_s,
            route=route,
            hedge=hedge,
        )
        self.models: dict[str, BaseChatModel] = routing.models
        self.middleware: Middleware = routing.middleware
        self.hedge = routing.hedge
        self.first_chunk_timeout_s = routing.first_chunk_timeout_s
        self.max_wait_s = routing.max_wait_s
        self.route = routing.route or RouteRequest()
        self._routes = self._group_routes()

    # -- which providers a request may go to ----------------------------------------------------
    def _group_routes(self) -> dict[int, tuple[RouteRequest, RouteRequest]]:
        """``id(model) -> (route, streamed route)``, key 0 for a request whose model is none of ours."""
        keys = frozenset(self.models)
        base = self.route
        allowed = keys if base.candidates is None else base.candidates & keys

        def pair(candidates: frozenset[str]) -> tuple[RouteRequest, RouteRequest]:
            return (
                dataclasses.replace(base, candidates=candidates, stream=False, hedge=base.hedge and self.hedge),
                dataclasses.replace(base, candidates=candidates, stream=True, hedge=False),
            )

        routes = {0: pair(allowed)}
        groups = {pid: self.middleware.providers[pid].group for pid in self.models}
        for pid, model in self.models.items():
            group = groups[pid]
            members = allowed if group is None else frozenset(k for k in allowed if groups[k] == group)
            routes[id(model)] = pair(members)
        return routes

    def _route(self, model: object, streamed: bool) -> RouteRequest:
        routes = self._routes.get(id(model))
        if routes is None:
            routes = self._routes[0]
        return routes[1] if streamed else routes[0]

    def _request_for(self, request: ModelRequest[Any], provider: Provider) -> ModelRequest[Any]:
        model = self.models[provider.id]
        if model is request.model:
            return request
        return _sanitized(request, model).override(model=model)

    # -- the hooks ------------------------------------------------------------------------------
    @override
    def wrap_model_call(self, request: ModelRequest[Any], handler: Handler) -> Any:
        streamed = is_streaming()
        clock = self.middleware.clock if streamed else None

        def attempt(provider: Provider) -> Served:
            chosen = self._request_for(request, provider)
            return call_sync(lambda: handler(chosen), clock)

        try:
            opened = run_attempts(
                self.middleware, attempt, self._route(request.model, streamed), max_wait_s=self.max_wait_s
            )
        except ControlFlow as flow:
            error = flow.error
        else:
            return self._served(opened)
        raise error  # outside the except block: the interrupt keeps its own context

    @override
    async def awrap_model_call(self, request: ModelRequest[Any], handler: AsyncHandler) -> Any:
        streamed = is_streaming()
        clock = self.middleware.clock if streamed else None
        first_token_timeout = self.first_chunk_timeout_s if streamed else None

        async def attempt(provider: Provider) -> Served:
            chosen = self._request_for(request, provider)
            timeout = first_token_timeout or 0.0
            return await call_async(
                lambda: handler(chosen),
                clock,
                first_token_timeout,
                lambda: FirstChunkTimeoutError(provider.id, timeout),
            )

        route = self._route(request.model, streamed)
        try:
            opened = await self.middleware.aexecute_open(
                attempt, route, max_wait_s=self.max_wait_s, timeout_s=route.attempt_timeout_s
            )
        except ControlFlow as flow:
            error = flow.error
        else:
            return self._served(opened)
        raise error

    def _served(self, opened: OpenAttempt[Served]) -> Any:
        """End the attempt that answered (latency, first token, tokens) and hand its response on."""
        served = opened.value
        latency = opened.elapsed()
        ttft = None if served.first_token_at is None else max(served.first_token_at - opened.start, 0.0)
        usage: Usage | None
        try:
            usage = usage_of_response(served.response)
            for message in response_messages(served.response):
                if isinstance(message, AIMessage):
                    message.response_metadata.setdefault("provider_id", opened.provider_id)
        except Exception as exc:  # a response we cannot read must not lose the success
            self.middleware.callback_failures.failed("usage", exc)
            usage = None
        opened.succeeded(ttft_s=ttft, usage=usage, latency_s=latency)
        return served.response


def _chat_model(where: str, model: ModelArg) -> BaseChatModel:
    """``model`` as a chat model (a string through ``init_chat_model``); else ConfigError at ``where``."""
    if isinstance(model, str):
        try:
            model = init_chat_model(model)
        except Exception as exc:
            raise ConfigError(
                where,
                f"init_chat_model({model!r}) failed ({type(exc).__name__}: {exc}); give a "
                f"'provider:model' string whose provider package is installed, or a chat "
                f"model",
            ) from exc
    if not isinstance(model, BaseChatModel):
        raise ConfigError(
            where,
            f"expected a BaseChatModel or a 'provider:model' string, got {type(model).__name__}",
        )
    return model


def _sanitized(request: ModelRequest[Any], model: BaseChatModel) -> ModelRequest[Any]:
    """The request without provider-specific cache settings ``model`` cannot take (as ModelFallbackMiddleware does)."""
    try:
        from langchain.agents.middleware import model_fallback
    except ImportError:  # pragma: no cover - shipped with every langchain >= 1.4
        return request
    sanitize: Callable[[ModelRequest[Any], BaseChatModel], ModelRequest[Any]] | None = getattr(
        model_fallback, "_sanitize_request_for_fallback", None
    )
    if sanitize is None:
        return request
    return sanitize(request, model)
