"""Candidates on LiteLLM routers without ``Router.registry()`` / ``RoutingContext`` (LiteLLM before 1.109).

Those routers take a custom strategy through ``set_custom_routing_strategy`` (it sets the instance
attributes ``get_available_deployment`` / ``async_get_available_deployment``), which replaces LiteLLM's
whole pick: there is no selection pipeline left to ask for a healthy list. So the candidates are built
here, the same way for sync and async calls:

- the deployments LiteLLM's own pick starts from (``Router._common_checks_available_deployment``: the
  model group, ``model_group_alias``, wildcard routes, a deployment id given as model, the default
  deployment). A single deployment resolved there (``specific_deployment=True``, a deployment id, the
  default deployment) is returned as it is: there is no choice to make;
- minus those LiteLLM cools down (``router.cooldown_cache``) or an admin paused (``model_info.blocked``);
  if none is left, LiteLLM's ``RouterRateLimitError``;
- minus those whose breaker is open (never all of them: :meth:`Binding.filter`);
- minus those this request already tried, while another is left. LiteLLM before ~1.100 keeps its retry
  breadcrumbs (``metadata["previous_models"]``) router-wide, the last four failures of any request and
  without a deployment id, so the strategy's own check cannot read them; here this request's entries are
  found by its ``litellm_trace_id``.

Not applied: the filters LiteLLM runs inside its default pick, which the custom strategy replaces
(tag filtering, ``order`` priority groups, ``enable_pre_call_checks``, usage-based rpm/tpm limits, other
callbacks' ``async_filter_deployments``).
"""

from __future__ import annotations

import inspect
import re
import weakref
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pi_builder_middleware import ConfigError

from ._binding import Binding
from ._providers import deployment_id

__all__ = ["MIN_LEGACY_VERSION", "LegacyCandidates", "check_legacy_router", "legacy_candidates", "unsupported_reason"]

#: The oldest LiteLLM the ``set_custom_routing_strategy`` path was tested with (``scripts/setup.sh``
#: pins the versions CI runs). From 1.109 on the adapter uses ``register_plugin`` / ``RoutingContext``.
MIN_LEGACY_VERSION = "1.80.0"

Found = Mapping[str, Any] | list[Mapping[str, Any]]


def _release(text: str) -> tuple[int, int, int] | None:
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if match is None:
        return None
    major, minor, micro = match.groups()
    return int(major), int(minor), int(micro or 0)


def litellm_version() -> str:
    """The installed LiteLLM's version string ("unknown" if its metadata is missing)."""
    try:
        return version("litellm")
    except PackageNotFoundError:
        return "unknown"


def unsupported_reason(have: str) -> str | None:
    """Why LiteLLM ``have`` cannot take the modern (``register_plugin``) path, or None if it can.

    1.109.x has ``register_plugin`` and ``RoutingContext`` but wraps the strategy's pick methods, so
    ``uninstall`` cannot tell ours from another strategy and would leave it in place.
    """
    release = _release(have)
    if release is not None and release[:2] == (1, 109):
        return (
            f"litellm {have} is not supported by the LiteLLM adapter (its plugin registration cannot be "
            "undone by uninstall); use litellm>=1.110 (pip install 'pi-builder-middleware[litellm]') "
            "or 1.80-1.108"
        )
    return None


def check_legacy_router(router: Any) -> None:
    """Refuse a router without ``registry()`` when LiteLLM is older than :data:`MIN_LEGACY_VERSION`."""
    have = litellm_version()
    release = _release(have)
    needed = _release(MIN_LEGACY_VERSION)
    usable = all(
        callable(getattr(router, name, None))
        for name in ("set_custom_routing_strategy", "_common_checks_available_deployment")
    )
    if release is None or needed is None or release < needed or not usable:
        raise ConfigError(
            "router",
            f"litellm {have} is too old for the LiteLLM adapter: it needs "
            f"litellm>={MIN_LEGACY_VERSION} (pip install 'litellm>={MIN_LEGACY_VERSION}', "
            "or 'pi-builder-middleware[litellm]' for the newest supported one)",
        )


def legacy_candidates(router: Any, binding: Binding) -> LegacyCandidates | None:
    """The candidate source for ``router`` if it predates ``registry()``; None where LiteLLM has it."""
    if callable(getattr(router, "registry", None)):
        return None
    return LegacyCandidates(router, binding)


def _tried(request_kwargs: Mapping[str, Any]) -> frozenset[str]:
    """Deployment ids this request already tried, from LiteLLM's retry breadcrumbs (old and new layout)."""
    trace = request_kwargs.get("litellm_trace_id")
    tried: set[str] = set()
    for field in ("litellm_metadata", "metadata"):
        metadata = request_kwargs.get(field)
        previous = metadata.get("previous_models") if isinstance(metadata, Mapping) else None
        if not isinstance(previous, list | tuple):
            continue
        for entry in previous:
            if not isinstance(entry, Mapping):
                continue
            if entry.get("deployment_id") is not None:  # per-request breadcrumbs (LiteLLM >= ~1.100)
                tried.add(str(entry["deployment_id"]))
            elif trace is not None and entry.get("litellm_trace_id") == trace:  # router-wide (older)
                for key in ("litellm_metadata", "metadata"):
                    logged = entry.get(key)
                    info = logged.get("model_info") if isinstance(logged, Mapping) else None
                    if isinstance(info, Mapping) and info.get("id") is not None:
                        tried.add(str(info["id"]))
    return frozenset(tried)


def _paused(deployment: Mapping[str, Any]) -> bool:
    info = deployment.get("model_info")
    return isinstance(info, Mapping) and info.get("blocked") is True


class LegacyCandidates:
    """One router's candidates for a pick, read from the pre-1.109 ``Router`` (see the module docstring)."""

    def __init__(self, router: Any, binding: Binding) -> None:
        self._router_ref = weakref.ref(router)
        self._binding = binding
        resolve = getattr(router, "_common_checks_available_deployment", None)
        if not callable(resolve):
            raise ConfigError(
                "router",
                "this litellm.Router has neither registry() nor _common_checks_available_deployment(); upgrade litellm",
            )
        # 1.60 takes no request_kwargs; later versions use them for team and access-group filtering.
        self._pass_request = "request_kwargs" in inspect.signature(resolve).parameters

    def _router(self) -> Any:
        router = self._router_ref()
        if router is None:
            raise ConfigError("router", "the litellm.Router this strategy was installed on no longer exists")
        return router

    def _resolve(
        self,
        router: Any,
        model: str,
        request_kwargs: dict[str, Any],
        messages: object,
        input: object,
        specific_deployment: bool | None,
    ) -> Mapping[str, Any] | list[Mapping[str, Any]]:
        extra = {"request_kwargs": request_kwargs} if self._pass_request else {}
        _, found = router._common_checks_available_deployment(
            model=model, messages=messages, input=input, specific_deployment=specific_deployment, **extra
        )
        if isinstance(found, Mapping):
            return found
        return [d for d in found if isinstance(d, Mapping)]

    def _finish(
        self,
        router: Any,
        model: str,
        request_kwargs: Mapping[str, Any],
        deployments: list[Mapping[str, Any]],
        cooling: set[str],
        specific_deployment: bool | None,
    ) -> Found:
        healthy = [d for d in deployments if deployment_id(d) not in cooling and not _paused(d)]
        if not healthy:
            from litellm.types.router import RouterRateLimitError

            raise RouterRateLimitError(
                model=model,
                cooldown_time=self._min_cooldown(router, deployments),
                enable_pre_call_checks=bool(getattr(router, "enable_pre_call_checks", False)),
                cooldown_list=sorted(cooling),
            )
        if specific_deployment:  # ``model`` named one deployment's litellm model: LiteLLM's choice, not ours
            return healthy[0]
        usable = self._binding.filter(healthy)
        tried = _tried(request_kwargs)
        untried = [d for d in usable if deployment_id(d) not in tried] if tried else usable
        return untried or usable

    @staticmethod
    def _ids(deployments: list[Mapping[str, Any]]) -> list[str]:
        return [pid for pid in map(deployment_id, deployments) if pid is not None]

    @staticmethod
    def _cooling(active: object) -> set[str]:
        if not isinstance(active, list):
            return set()
        return {str(entry[0]) for entry in active if isinstance(entry, tuple) and entry}

    @staticmethod
    def _min_cooldown(router: Any, deployments: list[Mapping[str, Any]]) -> float:
        try:
            value = router.cooldown_cache.get_min_cooldown(
                model_ids=LegacyCandidates._ids(deployments), parent_otel_span=None
            )
        except Exception:  # only for the error message: never hide the real error behind another
            return 0.0
        return float(value) if isinstance(value, int | float) else 0.0

    def _start(
        self,
        model: str,
        request_kwargs: dict[str, Any],
        messages: object,
        input: object,
        specific_deployment: bool | None,
    ) -> tuple[Any, Found, list[str]]:
        """The router, LiteLLM's resolution of ``model``, and the ids whose cooldowns to read (none for a
        single resolved deployment or ``specific_deployment=True``)."""
        router = self._router()
        found = self._resolve(router, model, request_kwargs, messages, input, specific_deployment)
        if isinstance(found, Mapping) or specific_deployment is True:
            return router, found, []
        return router, found, self._ids(found)

    def candidates(
        self,
        model: str,
        request_kwargs: dict[str, Any],
        *,
        messages: object = None,
        input: object = None,
        specific_deployment: bool | None = False,
    ) -> Found:
        """The sync pick's candidates: a single resolved deployment, or a non-empty list to choose from."""
        router, found, ids = self._start(model, request_kwargs, messages, input, specific_deployment)
        if isinstance(found, Mapping):
            return found
        active = router.cooldown_cache.get_active_cooldowns(model_ids=ids, parent_otel_span=None) if ids else None
        return self._finish(router, model, request_kwargs, found, self._cooling(active), specific_deployment)

    async def async_candidates(
        self,
        model: str,
        request_kwargs: dict[str, Any],
        *,
        messages: object = None,
        input: object = None,
        specific_deployment: bool | None = False,
    ) -> Found:
        """The async pick's candidates (LiteLLM's cooldown cache read without blocking)."""
        router, found, ids = self._start(model, request_kwargs, messages, input, specific_deployment)
        if isinstance(found, Mapping):
            return found
        active = (
            await router.cooldown_cache.async_get_active_cooldowns(model_ids=ids, parent_otel_span=None)
            if ids
            else None
        )
        return self._finish(router, model, request_kwargs, found, self._cooling(active), specific_deployment)
