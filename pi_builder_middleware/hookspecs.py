"""Hook specifications. Plugins implement these with :data:`hookimpl`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .enums import ErrorKind
    from .models import Alert, HealthChange, Outcome, Provider, RoutingDecision
    from .registry import FailoverPolicyRegistry, HealthScorerRegistry, StrategyRegistry

__all__ = [
    "PROJECT_NAME",
    "hookimpl",
    "hookspec",
    "pbm_classify_error",
    "pbm_on_alert",
    "pbm_on_decision",
    "pbm_on_health_change",
    "pbm_on_outcome",
    "pbm_register_failover_policies",
    "pbm_register_health_scorers",
    "pbm_register_strategies",
]

PROJECT_NAME = "pi_builder_middleware"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def pbm_register_strategies(registry: StrategyRegistry) -> None:
    """Add routing strategies with ``registry.add(strategy)``.

    :param registry: the middleware's strategy registry.
    """


@hookspec
def pbm_register_health_scorers(registry: HealthScorerRegistry) -> None:
    """Add health scorers with ``registry.add(scorer)``.

    :param registry: the middleware's health-scorer registry.
    """


@hookspec
def pbm_register_failover_policies(registry: FailoverPolicyRegistry) -> None:
    """Add failover policies with ``registry.add(policy)``.

    :param registry: the middleware's failover-policy registry.
    """


@hookspec(firstresult=True)
def pbm_classify_error(error: BaseException, provider: Provider) -> ErrorKind | None:
    """Say what ``error`` from ``provider`` means, or None to let the next plugin (finally the built-in) decide.

    :param error: the exception raised by the provider call.
    :param provider: the provider that raised it.
    """


@hookspec
def pbm_on_outcome(outcome: Outcome, error_kind: ErrorKind | None) -> None:
    """Observe every recorded outcome (after classification).

    :param outcome: the outcome as recorded.
    :param error_kind: its classification, None for successes.
    """


@hookspec
def pbm_on_decision(decision: RoutingDecision) -> None:
    """Observe every routing decision.

    :param decision: the decision just made.
    """


@hookspec
def pbm_on_health_change(event: HealthChange) -> None:
    """Observe a provider's health status changing.

    :param event: old and new status, and why.
    """


@hookspec
def pbm_on_alert(alert: Alert) -> None:
    """Observe an alert firing (or a RECOVERED alert clearing the others).

    :param alert: the alert.
    """
