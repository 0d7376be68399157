"""Health-aware routing, monitoring and failover for LLM calls.

Import what you need from here; submodules are private unless documented. Framework glue lives in
``pi_builder_middleware.adapters.litellm`` and ``pi_builder_middleware.adapters.langchain``, the Redis
state store in ``pi_builder_middleware.redis_store``; each is imported only when you ask for it. Telemetry
(OpenTelemetry, Prometheus) lives in ``pi_builder_middleware.telemetry`` and imports its libraries only when on.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._clock import Clock, ManualClock, monotonic_clock
    from .attempts import OpenAttempt
    from .budget import RetryBudget
    from .config import (
        AlertThresholds,
        FailoverConfig,
        HealthThresholds,
        MonitorConfig,
        OutlierConfig,
        RoutingConfig,
    )
    from .enums import AlertKind, AllOutMode, CircuitState, ErrorKind, EventKind, FailoverPreset, HealthStatus
    from .errorinfo import extract_retry_after, parse_retry_after, status_code_of
    from .errors import (
        AllProvidersFailedError,
        AttemptTimeoutError,
        ConfigError,
        DeadlineExceededError,
        FirstChunkTimeoutError,
        NoProviderAvailableError,
        PiBuilderError,
        PluginError,
        StreamInterruptedError,
        UnknownProviderError,
        chain_exhausted,
    )
    from .failover import FailoverManager, ProbeFn
    from .hedging import HedgePolicy
    from .hookspecs import hookimpl, hookspec
    from .interfaces import (
        BreakerWindow,
        Candidate,
        FailoverPolicy,
        HealthScorer,
        PeerEjection,
        Strategy,
        StrategyContext,
        Verdict,
    )
    from .middleware import Middleware
    from .models import (
        MAX_COST,
        MAX_LATENCY_S,
        MAX_TOKENS,
        Alert,
        Attempt,
        FailoverEvent,
        HealthChange,
        HealthSnapshot,
        Outcome,
        Provider,
        RouteRequest,
        RoutingDecision,
        Usage,
    )
    from .monitor import HealthMonitor
    from .pluginmanager import BLOCK_ENV_VAR, PluginBudget, PluginHost, get_plugin_manager
    from .registry import FailoverPolicyRegistry, HealthScorerRegistry, StrategyRegistry
    from .routing import ProviderRouter
    from .state import BreakerUpdate, MemoryStateStore, StateReplica, StateStore
    from .telemetry import enable_prometheus

__version__ = "0.1.0"

__all__ = [
    "BLOCK_ENV_VAR",
    "MAX_COST",
    "MAX_LATENCY_S",
    "MAX_TOKENS",
    "Alert",
    "AlertKind",
    "AlertThresholds",
    "AllOutMode",
    "AllProvidersFailedError",
    "Attempt",
    "AttemptTimeoutError",
    "BreakerUpdate",
    "BreakerWindow",
    "Candidate",
    "CircuitState",
    "Clock",
    "ConfigError",
    "DeadlineExceededError",
    "ErrorKind",
    "EventKind",
    "FailoverConfig",
    "FailoverEvent",
    "FailoverManager",
    "FailoverPolicy",
    "FailoverPolicyRegistry",
    "FailoverPreset",
    "FirstChunkTimeoutError",
    "HealthChange",
    "HealthMonitor",
    "HealthScorer",
    "HealthScorerRegistry",
    "HealthSnapshot",
    "HealthStatus",
    "HealthThresholds",
    "HedgePolicy",
    "ManualClock",
    "MemoryStateStore",
    "Middleware",
    "MonitorConfig",
    "NoProviderAvailableError",
    "OpenAttempt",
    "Outcome",
    "OutlierConfig",
    "PeerEjection",
    "PiBuilderError",
    "PluginBudget",
    "PluginError",
    "PluginHost",
    "ProbeFn",
    "Provider",
    "ProviderRouter",
    "RetryBudget",
    "RouteRequest",
    "RoutingConfig",
    "RoutingDecision",
    "StateReplica",
    "StateStore",
    "Strategy",
    "StrategyContext",
    "StrategyRegistry",
    "StreamInterruptedError",
    "UnknownProviderError",
    "Usage",
    "Verdict",
    "chain_exhausted",
    "enable_prometheus",
    "extract_retry_after",
    "get_plugin_manager",
    "hookimpl",
    "hookspec",
    "monotonic_clock",
    "parse_retry_after",
    "status_code_of",
]

#: Where each public name lives: a name's module is imported when the name is first read (PEP 562), so
#: ``import pi_builder_middleware`` costs next to nothing and a program pays only for what it uses.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "._clock": ("Clock", "ManualClock", "monotonic_clock"),
    ".attempts": ("OpenAttempt",),
    ".budget": ("RetryBudget",),
    ".config": (
        "AlertThresholds",
        "FailoverConfig",
        "HealthThresholds",
        "MonitorConfig",
        "OutlierConfig",
        "RoutingConfig",
    ),
    ".enums": ("AlertKind", "AllOutMode", "CircuitState", "ErrorKind", "EventKind", "FailoverPreset", "HealthStatus"),
    ".errorinfo": ("extract_retry_after", "parse_retry_after", "status_code_of"),
    ".errors": (
        "AllProvidersFailedError",
        "AttemptTimeoutError",
        "ConfigError",
        "DeadlineExceededError",
        "FirstChunkTimeoutError",
        "NoProviderAvailableError",
        "PiBuilderError",
        "PluginError",
        "StreamInterruptedError",
        "UnknownProviderError",
        "chain_exhausted",
    ),
    ".failover": ("FailoverManager", "ProbeFn"),
    ".hedging": ("HedgePolicy",),
    ".hookspecs": ("hookimpl", "hookspec"),
    ".interfaces": (
        "BreakerWindow",
        "Candidate",
        "FailoverPolicy",
        "HealthScorer",
        "PeerEjection",
        "Strategy",
        "StrategyContext",
        "Verdict",
    ),
    ".middleware": ("Middleware",),
    ".models": (
        "MAX_COST",
        "MAX_LATENCY_S",
        "MAX_TOKENS",
        "Alert",
        "Attempt",
        "FailoverEvent",
        "HealthChange",
        "HealthSnapshot",
        "Outcome",
        "Provider",
        "RouteRequest",
        "RoutingDecision",
        "Usage",
    ),
    ".monitor": ("HealthMonitor",),
    ".pluginmanager": ("BLOCK_ENV_VAR", "PluginBudget", "PluginHost", "get_plugin_manager"),
    ".registry": ("FailoverPolicyRegistry", "HealthScorerRegistry", "StrategyRegistry"),
    ".routing": ("ProviderRouter",),
    ".state": ("BreakerUpdate", "MemoryStateStore", "StateReplica", "StateStore"),
    ".telemetry": ("enable_prometheus",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later reads skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
