"""Filling the typed registries through the registration hooks."""

from __future__ import annotations

from dataclasses import dataclass

from .pluginmanager import PluginHost, get_plugin_manager
from .registry import FailoverPolicyRegistry, HealthScorerRegistry, StrategyRegistry

__all__ = ["Registries", "build_registries"]


@dataclass(frozen=True, slots=True)
class Registries:
    """The three registries of one plugin host."""

    strategies: StrategyRegistry
    scorers: HealthScorerRegistry
    policies: FailoverPolicyRegistry


def build_registries(host: PluginHost | None = None) -> Registries:
    """Ask every plugin of ``host`` to register; a plugin that raises is logged, counted and skipped.

    Without a host, only the built-in plugins register: nothing is read from installed entry points (a
    bare :class:`ProviderRouter` or :class:`FailoverManager` has no hidden side effects; the
    :class:`Middleware` builds the host that loads them).
    """
    host = host or PluginHost(get_plugin_manager(load_entrypoints=False))
    out = Registries(StrategyRegistry(), HealthScorerRegistry(), FailoverPolicyRegistry())
    host.register_strategies(out.strategies)
    host.register_health_scorers(out.scorers)
    host.register_failover_policies(out.policies)
    return out
