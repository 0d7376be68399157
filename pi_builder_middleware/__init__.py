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

#: Where each public name lives: its module is imported when the name is first read (PEP 562), so
#: ``import pi_builder_middleware`` costs next to nothing and a program pays only for what it uses. The
#: imports under TYPE_CHECKING above say the same for type checkers (tests/test_public_api.py keeps the two,
#: and ``__all__``, in step).
_MODULE_OF: dict[str, str] = {
    "BLOCK_ENV_VAR": ".pluginmanager",
    "MAX_COST": ".models",
    "MAX_LATENCY_S": ".models",
    "MAX_TOKENS": ".models",
    "Alert": ".models",
    "AlertKind": ".enums",
    "AlertThresholds": ".config",
    "AllOutMode": ".enums",
    "AllProvidersFailedError": ".errors",
    "Attempt": ".models",
    "AttemptTimeoutError": ".errors",
    "BreakerUpdate": ".state",
    "BreakerWindow": ".interfaces",
    "Candidate": ".interfaces",
    "CircuitState": ".enums",
    "Clock": "._clock",
    "ConfigError": ".errors",
    "DeadlineExceededError": ".errors",
    "ErrorKind": ".enums",
    "EventKind": ".enums",
    "FailoverConfig": ".config",
    "FailoverEvent": ".models",
    "FailoverManager": ".failover",
    "FailoverPolicy": ".interfaces",
    "FailoverPolicyRegistry": ".registry",
    "FailoverPreset": ".enums",
    "FirstChunkTimeoutError": ".errors",
    "HealthChange": ".models",
    "HealthMonitor": ".monitor",
    "HealthScorer": ".interfaces",
    "HealthScorerRegistry": ".registry",
    "HealthSnapshot": ".models",
    "HealthStatus": ".enums",
    "HealthThresholds": ".config",
    "HedgePolicy": ".hedging",
    "ManualClock": "._clock",
    "MemoryStateStore": ".state",
    "Middleware": ".middleware",
    "MonitorConfig": ".config",
    "NoProviderAvailableError": ".errors",
    "OpenAttempt": ".attempts",
    "Outcome": ".models",
    "OutlierConfig": ".config",
    "PeerEjection": ".interfaces",
    "PiBuilderError": ".errors",
    "PluginBudget": ".pluginmanager",
    "PluginError": ".errors",
    "PluginHost": ".pluginmanager",
    "ProbeFn": ".failover",
    "Provider": ".models",
    "ProviderRouter": ".routing",
    "RetryBudget": ".budget",
    "RouteRequest": ".models",
    "RoutingConfig": ".config",
    "RoutingDecision": ".models",
    "StateReplica": ".state",
    "StateStore": ".state",
    "Strategy": ".interfaces",
    "StrategyContext": ".interfaces",
    "StrategyRegistry": ".registry",
    "StreamInterruptedError": ".errors",
    "UnknownProviderError": ".errors",
    "Usage": ".models",
    "Verdict": ".interfaces",
    "chain_exhausted": ".errors",
    "enable_prometheus": ".telemetry",
    "extract_retry_after": ".errorinfo",
    "get_plugin_manager": ".pluginmanager",
    "hookimpl": ".hookspecs",
    "hookspec": ".hookspecs",
    "monotonic_clock": "._clock",
    "parse_retry_after": ".errorinfo",
    "status_code_of": ".errorinfo",
}


if not TYPE_CHECKING:  # hidden from type checkers: for them a misspelt name stays an error, not Any

    def __getattr__(name: str) -> Any:
        module = _MODULE_OF.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value  # later reads skip this function
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
