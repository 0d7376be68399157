"""Where the routing strategy's candidates come from, and when the cheap source may stand in for LiteLLM's.

Two sources:

- LiteLLM's healthy list (``RoutingContext.select(kind="healthy")``): every LiteLLM filter applies (cooldowns,
  ``order`` groups, tags, pre-call checks, team/budget/health-check filters, other callbacks' filters); it
  costs about one LiteLLM selection (~0.3–1 ms) per pick.
- The group: the model group's deployments (cached per registry version) minus LiteLLM's cooldowns and paused
  deployments (~30 µs).

``candidates="auto"`` (the default) uses the group whenever it provably equals the healthy list: the router,
the group's deployments and the request use none of LiteLLM's narrowing features (:func:`narrowing_reason`,
:func:`request_narrows`), and the two sources were compared on a real pick of that group — after every change
of the router's deployments and again at least every ``recheck_s`` seconds. Any difference sends that group to
the healthy list until a later comparison agrees again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._providers import deployment_id

__all__ = [
    "CALLBACK_LISTS",
    "CANDIDATE_MODES",
    "AutoVerdict",
    "GroupCache",
    "GroupEntry",
    "narrowing_reason",
    "request_narrows",
]

#: ``install(candidates=...)``.
CANDIDATE_MODES = ("auto", "healthy", "group")
#: Every LiteLLM list a callback in ``litellm.callbacks`` can be promoted into on the first call.
CALLBACK_LISTS = (
    "callbacks",
    "input_callback",
    "success_callback",
    "failure_callback",
    "service_callback",
    "_async_success_callback",
    "_async_failure_callback",
    "_async_input_callback",
)

#: Request keys with which LiteLLM narrows the healthy list for that request alone.
NARROWING_REQUEST_KEYS = frozenset(
    {
        "_target_order",
        "_excluded_deployment_ids",
        "_retry_skipped_deployment_ids",
        "web_search_options",
        "enable_tag_filtering",
        "tags",
        "specific_deployment",
    }
)
#: ``litellm_params`` keys that make LiteLLM filter a deployment (priority groups, tags, rate limits).
NARROWING_PARAMS = frozenset({"order", "tags", "rpm", "tpm", "max_parallel_requests"})
#: ``model_info`` keys that make LiteLLM filter a deployment per caller (teams, access groups, tags).
NARROWING_INFO = frozenset({"team_id", "team_public_model_name", "access_groups", "enable_tag_filtering", "tags"})
#: Router settings under which the healthy list depends on the request or on live usage.
NARROWING_SETTINGS = (
    "enable_pre_call_checks",
    "enable_health_check_routing",
    "enable_tag_filtering",
    "provider_budget_config",
)
_MAX_GROUPS = 4096


class GroupEntry(NamedTuple):
    """One model group's deployments and their ids, as of one registry version."""

    deployments: tuple[Mapping[str, Any], ...]
    ids: tuple[str, ...]
    id_list: list[str]  # the ids as LiteLLM's cooldown reader takes them


class GroupCache:
    """``registry.deployments(model)`` with the deployment ids, kept until the registry's version changes."""

    def __init__(self) -> None:
        self._version: object = None
        self._groups: dict[str, GroupEntry] = {}

    def get(self, registry: Any, model: str) -> GroupEntry | None:
        """The group's deployments; None if the router has none under ``model``."""
        version = registry.version
        groups = self._groups
        if version != self._version or len(groups) > _MAX_GROUPS:
            groups = self._groups = {}
            self._version = version
        entry = groups.get(model)
        if entry is None:
            deployments = tuple(registry.deployments(model) or ())
            if not deployments:
                return None
            ids = tuple(deployment_id(d) or "" for d in deployments)
            entry = groups[model] = GroupEntry(deployments, ids, list(ids))
        return entry


@dataclass(frozen=True, slots=True)
class AutoVerdict:
    """The last comparison of the two sources for one model group."""

    version: object  #: the registry version it was made at
    at: float  #: when (the middleware's clock)
    fast: bool  #: True: the group equals LiteLLM's healthy list; picks use the group
    reason: str | None  #: why not, when not


def request_narrows(request_kwargs: Mapping[str, Any]) -> bool:
    """Whether LiteLLM would narrow this request's healthy list by something in the request itself."""
    if not NARROWING_REQUEST_KEYS.isdisjoint(request_kwargs):
        return True
    for field in ("metadata", "litellm_metadata"):
        metadata = request_kwargs.get(field)
        if isinstance(metadata, Mapping) and metadata.get("tags"):
            return True
    return False


def _overrides_filter(callback: object) -> bool:
    from litellm.integrations.custom_logger import CustomLogger

    if not isinstance(callback, CustomLogger):
        return False
    own = type(callback).async_filter_deployments
    return own is not CustomLogger.async_filter_deployments and not getattr(callback, "pbm_router_token", None)


def narrowing_reason(ctx: Any, entry: GroupEntry, callback_lists: Sequence[object]) -> str | None:
    """Why LiteLLM's healthy list for this group may differ from the group minus cooldowns; None if it cannot.

    Looks at the router's settings and plugins, the group's deployments and the process's other callbacks
    (any ``async_filter_deployments`` but our own). What these checks do not know is caught by comparing the
    two sources on real picks (see the module docstring).
    """
    settings = ctx.settings()
    for name in NARROWING_SETTINGS:
        if getattr(settings, name, None):
            return f"router setting {name}"
    registry = ctx.registry()
    if registry.routing_groups():
        return "router routing_groups"
    if registry.plugins("budget_limiter") is not None:
        return "router budget limiter"
    for deployment in entry.deployments:
        params = deployment.get("litellm_params")
        info = deployment.get("model_info")
        for source, keys, label in ((params, NARROWING_PARAMS, "litellm_params"), (info, NARROWING_INFO, "model_info")):
            if isinstance(source, Mapping):
                found = keys.intersection(k for k, v in source.items() if v is not None)
                if found:
                    return f"deployment {deployment_id(deployment)} sets {label} {', '.join(sorted(found))}"
    for entries in callback_lists:
        if isinstance(entries, list):
            for callback in list(entries):
                if _overrides_filter(callback):
                    return f"callback {type(callback).__name__} filters deployments"
    return None
