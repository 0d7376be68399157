"""LiteLLM's routing strategy names, mapped onto the middleware's strategies.

+---------------------------------+-------------------------------------------------------------------+
| LiteLLM ``routing_strategy``    | with the middleware installed                                     |
+=================================+===================================================================+
| ``simple-shuffle`` (default)    | ``health-shuffle``: LiteLLM's weighted shuffle among healthy ones |
| ``cost-based-routing``          | ``cost-optimal``                                                  |
| ``latency-based-routing``       | ``latency-optimal``                                               |
| ``usage-based-routing``,        | no equivalent: LiteLLM keeps picking (router level), the          |
| ``usage-based-routing-v2``,     | middleware records every outcome and filters deployments whose    |
| ``least-busy``, others          | breaker is open                                                   |
+---------------------------------+-------------------------------------------------------------------+

Router level: ``install(router)`` without ``strategy=`` / ``middleware=`` takes the router's own
``routing_strategy``. Per request: ``routing_strategy=`` in the call (or the proxy request body) picks
the mapped strategy for that request; a name without an equivalent is routed by the installation's
strategy among the healthy deployments (logged once per name). Where the middleware picks on a
``usage-based-routing-v2`` router, v2's rpm/tpm limits still hold (``_usage``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["LITELLM_STRATEGIES", "litellm_strategy_of", "mapped_strategy", "unmapped_once"]

log = logging.getLogger("pi_builder_middleware.adapters.litellm")

#: LiteLLM routing strategy name → the middleware strategy that stands in for it.
LITELLM_STRATEGIES: Mapping[str, str] = {
    "simple-shuffle": "health-shuffle",
    "cost-based-routing": "cost-optimal",
    "latency-based-routing": "latency-optimal",
}

_reported: set[str] = set()
_reported_lock = threading.Lock()


def _name_of(value: object) -> str | None:
    """A strategy name as LiteLLM accepts it (a string, or its ``RoutingStrategy`` enum)."""
    raw = getattr(value, "value", value)
    return raw if isinstance(raw, str) and raw else None


def mapped_strategy(litellm_name: object) -> str | None:
    """The middleware strategy for a LiteLLM strategy name, or None if there is no equivalent."""
    name = _name_of(litellm_name)
    return None if name is None else LITELLM_STRATEGIES.get(name)


def litellm_strategy_of(router: Any) -> str | None:
    """The routing strategy a ``litellm.Router`` was built with (``"simple-shuffle"`` if unset)."""
    settings = getattr(router, "settings", None)
    value: object = None
    if callable(settings):  # LiteLLM >= 1.110
        try:
            value = getattr(settings(), "routing_strategy", None)
        except Exception:  # a router without settings(): read the attribute below
            value = None
    if value is None:
        value = vars(router).get("routing_strategy")
    return _name_of(value) or "simple-shuffle"


def unmapped_once(name: str, what: str) -> None:
    """Log (once per process and name) that LiteLLM strategy ``name`` has no middleware equivalent."""
    with _reported_lock:
        if name in _reported:
            return
        _reported.add(name)
    log.warning(
        "pi-builder-middleware: LiteLLM routing_strategy %r has no equivalent in the middleware; %s", name, what
    )
