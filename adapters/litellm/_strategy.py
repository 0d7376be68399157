"""The LiteLLM custom routing strategy that lets the middleware choose each deployment."""

from __future__ import annotations

import logging
import random
import weakref
from collections.abc import Container, Iterable, Mapping, Sequence
from typing import Any, cast

import litellm
from litellm.router import CustomRoutingStrategyBase

try:  # LiteLLM >= 1.109; older routers get their candidates from ._legacy
    from litellm.router_api import RoutingContext
except ImportError:  # pragma: no cover - exercised by tests/adapters/litellm_legacy
    RoutingContext = None  # type: ignore[assignment,misc]

from pi_builder_middleware import ConfigError, NoProviderAvailableError

from ._binding import Binding, metadata_field
from ._candidates import (
    CALLBACK_LISTS,
    CANDIDATE_MODES,
    AutoVerdict,
    GroupCache,
    GroupEntry,
    narrowing_reason,
    request_narrows,
)
from ._fallback import fallback_pick
from ._legacy import legacy_candidates
from ._providers import deployment_id
from ._request import attempted, route_request, stamp
from ._resolve import default_deployment, deployment_by_id
from ._usage import UsageLimits

__all__ = ["MiddlewareRoutingStrategy", "route_request"]

log = logging.getLogger("pi_builder_middleware.adapters.litellm")

_MAX_COOLDOWN_ENTRIES = 4096
#: A wait shorter than this is not worth a sleep: the pick goes ahead (it also ends a wait that cannot move).
_MIN_WAIT_S = 0.001


def _no_deployments(model: str) -> Exception:
    from litellm.exceptions import BadRequestError

    return BadRequestError(message=f"no deployments for model {model!r} on this router", model=model, llm_provider="")


def _all_cooling(model: str, cooling: Iterable[str], cooldown_time: float = 0.0) -> Exception:
    """LiteLLM's own error when every deployment of the group is cooling down or paused."""
    from litellm.types.router import RouterRateLimitError

    return RouterRateLimitError(
        model=model, cooldown_time=cooldown_time, enable_pre_call_checks=False, cooldown_list=sorted(cooling)
    )


def _usable(model: str, entry: GroupEntry, cooling: Container[str]) -> dict[str, Mapping[str, Any]]:
    """The group's deployments by id, less those LiteLLM cools down or an admin paused; LiteLLM's error if none."""
    usable: dict[str, Mapping[str, Any]] = {}
    for deployment, pid in zip(entry.deployments, entry.ids, strict=True):
        if pid and pid not in cooling and not _paused(deployment):
            usable.setdefault(pid, deployment)
    if not usable:
        raise _all_cooling(model, (pid for pid in entry.ids if pid in cooling))
    return usable


def _paused(deployment: Mapping[str, Any]) -> bool:
    info = deployment.get("model_info")
    return isinstance(info, Mapping) and info.get("blocked") is True


class MiddlewareRoutingStrategy(CustomRoutingStrategyBase):
    """Asks the middleware to choose among LiteLLM's healthy deployments for the requested group.

    - Candidates (``mode``): ``"auto"`` the group minus cooldowns wherever that equals LiteLLM's healthy
      list, else the healthy list (see ``_candidates``); ``"healthy"`` always LiteLLM's healthy list;
      ``"group"`` always the group minus cooldowns. Deployments whose breaker is open are removed (by the
      installation's ``async_filter_deployments`` inside LiteLLM's healthy list, here otherwise).
    - A retry or fallback attempt avoids deployments this request already tried, as long as another
      candidate is left, so ``num_retries`` becomes failover inside the group.
    - If every candidate is out (all breakers open, all rate limited), the middleware's all-out decision
      applies (``RoutingConfig.when_all_out``, default ``"soonest"``): the call goes to the deployment
      re-admitted soonest, as a trial call ahead of schedule. Counted as ``panic_picks``. A retry of a
      request that already failed in this group gets LiteLLM's ``RouterRateLimitError`` instead (its
      ``cooldown_time`` = the wait for the soonest re-admission; LiteLLM's fallbacks still apply), so
      ``num_retries`` does not multiply into a dead group. Counted as ``retries_declined``.
    - If the middleware still has no answer (``when_all_out="fail"``, or the request's ``max_latency_ms`` /
      ``min_availability`` rule out every candidate), the call is not failed: it goes to the deployment of
      LiteLLM's healthy list whose re-admission is soonest (``available_at``), preferring ones not yet tried.
      Counted as ``fallback_picks``.
    """

    #: ``candidates="auto"``: how often (seconds) a group on the cheap source is compared with LiteLLM's again.
    recheck_s: float = 1.0
    #: Cheap source: how long (seconds, real time) a group's LiteLLM cooldown list is reused; a failure event
    #: of any call makes the next pick read it again.
    cooldown_refresh_s: float = 0.1

    def __init__(
        self, router: Any, binding: Binding, *, seed: int | None = None, mode: str = "auto", max_wait_s: float = 0.0
    ) -> None:
        if mode not in CANDIDATE_MODES:
            raise ConfigError("candidates", f"use one of {list(CANDIDATE_MODES)}, not {mode!r}")
        self._router_ref = weakref.ref(router)
        self.mode = mode
        self.max_wait_s = max_wait_s
        self._binding = binding
        self._rng = random.Random(seed)
        self._groups = GroupCache()
        self._verdicts: dict[str, AutoVerdict] = {}
        self._cooldowns: dict[str, tuple[float, int, GroupEntry, frozenset[str]]] = {}
        self._legacy = legacy_candidates(router, binding)  # None where LiteLLM has registry()/RoutingContext
        self._usage = UsageLimits(router, binding.middleware.clock)  # usage-based-routing-v2's rpm/tpm limits

    def auto_status(self) -> dict[str, dict[str, object]]:
        """``candidates="auto"``: per model group, whether picks use the cheap source and, if not, why."""
        return {model: {"fast": v.fast, "reason": v.reason} for model, v in sorted(self._verdicts.items())}

    def _context(self) -> Any:
        router = self._router_ref()
        if router is None:
            raise ConfigError("router", "the litellm.Router this strategy was installed on no longer exists")
        return RoutingContext(router)

    def _group(self, registry: Any, model: str) -> GroupEntry:
        entry = self._groups.get(registry, model)
        if entry is None:
            raise _no_deployments(model)
        return entry

    async def _fast(self, ctx: Any, registry: Any, model: str, *, fresh: bool = False) -> dict[str, Mapping[str, Any]]:
        """The group minus LiteLLM's cooldowns, paused deployments and open breakers, by id."""
        entry = self._group(registry, model)
        return self._binding.filter_by_id(_usable(model, entry, await self._cooling(ctx, model, entry, fresh)))

    async def _cooling(self, ctx: Any, model: str, entry: GroupEntry, fresh: bool) -> frozenset[str]:
        """LiteLLM's cooldowns in the group: read at most every ``cooldown_refresh_s`` while no failure
        event arrives (LiteLLM sets a cooldown after a failure; another replica's reaches us within that time)."""
        now = self._binding.middleware.clock()  # the installation's clock (injectable in tests)
        failures = self._binding.failure_events
        cached = self._cooldowns.get(model)
        if not fresh and cached is not None and cached[0] > now and cached[1] == failures and cached[2] is entry:
            return cached[3]
        cooling = frozenset(
            pid for pid, _ in await ctx.health().cooldowns.async_get_active_cooldowns(entry.id_list, None)
        )
        if len(self._cooldowns) > _MAX_COOLDOWN_ENTRIES:
            self._cooldowns.clear()
        self._cooldowns[model] = (now + self.cooldown_refresh_s, failures, entry, cooling)
        return cooling

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
        stamp(request, self._binding.token)
        if self._legacy is not None:  # LiteLLM before 1.109 (set_custom_routing_strategy): see _legacy
            found = await self._legacy.async_candidates(
                model, request, messages=messages, input=input, specific_deployment=specific_deployment
            )
            if isinstance(found, Mapping):
                return found
            roomy = await self._usage.async_within(model, found, messages, input)
            return self.choose(roomy, request, messages=messages, input=input)
        ctx = self._context()
        if self.max_wait_s > 0 and not specific_deployment:
            await self._wait_for_readmission(ctx, model)
        mode = self.mode
        registry = ctx.registry()  # read once per pick: every later step reuses it
        if model not in registry.names(kind="group_set"):
            # A deployment id, an alias, a wildcard route, the default deployment: LiteLLM resolves the name
            # (a single deployment comes back as it is, as on a plain router), the middleware chooses in a list.
            mode = "healthy"
        if not specific_deployment and mode != "healthy":
            if mode == "auto":
                mode, picked = await self._auto_mode(ctx, registry, model, request, messages, input)
                if picked is not None:  # the pick was made while comparing the two sources
                    return picked
            if mode == "group":
                self._binding.counts["picks_fast"] += 1
                fast = await self._usage.async_within_by_id(
                    model, await self._fast(ctx, registry, model), messages, input
                )
                return self.choose_by_id(fast, request, messages=messages, input=input)
        selected = await ctx.select(
            model, request, kind="healthy", messages=messages, input=input, specific_deployment=specific_deployment
        )
        if isinstance(selected, Mapping):
            return selected  # a specific deployment was asked for: LiteLLM already resolved it
        self._binding.counts["picks_healthy"] += 1
        healthy = await self._usage.async_within(model, list(selected), messages, input)
        return self.choose(healthy, request, messages=messages, input=input)

    async def _wait_for_readmission(self, ctx: Any, model: str) -> None:
        """With every deployment of ``model`` out, sleep until the soonest re-admission within ``max_wait_s``."""
        binding = self._binding
        mw = binding.middleware
        suspects = mw.failover.suspects
        if not suspects:
            return  # the usual case: nobody is out, nothing to look at
        try:
            ids = [pid for pid in self._group(ctx.registry(), model).ids if pid in binding.known]
        except Exception:  # an unknown group: LiteLLM's own pick reports it
            return
        if not ids or not all(pid in suspects for pid in ids):
            return
        waited = 0.0
        while True:
            soonest = min(mw.failover.available_at(pid) for pid in ids)
            wait = soonest - mw.clock()  # read after available_at's own "now": "available now" is <= 0 here
            if wait < _MIN_WAIT_S or waited + wait > self.max_wait_s:
                return  # back (or about to be), or not within the budget: the pick decides
            binding.counts["waits"] += 1
            await mw.async_sleep(wait)
            waited += wait

    async def _auto_mode(
        self, ctx: Any, registry: Any, model: str, request: dict[str, Any], messages: object, input: object
    ) -> tuple[str, Mapping[str, Any] | None]:
        """``("group" | "healthy", None)`` for this pick, or ``("healthy", pick)`` when it compared the sources."""
        if request_narrows(request):
            return "healthy", None
        verdict = self._verdicts.get(model)
        now = self._binding.middleware.clock()
        version = registry.version
        if verdict is not None and verdict.version == version and now - verdict.at < self.recheck_s:
            return ("group" if verdict.fast else "healthy"), None
        # Compare: LiteLLM's healthy list for this very request vs the group minus cooldowns.
        entry = self._group(registry, model)
        reason = narrowing_reason(ctx, entry, [getattr(litellm, name, None) for name in CALLBACK_LISTS])
        found = await ctx.select(model, request, kind="healthy", messages=messages, input=input)
        if isinstance(found, Mapping):  # LiteLLM resolved the name to one deployment: no choice to make
            return "healthy", found
        healthy = list(found)
        if reason is None:
            try:
                fast = await self._fast(ctx, registry, model, fresh=True)
            except Exception as exc:  # LiteLLM has candidates where the group has none
                reason = f"the group minus cooldowns is empty ({type(exc).__name__}) but LiteLLM's healthy list is not"
            else:
                listed = {deployment_id(d) for d in healthy}
                if listed != fast.keys():
                    reason = (
                        f"LiteLLM's healthy list {sorted(map(str, listed))} differs from the group minus "
                        f"cooldowns {sorted(fast)}"
                    )
        self._binding.counts["auto_checks"] += 1
        previous = self._verdicts.get(model)
        self._verdicts[model] = AutoVerdict(version, now, reason is None, reason)
        if reason is not None:
            self._binding.counts["auto_mismatches"] += 1
            if previous is None or previous.reason != reason:
                log.info("pi-builder-middleware: picks for %r use LiteLLM's healthy list: %s", model, reason)
        self._binding.counts["picks_healthy"] += 1
        healthy = list(await self._usage.async_within(model, healthy, messages, input))
        return "healthy", self.choose(healthy, request, messages=messages, input=input)

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
        stamp(request, self._binding.token)
        if self._legacy is not None:  # LiteLLM before 1.109 (set_custom_routing_strategy): see _legacy
            found = self._legacy.candidates(
                model, request, messages=messages, input=input, specific_deployment=specific_deployment
            )
            if isinstance(found, Mapping):
                return found
            return self.choose(
                self._usage.within(model, found, messages, input), request, messages=messages, input=input
            )
        ctx = self._context()
        if specific_deployment:  # ``model`` names one deployment's litellm model: no choice to make
            named = [
                d
                for d in ctx.registry().all()
                if isinstance(d.get("litellm_params"), Mapping)
                and d["litellm_params"].get("model") == model
                and not _paused(d)
            ]
            if not named:
                raise _all_cooling(model, ())
            return cast("Mapping[str, Any]", named[0])
        registry = ctx.registry()
        entry = self._groups.get(registry, model) if model in registry.names(kind="group_set") else None
        if entry is None:  # a deployment id, an alias or wildcard route, the default deployment (see _resolve)
            by_id = deployment_by_id(registry, model)
            if by_id is not None:
                return by_id
            entry = self._groups.get(registry, model)
            if entry is None:
                fallback = default_deployment(ctx, model)
                if fallback is None:
                    raise _no_deployments(model)
                return fallback
        cooling = {pid for pid, _ in ctx.health().cooldowns.get_active_cooldowns(entry.id_list, None)}
        usable = self._binding.filter_by_id(_usable(model, entry, cooling))
        return self.choose_by_id(
            self._usage.within_by_id(model, usable, messages, input), request, messages=messages, input=input
        )

    def choose(
        self,
        healthy: Sequence[Mapping[str, Any]],
        request_kwargs: Mapping[str, Any],
        *,
        messages: object = None,
        input: object = None,
    ) -> Mapping[str, Any]:
        """Let the middleware pick one of ``healthy`` (LiteLLM's candidates) for this request."""
        by_id: dict[str, Mapping[str, Any]] = {}
        for deployment in healthy:
            pid = deployment_id(deployment)
            if pid is not None:
                by_id.setdefault(pid, deployment)
        if not by_id:  # deployments without ids (not built by a Router): nothing to decide with
            if not healthy:
                raise NoProviderAvailableError({})
            return healthy[0]
        return self.choose_by_id(by_id, request_kwargs, messages=messages, input=input)

    def choose_by_id(
        self,
        by_id: Mapping[str, Mapping[str, Any]],
        request_kwargs: Mapping[str, Any],
        *,
        messages: object = None,
        input: object = None,
    ) -> Mapping[str, Any]:
        """Let the middleware pick one of ``by_id`` (candidate deployments by id, not empty)."""
        binding = self._binding
        binding.ensure_current(by_id)
        metadata = request_kwargs.get(metadata_field(request_kwargs))
        tried = attempted(metadata) if isinstance(metadata, Mapping) else frozenset()
        tried_here = tried & by_id.keys()
        avoid = tried_here if len(tried_here) < len(by_id) else frozenset()
        mw = binding.middleware
        if avoid:
            # Every untried candidate out (breaker open, 429 cooldown): an available, already-tried one beats
            # the core's all-out decision, which would send the retry to an untried one ahead of schedule.
            out, known = mw.failover.unavailable_reason, binding.known
            if all(pid in known and out(pid) is not None for pid in by_id.keys() - avoid):
                avoid = frozenset()
        request = route_request(request_kwargs, by_id, exclude=avoid, messages=messages, input=input)
        try:
            decision = mw.select(request)
        except NoProviderAvailableError:
            decision = None
            if avoid:  # everything untried is excluded: an eligible, already-tried one beats none
                try:
                    decision = mw.select(route_request(request_kwargs, by_id, messages=messages, input=input))
                except NoProviderAvailableError:
                    decision = None
        binding.counts["picks"] += 1
        if decision is not None:
            if decision.panic:
                if tried_here:
                    # This request already failed in this group and every deployment is out now: another
                    # attempt would only add to LiteLLM's retries into a dead group. LiteLLM's own "all
                    # cooling down" error ends the retries here (its fallbacks still apply).
                    binding.counts["retries_declined"] += 1
                    failover = mw.failover
                    wait = min(failover.available_at(pid) for pid in by_id) - mw.clock()
                    raise _all_cooling(str(request_kwargs.get("model") or ""), by_id.keys(), max(wait, 0.0))
                binding.counts["panic_picks"] += 1
            if decision.trial:
                binding.trial_started(request_kwargs.get("litellm_call_id"), decision.provider.id)
            return by_id[decision.provider.id]
        return fallback_pick(self._binding, self._rng, by_id, tried, request, avoid)
