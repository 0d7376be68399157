"""How a requested ``model`` that is not a configured group name resolves on LiteLLM's sync path.

The async path asks LiteLLM itself (``RoutingContext.select(kind="healthy")`` resolves deployment ids,
``model_group_alias``, wildcard routes and the default deployment exactly as a plain router does). The sync
path has no such selection to ask, so it is rebuilt here in LiteLLM's order: a deployment id names that
deployment; an alias or wildcard route is a group (``registry().deployments``, read by the strategy); else
the router's default deployment, copied with the requested model as its ``litellm_params.model``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["default_deployment", "deployment_by_id"]


def deployment_by_id(registry: Any, model: str) -> Mapping[str, Any] | None:
    """The deployment whose ``model_info.id`` is ``model``, as its model_list dict; None if none is."""
    try:
        if not registry.has_deployment(model):
            return None
        found = registry.deployment_dict(model)
    except Exception:  # a registry without these reads: LiteLLM's own error follows from the pick
        return None
    return found if isinstance(found, Mapping) else None


def default_deployment(ctx: Any, model: str) -> Mapping[str, Any] | None:
    """The router's default deployment for ``model`` (a copy naming ``model``), or None if it has none."""
    try:
        default = ctx.settings().default_deployment
    except Exception:  # no settings(): no default deployment to offer
        return None
    if not isinstance(default, Mapping) or not isinstance(default.get("litellm_params"), Mapping):
        return None
    copy = dict(default)
    copy["litellm_params"] = {**default["litellm_params"], "model": model}
    return copy
