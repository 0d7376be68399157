"""How a :class:`~pi_builder_middleware.interfaces.FailoverPolicy`'s answers become ejections.

The policy is a plugin: whatever it raises or returns, a request must not fail and a provider must
not stay out for good. These functions guard its calls and apply ``max_ejection_percent``;
:class:`~pi_builder_middleware.failover.FailoverManager` (under its lock) acts on their answers.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable, Mapping

from ._guard import CallbackFailures
from .config import FailoverConfig
from .enums import CircuitState
from .interfaces import BreakerWindow, FailoverPolicy, PeerEjection

__all__ = ["cap_blocks", "ejection_s", "has_peer_checks", "peer_ejections", "trip_verdict"]

_log = logging.getLogger("pi_builder_middleware.failover")


def has_peer_checks(policy: FailoverPolicy) -> bool:
    """Whether the policy overrides ``peer_ejections`` (others pay nothing per record)."""
    return type(policy).peer_ejections is not FailoverPolicy.peer_ejections


def trip_verdict(
    policy: FailoverPolicy, window: BreakerWindow, config: FailoverConfig, failures: CallbackFailures
) -> str | None:
    """Why the policy trips this breaker, or None; a policy that raises gives no verdict (counted)."""
    try:
        return policy.should_trip(window, config)
    except Exception as exc:  # a policy plugin must not fail the request: no verdict, no trip
        failures.failed("failover_policy", exc)
        return None


def ejection_s(
    policy: FailoverPolicy, trips: int, config: FailoverConfig, rng: random.Random, failures: CallbackFailures
) -> float:
    """The policy's ejection time; if it raises or gives no finite number >= 0, the configured one (no jitter)."""
    try:
        seconds = float(policy.ejection_s(trips, config, rng))
        if 0.0 <= seconds < math.inf:
            return seconds
        raise ValueError(f"ejection_s returned {seconds!r}, not a finite number of seconds >= 0")
    except Exception as exc:  # NaN would keep the provider out for good, a raise would fail the request
        failures.failed("failover_policy", exc)
    try:
        base = config.base_ejection_s * config.ejection_multiplier ** (trips - 1)
    except OverflowError:
        base = math.inf
    return min(base, config.max_ejection_s)


def cap_blocks(pct: float | None, group_states: Iterable[CircuitState]) -> str | None:
    """Why ejecting one more CLOSED provider of a group would exceed ``pct`` % out (None: it may go)."""
    if pct is None:
        return None
    size = out = 0
    for state in group_states:
        size += 1
        out += state is not CircuitState.CLOSED
    allowed = max(1, math.floor(size * pct / 100.0 + 1e-9))  # Envoy: one may always be ejected
    if out + 1 <= allowed:
        return None
    return f"max_ejection_percent {pct:g} % allows {allowed} of {size} out, {out} already are"


def peer_ejections(
    policy: FailoverPolicy, windows: Mapping[str, BreakerWindow], config: FailoverConfig, now: float
) -> list[PeerEjection] | None:
    """The policy's ejections for one group, read whole and checked; None (logged) if it raised or gave junk."""
    try:  # read whole (a generator may raise half-way) and checked before anyone is ejected
        ejections = list(policy.peer_ejections(windows, config, now))
        for ejection in ejections:
            if not isinstance(ejection, PeerEjection):
                raise TypeError(f"peer_ejections gave {type(ejection).__name__}, not a PeerEjection")
    except Exception:  # a plugin must not break the request: log, count, carry on
        _log.exception("failover policy %r raised in peer_ejections; nobody ejected", policy.name)
        return None
    return ejections
