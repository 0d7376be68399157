"""The strategy's last resort: every candidate is unavailable to the middleware, the call still goes out.

When the middleware has no answer for a pick (``when_all_out="fail"``, or the request's ``max_latency_ms`` /
``min_availability`` rule out every candidate), the call is not failed: it goes to the candidate of LiteLLM's
healthy list whose re-admission is soonest (``available_at``), preferring ones this request has not tried.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any

from pi_builder_middleware import NoProviderAvailableError, RouteRequest

from ._binding import Binding

__all__ = ["fallback_pick"]

log = logging.getLogger("pi_builder_middleware.adapters.litellm")


def fallback_pick(
    binding: Binding,
    rng: random.Random,
    by_id: Mapping[str, Mapping[str, Any]],
    attempted: frozenset[str],
    request: RouteRequest,
    avoid: frozenset[str],
) -> Mapping[str, Any]:
    """Every candidate is unavailable to the middleware: draw from LiteLLM's healthy list instead.

    What the caller asked for explicitly (``exclude`` / ``required_capabilities`` in the request
    options) still holds; if no candidate meets it, NoProviderAvailableError is raised.
    """
    providers = binding.middleware.providers
    user_excluded = request.exclude - avoid
    needs = request.required_capabilities
    reasons: dict[str, str] = {}
    allowed: dict[str, Mapping[str, Any]] = {}
    for pid, deployment in by_id.items():
        have = providers[pid].capabilities if pid in providers else frozenset()
        if pid in user_excluded:
            reasons[pid] = "excluded by the request's options"
        elif not needs <= have:
            reasons[pid] = f"missing capabilities: {', '.join(sorted(needs - have))}"
        else:
            allowed[pid] = deployment
    if not allowed:
        raise NoProviderAvailableError(reasons)
    pool = [pid for pid in allowed if pid not in attempted] or list(allowed)
    binding.counts["fallback_picks"] += 1
    if binding.counts["fallback_picks"] == 1 or log.isEnabledFor(logging.DEBUG):
        log.warning(
            "pi-builder-middleware: every candidate of this request is unavailable to the middleware "
            "(%s); sending it to the one re-admitted soonest",
            ", ".join(sorted(by_id)),
        )
    return allowed[_soonest(binding, rng, pool)]


def _soonest(binding: Binding, rng: random.Random, pool: Sequence[str]) -> str:
    """The deployment of ``pool`` whose re-admission is soonest (``available_at``); ties drawn at random."""
    failover = binding.middleware.failover
    known = binding.known
    at = {pid: failover.available_at(pid) if pid in known else float("-inf") for pid in pool}
    first = min(at.values())
    return rng.choice([pid for pid in pool if at[pid] == first])
