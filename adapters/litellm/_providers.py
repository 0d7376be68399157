"""Providers from LiteLLM deployments: id, prices, quality, capabilities, context window, priority."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from pi_builder_middleware import ConfigError, Provider

__all__ = ["CAPABILITY_FLAGS", "deployment_id", "model_map_info", "provider_from_deployment"]

log = logging.getLogger("pi_builder_middleware.adapters.litellm")

#: LiteLLM model-map flags (``supports_*``) and the capability name each one grants.
CAPABILITY_FLAGS: Mapping[str, str] = {
    "supports_vision": "vision",
    "supports_function_calling": "tools",
    "supports_parallel_function_calling": "parallel_tools",
    "supports_response_schema": "json",
    "supports_reasoning": "thinking",
    "supports_prompt_caching": "prompt_caching",
    "supports_pdf_input": "pdf",
    "supports_audio_input": "audio_input",
    "supports_audio_output": "audio_output",
    "supports_web_search": "web_search",
    "supports_computer_use": "computer_use",
}

_PROVIDER_FIELDS = Provider.FIELDS


def deployment_id(deployment: Mapping[str, Any]) -> str | None:
    """The deployment's id (``model_info["id"]``), which is also its provider id; None if it has none."""
    info = deployment.get("model_info")
    if not isinstance(info, Mapping):
        return None
    pid = info.get("id")
    return str(pid) if pid is not None and pid != "" else None


def model_map_info(model: str) -> Mapping[str, Any]:
    """What LiteLLM's price map (``litellm.get_model_info``) knows about ``model``; empty if nothing."""
    import litellm

    try:
        info = litellm.get_model_info(model)
    except Exception:  # unknown model: litellm raises; we simply know nothing about it
        return {}
    return info if isinstance(info, Mapping) else {}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _first_number(key: str, *sources: Mapping[str, Any]) -> float | None:
    for source in sources:
        value = _number(source.get(key))
        if value is not None:
            return value
    return None


def _capabilities(pid: str, info: Mapping[str, Any], mapped: Mapping[str, Any]) -> set[str]:
    declared = info.get("capabilities")
    caps: set[str] = set()
    if declared is not None:
        if isinstance(declared, str) or not all(isinstance(c, str) for c in declared):
            raise ConfigError(
                f"deployment {pid!r}: model_info.capabilities",
                "give a list of capability names, e.g. ['tools', 'vision']",
            )
        caps.update(declared)
    for flag, capability in CAPABILITY_FLAGS.items():
        own = info.get(flag)
        if own is True or (own is None and mapped.get(flag) is True):
            caps.add(capability)
    if info.get("supports_native_streaming") is not False and mapped.get("supports_native_streaming") is not False:
        caps.add("streaming")
    return caps


def provider_from_deployment(
    deployment: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    *,
    model_info: Callable[[str], Mapping[str, Any]] = model_map_info,
) -> Provider:
    """Build the :class:`Provider` for one LiteLLM deployment.

    - id: ``model_info["id"]``; group: ``model_name``; model: ``litellm_params["model"]``.
    - prices: ``input_cost_per_token`` / ``output_cost_per_token`` from ``model_info``, then
      ``litellm_params``, then LiteLLM's price map for ``base_model`` or ``model`` (per 1k tokens here).
    - quality: ``model_info["quality"]`` (0–1), else 0.5.
    - capabilities: ``model_info["capabilities"]`` plus every ``supports_*`` flag that is true on the
      deployment's ``model_info`` or in the price map (see :data:`CAPABILITY_FLAGS`), plus ``streaming``
      unless ``supports_native_streaming`` is false.
    - max_context_tokens: ``max_input_tokens``; priority: ``litellm_params["order"]`` (lower first).

    ``overrides`` (any :class:`Provider` field) win over everything derived.
    """
    pid = deployment_id(deployment)
    if pid is None:
        raise ConfigError("deployment.model_info.id", "LiteLLM deployment has no id; build it through litellm.Router")
    info: Mapping[str, Any] = deployment.get("model_info") or {}
    params: Mapping[str, Any] = deployment.get("litellm_params") or {}
    model = params.get("model")
    base = info.get("base_model") or params.get("base_model") or model
    mapped = model_info(str(base)) if isinstance(base, str) and base else {}
    cost_in = _first_number("input_cost_per_token", info, params, mapped) or 0.0
    cost_out = _first_number("output_cost_per_token", info, params, mapped) or 0.0
    fields: dict[str, Any] = {
        "id": pid,
        "cost_per_1k_input": cost_in * 1000.0,
        "cost_per_1k_output": cost_out * 1000.0,
        "quality": info.get("quality", 0.5),
        "capabilities": frozenset(_capabilities(pid, info, mapped)),
        "max_context_tokens": _context(info, params, mapped),
        "priority": params.get("order") if isinstance(params.get("order"), int) else 0,
        "model": model if isinstance(model, str) else None,
        "group": deployment.get("model_name") if isinstance(deployment.get("model_name"), str) else None,
    }
    if overrides:
        unknown = sorted(set(overrides) - _PROVIDER_FIELDS)
        if unknown:
            raise ConfigError(
                f"providers[{pid!r}]", f"unknown Provider field(s) {unknown}; use some of {sorted(_PROVIDER_FIELDS)}"
            )
        fields.update(overrides)
        fields["id"] = pid
    try:
        return Provider(**fields)
    except ConfigError as exc:
        raise ConfigError(f"deployment {pid!r}: {exc.field}", exc.message) from None


def _context(info: Mapping[str, Any], params: Mapping[str, Any], mapped: Mapping[str, Any]) -> int | None:
    for source in (info, params, mapped):
        value = source.get("max_input_tokens")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
