"""The LiteLLM custom routing strategy that lets the middleware choose each deployment."""

from __future__ import annotations

import logging
import random
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from litellm.router import CustomRoutingStrategyBase
from litellm.router_api import RoutingContext

from pi_builder_middleware import ConfigError, NoProviderAvailableError, RouteRequest

from ._binding import METADATA_KEY, ROUTE_OPTIONS_KEY, TRACE_KEY, Binding, metadata_field
from ._providers import deployment_id

__all__ = ["MiddlewareRoutingStrategy", "route_request"]

log = logging.getLogger("pi_builder_middleware.adapters.litellm")

_DEFAULT_OUTPUT_TOKENS = RouteRequest().output_tokens
_DEFAULT_INPUT_TOKENS = RouteRequest().input_tokens
_OPTION_FIELDS = ("strategy", "required_capabilities", "max_latency_ms", "min_availability", "exclude")


def _stamp(request_kwargs: dict[str, Any], token: str) -> None:
    """Put the router token (and the request's trace id) into LiteLLM's own metadata for this request."""
    stamp = {METADATA_KEY: token}
    trace = request_kwargs.get("litellm_trace_id")
    if isinstance(trace, str):
        stamp[TRACE_KEY] = trace
    field = metadata_field(request_kwargs)
    metadata = request_kwargs.get(field)
    if isinstance(metadata, dict):
        metadata.update(stamp)
        if not isinstance(trace, str):
            metadata.pop(TRACE_KEY, None)
    elif metadata is None:
        request_kwargs[field] = stamp
    else:  # some other mapping type: keep it, add ours in a copy
        request_kwargs[field] = {**dict(metadata), **stamp}


def _attempted(metadata: Mapping[str, Any]) -> frozenset[str]:
    """Deployment ids this request already tried (LiteLLM's ``previous_models`` on a retry/fallback)."""
    previous = metadata.get("previous_models")
    if not previous:
        return frozenset()
    return frozenset(str(p["deployment_id"]) for p in previous
                     if isinstance(p, Mapping) and p.get("deployment_id") is not None)


def _input_tokens(messages: object, input: object) -> int:
    chars = 0
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, Mapping) else None
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                for part in content:
                    text = part.get("text") if isinstance(part, Mapping) else None
                    if isinstance(text, str):
                        chars += len(text)
    elif isinstance(input, str):
        chars = len(input)
    elif isinstance(input, list):
        chars = sum(len(i) for i in input if isinstance(i, str))
    return chars // 4 + 1 if chars else _DEFAULT_INPUT_TOKENS


def route_request(request_kwargs: Mapping[str, Any], candidates: Iterable[str], *, exclude: Iterable[str] = (),
                  messages: object = None, input: object = None) -> RouteRequest:
    """The :class:`RouteRequest` for one LiteLLM pick.

    ``candidates`` are LiteLLM's healthy deployments for the model group, so LiteLLM's own cooldowns,
    tags and pre-call checks stay in force. ``stream=True`` for streaming calls (latency-aware
    strategies then rank by time to first token). Token estimates: ~4 characters per input token,
    ``max_tokens`` / ``max_completion_tokens`` for output. Per-request options may be given as
    ``metadata={"pi_builder_middleware": {"strategy": ..., "required_capabilities": [...],
    "max_latency_ms": ..., "min_availability": ..., "exclude": [...]}}``.
    """
    options = None
    for field in ("litellm_metadata", "metadata"):
        metadata = request_kwargs.get(field)
        if isinstance(metadata, Mapping) and metadata.get(ROUTE_OPTIONS_KEY) is not None:
            options = metadata[ROUTE_OPTIONS_KEY]
            break
    extra: dict[str, Any] = {}
    if options is not None:
        if not isinstance(options, Mapping) or set(options) - set(_OPTION_FIELDS):
            raise ConfigError(f"metadata[{ROUTE_OPTIONS_KEY!r}]",
                              f"expected a dict with some of {list(_OPTION_FIELDS)}, got {options!r}")
        extra = {k: v for k, v in options.items() if v is not None}
        for key in ("required_capabilities", "exclude"):
            if key in extra and not isinstance(extra[key], str):
                extra[key] = frozenset(extra[key])
    excluded = frozenset(exclude) | extra.pop("exclude", frozenset())
    max_out = request_kwargs.get("max_completion_tokens") or request_kwargs.get("max_tokens")
    return RouteRequest(
        candidates=frozenset(candidates),
        exclude=excluded,
        stream=request_kwargs.get("stream") is True,
        input_tokens=_input_tokens(messages if messages is not None else request_kwargs.get("messages"),
                                   input if input is not None else request_kwargs.get("input")),
        output_tokens=max_out if isinstance(max_out, int) and max_out > 0 else _DEFAULT_OUTPUT_TOKENS,
        **extra,
    )


def _group(ctx: Any, model: str) -> tuple[list[Mapping[str, Any]], list[str]]:
    """The model group's deployments (aliases and wildcards resolved by LiteLLM's registry) and their ids."""
    deployments = list(ctx.registry().deployments(model) or ())
    if not deployments:
        from litellm.exceptions import BadRequestError

        raise BadRequestError(message=f"no deployments for model {model!r} on this router", model=model,
                              llm_provider="")
    return deployments, [deployment_id(d) or "" for d in deployments]


def _without_cooling(model: str, deployments: list[Mapping[str, Any]], ids: list[str],
                     cooling: set[str]) -> list[Mapping[str, Any]]:
    """``deployments`` minus those LiteLLM cools down or an admin paused; LiteLLM's error if none is left."""
    healthy = [d for d, pid in zip(deployments, ids, strict=True)
               if pid not in cooling and not _paused(d)]
    if not healthy:
        from litellm.types.router import RouterRateLimitError

        raise RouterRateLimitError(model=model, cooldown_time=0.0, enable_pre_call_checks=False,
                                   cooldown_list=sorted(cooling))
    return healthy


def _paused(deployment: Mapping[str, Any]) -> bool:
    info = deployment.get("model_info")
    return isinstance(info, Mapping) and info.get("blocked") is True


class MiddlewareRoutingStrategy(CustomRoutingStrategyBase):
    """Asks the middleware to choose among LiteLLM's healthy deployments for the requested group.

    - Candidates: LiteLLM's healthy list (its cooldowns respected), minus deployments whose breaker is
      open (the installation's ``async_filter_deployments`` removes them; the sync path does it here).
    - A retry or fallback attempt avoids deployments this request already tried, as long as another
      candidate is left, so ``num_retries`` becomes failover inside the group.
    - If the middleware excludes every candidate (all breakers open, all rate limited), the call is
      not failed: a deployment is drawn at random from LiteLLM's healthy list, preferring ones not yet
      tried, as LiteLLM's default ``simple-shuffle`` would. Counted as ``fallback_picks``.
    """

    def __init__(self, router: Any, binding: Binding, *, seed: int | None = None,
                 group_candidates: bool = False) -> None:
        self._router_ref = weakref.ref(router)
        #: True: candidates are the group's deployments minus LiteLLM's cooldowns (fast); False: LiteLLM's
        #: full healthy list (tags, pre-call checks, team/budget/health-check filters, other callbacks).
        self.group_candidates = group_candidates
        self._binding = binding
        self._rng = random.Random(seed)

    def _context(self) -> Any:
        router = self._router_ref()
        if router is None:
            raise ConfigError("router", "the litellm.Router this strategy was installed on no longer exists")
        return RoutingContext(router)

    async def async_get_available_deployment(  # type: ignore[override]  # LiteLLM's base is annotated -> None
        self,
        model: str,
        messages: list[dict[str, str]] | None = None,
        input: str | list[object] | None = None,
        specific_deployment: bool | None = False,
        request_kwargs: dict[str, object] | None = None,
    ) -> Mapping[str, Any]:
        """The async pick (``Router.acompletion`` and every other async endpoint)."""
        request: dict[str, Any] = request_kwargs if request_kwargs is not None else {}
        _stamp(request, self._binding.token)
        ctx = self._context()
        if self.group_candidates and not specific_deployment:
            deployments, ids = _group(ctx, model)
            cooling = {pid for pid, _ in await ctx.health().cooldowns.async_get_active_cooldowns(ids, None)}
            healthy = _without_cooling(model, deployments, ids, cooling)
            return self.choose(self._binding.filter(healthy), request, messages=messages, input=input)
        selected = await ctx.select(model, request, kind="healthy", messages=messages, input=input,
                                    specific_deployment=specific_deployment)
        if isinstance(selected, Mapping):
            return selected  # a specific deployment was asked for: LiteLLM already resolved it
        return self.choose(list(selected), request, messages=messages, input=input)

    def get_available_deployment(  # type: ignore[override]  # LiteLLM's base is annotated -> None
        self,
        model: str,
        messages: list[dict[str, str]] | None = None,
        input: str | list[object] | None = None,
        specific_deployment: bool | None = False,
        request_kwargs: dict[str, object] | None = None,
    ) -> Mapping[str, Any]:
        """The sync pick (``Router.completion``): the group's deployments minus LiteLLM's cooldowns.

        LiteLLM's sync path has no async selection pipeline to ask (and calls no callback filters),
        so candidates are always the group's deployments less those cooling down or paused.
        """
        request: dict[str, Any] = request_kwargs if request_kwargs is not None else {}
        _stamp(request, self._binding.token)
        ctx = self._context()
        if specific_deployment:  # ``model`` names one deployment's litellm model: no choice to make
            named = [d for d in ctx.registry().all()
                     if isinstance(d.get("litellm_params"), Mapping) and d["litellm_params"].get("model") == model]
            return _without_cooling(model, named, [deployment_id(d) or "" for d in named], set())[0]
        deployments, ids = _group(ctx, model)
        cooling = {pid for pid, _ in ctx.health().cooldowns.get_active_cooldowns(ids, None)}
        healthy = _without_cooling(model, deployments, ids, cooling)
        return self.choose(self._binding.filter(healthy), request, messages=messages, input=input)

    def choose(self, healthy: Sequence[Mapping[str, Any]], request_kwargs: Mapping[str, Any], *,
               messages: object = None, input: object = None) -> Mapping[str, Any]:
        """Let the middleware pick one of ``healthy`` (LiteLLM's candidates) for this request."""
        binding = self._binding
        by_id: dict[str, Mapping[str, Any]] = {}
        for deployment in healthy:
            pid = deployment_id(deployment)
            if pid is not None:
                by_id.setdefault(pid, deployment)
        if not by_id:  # deployments without ids (not built by a Router): nothing to decide with
            if not healthy:
                raise NoProviderAvailableError({})
            return healthy[0]
        binding.ensure_current(by_id)
        metadata = request_kwargs.get(metadata_field(request_kwargs))
        attempted = _attempted(metadata) if isinstance(metadata, Mapping) else frozenset()
        tried_here = attempted & by_id.keys()
        avoid = tried_here if len(tried_here) < len(by_id) else frozenset()
        request = route_request(request_kwargs, by_id, exclude=avoid, messages=messages, input=input)
        mw = binding.middleware
        try:
            decision = mw.select(request)
        except NoProviderAvailableError:
            decision = None
            if avoid:  # everything untried is unavailable: an available, already-tried one beats none
                try:
                    decision = mw.select(route_request(request_kwargs, by_id, messages=messages, input=input))
                except NoProviderAvailableError:
                    decision = None
        binding.counts["picks"] += 1
        if decision is not None:
            return by_id[decision.provider.id]
        return self._fallback(by_id, attempted, request, avoid)

    def _fallback(self, by_id: Mapping[str, Mapping[str, Any]], attempted: frozenset[str], request: RouteRequest,
                  avoid: frozenset[str]) -> Mapping[str, Any]:
        """Every candidate is unavailable to the middleware: draw from LiteLLM's healthy list instead.

        What the caller asked for explicitly (``exclude`` / ``required_capabilities`` in the request
        options) still holds; if no candidate meets it, NoProviderAvailableError is raised.
        """
        binding = self._binding
        providers = binding.middleware.providers
        user_excluded = request.exclude - avoid
        needs = request.required_capabilities
        reasons: dict[str, str] = {}
        allowed: dict[str, Mapping[str, Any]] = {}
        for pid, deployment in by_id.items():
            have = providers[pid].capabilities if pid in providers else frozenset()
            if pid in user_excluded:
                reasons[pid] = "excluded by the request's options"
            elif not needs <= have:
                reasons[pid] = f"missing capabilities: {', '.join(sorted(needs - have))}"
            else:
                allowed[pid] = deployment
        if not allowed:
            raise NoProviderAvailableError(reasons)
        pool = [d for pid, d in allowed.items() if pid not in attempted] or list(allowed.values())
        binding.counts["fallback_picks"] += 1
        if binding.counts["fallback_picks"] == 1 or log.isEnabledFor(logging.DEBUG):
            log.warning("pi-builder-middleware: every candidate of this request is unavailable to the middleware "
                        "(%s); falling back to LiteLLM's healthy list", ", ".join(sorted(by_id)))
        return self._rng.choice(pool)
