"""LiteLLM's ``usage-based-routing-v2`` rpm/tpm limits, honoured where the middleware's pick replaces v2's.

On a router built with ``routing_strategy="usage-based-routing-v2"``, LiteLLM's healthy list keeps the
deployments that are at their rpm/tpm limits this minute (``enable_pre_call_checks`` leaves that check to
the strategy): v2's own pick leaves them out, and v2's pre-call check then counts the picked deployment's
rpm and raises ``RateLimitError`` for one over its limit. When the middleware picks on such a router
(``install(router, strategy=...)`` or ``route=True``), the candidates at or over their limits are left out
first, read from v2's own counters and judged by v2's own test (``_return_potential_deployments``), so the
pick never lands on a full deployment. If every candidate is full, v2's own pick answers (its
``RateLimitError``, as on a plain router).

Cost: routers on any other strategy pay one cached attribute read per pick; v2 routers a look at the
candidates' limits and, when one has an rpm or tpm limit, one batch read of the counters (the request's
prefetched read when LiteLLM armed one), plus v2's token count when one has a tpm limit. A v2 selector without
``usage_counter_keys`` (LiteLLM 1.80) leaves the pick as it was.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from ._providers import deployment_id

__all__ = ["UsageLimits"]

#: The router attribute that holds the usage-based-routing-v2 selector (None on other strategies).
_SELECTOR_ATTRIBUTE = "lowesttpm_logger_v2"
#: What the selector must offer for the filter to use its counters and its test (LiteLLM >= 1.110).
_SELECTOR_FEATURES = ("usage_counter_keys", "_return_potential_deployments", "router_cache")


def _limit(deployment: Mapping[str, Any], name: str) -> object:
    """The deployment's ``name`` limit (rpm, tpm) where v2 looks for it: the deployment, ``litellm_params``,
    ``model_info``; None if it has none (v2: no limit)."""
    value = deployment.get(name)
    for part in ("litellm_params", "model_info"):
        if value is not None:
            return value
        source = deployment.get(part)
        value = source.get(name) if source is not None and hasattr(source, "get") else None
    return value


def _limited(candidates: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any candidate has an rpm or tpm limit (without one, v2 leaves no deployment out)."""
    return any(_limit(d, "rpm") is not None or _limit(d, "tpm") is not None for d in candidates)


def _input_tokens(deployments: list[dict[str, Any]], messages: Any, input: Any) -> int:
    """The request's input tokens as v2 counts them (0 where it cannot count them, as in v2)."""
    try:
        try:
            from litellm.litellm_core_utils.deployment_pricing import deployment_backend_models
            from litellm.litellm_core_utils.token_counter import embedding_aware_token_count
        except ImportError:  # LiteLLM before 1.110: v2 counts with token_counter
            from litellm import token_counter

            return int(token_counter(messages=messages, text=input))
        return int(embedding_aware_token_count(messages, input, partial(deployment_backend_models, deployments)))
    except Exception:  # v2 counts 0 tokens when it cannot count them
        return 0


def _prefetched(keys: list[str]) -> list[object] | None:
    """The counters LiteLLM already read for this request (its prefetched usage), if they cover ``keys``."""
    try:
        from litellm.router_strategy.lowest_tpm_rpm_v2 import PrefetchedUsage
    except ImportError:  # pragma: no cover - a LiteLLM without request-scoped usage reads
        return None
    usage = PrefetchedUsage.active()
    if usage is None or not usage.covers(keys):
        return None
    return usage.values_for(keys)


class UsageLimits:
    """The usage-based-routing-v2 selector of one router, and the candidates it would leave out."""

    #: How often (seconds, the installation's clock) the router's strategy is looked at again.
    refresh_s: float = 1.0

    def __init__(self, router: Any, clock: Callable[[], float]) -> None:
        self._router_ref = weakref.ref(router)
        self._clock = clock
        self._selector: Any = None
        self._until = float("-inf")

    def selector(self) -> Any:
        """The router's v2 selector, or None when the router does not route by usage-based-routing-v2."""
        now = self._clock()
        if now < self._until:
            return self._selector
        router = self._router_ref()
        found = getattr(router, _SELECTOR_ATTRIBUTE, None) if router is not None else None
        if found is not None and not all(hasattr(found, name) for name in _SELECTOR_FEATURES):
            found = None
        self._selector, self._until = found, now + self.refresh_s
        return found

    def _plan(self, candidates: Sequence[Mapping[str, Any]]) -> tuple[Any, list[dict[str, Any]], list[str]] | None:
        """The selector, the candidates as v2 takes them and the counter keys to read; None: nothing to filter."""
        selector = self.selector()
        if selector is None or not _limited(candidates):
            return None
        deployments = [dict(d) for d in candidates]
        tpm_keys, rpm_keys = selector.usage_counter_keys(deployments)
        return selector, deployments, tpm_keys + rpm_keys

    async def async_within(
        self, model: str, candidates: Sequence[Mapping[str, Any]], messages: object, input: object
    ) -> Sequence[Mapping[str, Any]]:
        """``candidates`` less those at their rpm/tpm limits; v2's own pick (or its error) if all are."""
        plan = self._plan(candidates)
        if plan is None:
            return candidates
        selector, deployments, keys = plan
        values = _prefetched(keys)
        if values is None:
            values = await selector.router_cache.async_batch_get_cache(keys=keys)
        kept = self._kept(selector, candidates, deployments, values, messages, input)
        if kept is not None:
            return kept
        return [await selector.async_get_available_deployments(model, deployments, messages=messages, input=input)]

    def within(
        self, model: str, candidates: Sequence[Mapping[str, Any]], messages: object, input: object
    ) -> Sequence[Mapping[str, Any]]:
        """:meth:`async_within` for a sync pick."""
        plan = self._plan(candidates)
        if plan is None:
            return candidates
        selector, deployments, keys = plan
        kept = self._kept(
            selector, candidates, deployments, selector.router_cache.batch_get_cache(keys=keys), messages, input
        )
        if kept is not None:
            return kept
        return [selector.get_available_deployments(model, deployments, messages=messages, input=input)]

    async def async_within_by_id(
        self, model: str, by_id: Mapping[str, Mapping[str, Any]], messages: object, input: object
    ) -> Mapping[str, Mapping[str, Any]]:
        """:meth:`async_within` for candidates by deployment id."""
        if self.selector() is None:
            return by_id
        kept = await self.async_within(model, list(by_id.values()), messages, input)
        return _by_id(kept, by_id)

    def within_by_id(
        self, model: str, by_id: Mapping[str, Mapping[str, Any]], messages: object, input: object
    ) -> Mapping[str, Mapping[str, Any]]:
        """:meth:`within` for candidates by deployment id."""
        if self.selector() is None:
            return by_id
        return _by_id(self.within(model, list(by_id.values()), messages, input), by_id)

    @staticmethod
    def _kept(
        selector: Any,
        candidates: Sequence[Mapping[str, Any]],
        deployments: list[dict[str, Any]],
        values: object,
        messages: object,
        input: object,
    ) -> list[Mapping[str, Any]] | None:
        """The candidates v2 would still pick from; None if there are none (every one is full)."""
        n = len(deployments)
        if not isinstance(values, Sequence) or len(values) != 2 * n:
            return list(candidates)  # the counters could not be read: v2's pre-call check does not fail calls either
        tokens = (
            _input_tokens(deployments, messages, input) if any(_limit(d, "tpm") is not None for d in deployments) else 0
        )
        kept: list[Mapping[str, Any]] = []
        for i, (candidate, deployment) in enumerate(zip(candidates, deployments, strict=True)):
            info = deployment.get("model_info")
            pid = info.get("id") if isinstance(info, Mapping) else None
            tpm, rpm = _count(values[i]), _count(values[n + i])
            # v2's own test, one deployment at a time: it answers [deployment] unless that one is full (its
            # pick would also keep only the least used of the rest, which is the middleware's choice here).
            if selector._return_potential_deployments([deployment], {pid: tpm}, tokens, {pid: rpm}):
                kept.append(candidate)
        return kept or None


def _count(value: object) -> int:
    """A usage counter as read from the router's cache (in-memory or Redis): a whole number of 0 or more; anything
    else (missing, junk, negative, not finite) counts as 0, as a counter nobody has written yet."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, bytes | str):
        try:
            value = float(value)
        except ValueError:
            return 0
    if isinstance(value, int | float) and 0 <= value < float("inf"):
        return int(value)
    return 0


def _by_id(
    kept: Sequence[Mapping[str, Any]], by_id: Mapping[str, Mapping[str, Any]]
) -> Mapping[str, Mapping[str, Any]]:
    """``by_id`` narrowed to ``kept`` (v2's own pick is the one deployment kept when every one was full)."""
    if len(kept) == len(by_id):
        return by_id
    ids = {deployment_id(d) for d in kept}
    narrowed = {pid: d for pid, d in by_id.items() if pid in ids}
    if narrowed:
        return narrowed
    return {str(deployment_id(d)): d for d in kept if deployment_id(d) is not None}
