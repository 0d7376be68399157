"""The LiteLLM proxy handler's settings: environment variables and/or a ``litellm_settings`` section.

In ``config.yaml`` (the proxy copies every ``litellm_settings`` key onto the ``litellm`` module)::

    litellm_settings:
      callbacks: ["pi_builder_middleware.adapters.litellm.proxy.handler"]
      pi_builder_middleware:
        strategy: latency-optimal        # default: the router's routing_strategy, mapped (see _names)
        failover: balanced               # a FailoverConfig preset: conservative / balanced / aggressive
        base_ejection_s: 30              # the preset's first ejection, in seconds
        redis_url: os.environ/PBM_REDIS_URL   # share breakers between proxy replicas (RedisStateStore)
        redis_cluster: my-gateway        # replicas share state only within one cluster name
        candidates: auto                 # install(candidates=...)
        max_wait_s: 0                    # install(max_wait_s=...)

Environment variables (used for any key the section does not set): ``PBM_STRATEGY``, ``PBM_FAILOVER``,
``PBM_BASE_EJECTION_S``, ``PBM_REDIS_URL``, ``PBM_REDIS_CLUSTER``, ``PBM_CANDIDATES``, ``PBM_MAX_WAIT_S``. A value
``os.environ/NAME`` (LiteLLM's convention) reads the variable ``NAME``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from pi_builder_middleware import ConfigError

__all__ = ["CONFIG_KEY", "ENV_PREFIX", "ProxySettings"]

#: The ``litellm_settings`` key (hence ``litellm.<key>``) holding the section.
CONFIG_KEY = "pi_builder_middleware"
ENV_PREFIX = "PBM_"
_KEYS = ("strategy", "failover", "base_ejection_s", "redis_url", "redis_cluster", "candidates", "max_wait_s")


def _resolve(value: object, env: Mapping[str, str]) -> object:
    if isinstance(value, str) and value.startswith("os.environ/"):
        return env.get(value.removeprefix("os.environ/"))
    return value


@dataclass(frozen=True)
class ProxySettings:
    """What the proxy handler installs: None means "not set" (the adapter's default applies)."""

    strategy: str | None = None
    failover: str | None = None
    base_ejection_s: float | None = None
    redis_url: str | None = None
    redis_cluster: str = "litellm-proxy"
    candidates: str = "auto"
    max_wait_s: float = 0.0

    @classmethod
    def load(cls, section: object = None, environ: Mapping[str, str] | None = None) -> ProxySettings:
        """Read the settings from ``section`` (the config dict) over ``environ`` (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        if section is None:
            section = {}
        if not isinstance(section, Mapping):
            raise ConfigError(
                f"litellm_settings.{CONFIG_KEY}",
                f"expected a mapping with some of {list(_KEYS)}, got {type(section).__name__}",
            )
        unknown = set(section) - set(_KEYS)
        if unknown:
            raise ConfigError(
                f"litellm_settings.{CONFIG_KEY}", f"unknown keys {sorted(map(str, unknown))}; use some of {list(_KEYS)}"
            )
        values: dict[str, object] = {}
        for key in _KEYS:
            value = _resolve(section.get(key), env)
            if value is None:
                value = env.get(ENV_PREFIX + key.upper()) or None
            if value is not None:
                values[key] = value
        for key in ("strategy", "failover", "redis_url", "redis_cluster", "candidates"):
            if key in values and not isinstance(values[key], str):
                raise ConfigError(f"{CONFIG_KEY}.{key}", f"expected a string, got {values[key]!r}")
        for key in ("max_wait_s", "base_ejection_s"):
            if key in values:
                try:
                    values[key] = float(values[key])  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    raise ConfigError(
                        f"{CONFIG_KEY}.{key}", f"expected a number of seconds, got {values[key]!r}"
                    ) from None
        return cls(**values)  # type: ignore[arg-type]
