"""How failures become ejections: a :class:`~pi_builder_middleware.interfaces.FailoverPolicy`'s verdicts,
``max_ejection_percent``, peer (outlier) checks and ejection times.

:class:`Ejector` trips the breakers of one :class:`~pi_builder_middleware.failover.FailoverManager`
(which owns them and calls it with its lock held). The policy is a plugin: whatever it raises or
returns, a request must not fail and a provider must not stay out for good; the functions below
guard its calls.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterable, Mapping

from ._breaker import Breaker
from ._guard import CallbackFailures
from .config import FailoverConfig
from .enums import CircuitState, ErrorKind, EventKind
from .interfaces import BreakerWindow, FailoverPolicy, PeerEjection
from .models import FailoverEvent

__all__ = [
    "EjectionMethods",
    "Ejector",
    "EventFn",
    "cap_blocks",
    "ejection_s",
    "has_peer_checks",
    "peer_ejections",
    "trip_verdict",
]

#: Makes (and logs, stages, ...) one event: the manager's, called under its lock.
EventFn = Callable[[EventKind, str, float, str, Breaker], FailoverEvent]

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


class Ejector:
    """Trips breakers: on a provider's failures (the policy's verdict) and on peer checks, within the cap.

    ``breakers`` and ``groups`` are the manager's (read, and tripped, under its lock); ``event`` is its
    event function. ``max_ejection_percent``: the config's, else the policy's default.
    """

    def __init__(
        self,
        config: FailoverConfig,
        policy: FailoverPolicy,
        rng: random.Random,
        failures: CallbackFailures,
        breakers: Mapping[str, Breaker],
        groups: Mapping[str, str | None],
        event: EventFn,
    ) -> None:
        self.config = config
        self.policy = policy
        self.rng = rng
        self.failures = failures
        pct = config.max_ejection_percent
        self.max_ejection_percent = pct if pct is not None else policy.default_max_ejection_percent
        self.peer_checks = has_peer_checks(policy)  # only policies that override peer_ejections pay for them
        self.next_peer_check = float("-inf")
        self.peer_check_errors = 0  # peer_ejections calls that raised
        self._breakers = breakers
        self._groups = groups
        self._event = event

    def on_failure(self, provider_id: str, b: Breaker, now: float, kind: ErrorKind, detail: str) -> list[FailoverEvent]:
        b.consecutive_failures += 1
        out = [self._event(EventKind.FAILURE, provider_id, now, f"{kind.value} {detail}".strip(), b)]
        if b.state is CircuitState.OPEN:
            return out
        if b.state is CircuitState.HALF_OPEN:
            return out + self.trip(provider_id, b, now, f"trial call failed ({kind.value})")
        b.push(now, True, now - self.config.window_s)
        why = trip_verdict(self.policy, b.view(provider_id), self.config, self.failures)
        if why:
            blocked = self._cap_blocks(provider_id)
            if blocked is None:
                out += self.trip(provider_id, b, now, why)
            else:
                b.counts["ejections_capped"] += 1
                out.append(
                    self._event(EventKind.EJECTION_CAPPED, provider_id, now, f"{why}; not ejected: {blocked}", b)
                )
        return out

    def _cap_blocks(self, provider_id: str) -> str | None:
        group = self._groups.get(provider_id)
        return cap_blocks(
            self.max_ejection_percent, (b.state for pid, b in self._breakers.items() if self._groups.get(pid) == group)
        )

    def peer_check(self, now: float) -> list[FailoverEvent]:
        """Ask the policy about each group's CLOSED providers; eject what it names while the cap allows."""
        self.next_peer_check = now + self.config.outlier.interval_s
        cutoff = now - self.config.window_s
        groups: dict[str | None, dict[str, BreakerWindow]] = {}
        for pid, b in self._breakers.items():
            if b.state is CircuitState.CLOSED:
                b.expire(cutoff)
                groups.setdefault(self._groups.get(pid), {})[pid] = b.view(pid)
        out: list[FailoverEvent] = []
        for windows in groups.values():
            ejections = peer_ejections(self.policy, windows, self.config, now)
            if ejections is None:
                self.peer_check_errors += 1
                continue
            for ejection in ejections:
                target = self._breakers.get(ejection.provider_id)
                if target is None or ejection.provider_id not in windows or target.state is not CircuitState.CLOSED:
                    continue  # not a CLOSED member of this group (maybe ejected a moment ago)
                blocked = self._cap_blocks(ejection.provider_id)
                if blocked is None:
                    target.counts["peer_ejections"] += 1
                    out += self.trip(ejection.provider_id, target, now, ejection.reason)
                else:
                    target.counts["ejections_capped"] += 1
                    out.append(
                        self._event(
                            EventKind.EJECTION_CAPPED,
                            ejection.provider_id,
                            now,
                            f"{ejection.reason}; not ejected: {blocked}",
                            target,
                        )
                    )
        return out

    def trip(self, provider_id: str, b: Breaker, now: float, why: str) -> list[FailoverEvent]:
        if b.state is CircuitState.CLOSED and now - b.closed_at > self.config.trip_memory_s:
            b.trips = 0  # long healthy since it last recovered: start again from the base ejection time
        b.trips += 1
        held = not self.config.escalate_when_all_out and all(
            other.state is not CircuitState.CLOSED for pid, other in self._breakers.items() if pid != provider_id
        )
        ejection = ejection_s(self.policy, 1 if held else b.trips, self.config, self.rng, self.failures)
        b.open(now + ejection)
        return [
            self._event(
                EventKind.BLACKLIST,
                provider_id,
                now,
                f"{why}; ejected for {ejection:.1f} s (trip {b.trips}"
                f"{', every provider out: base ejection' if held else ''})",
                b,
            )
        ]


class EjectionMethods:
    """The :class:`~pi_builder_middleware.FailoverManager` properties that read its :class:`Ejector` (a mixin)."""

    _ejector: Ejector

    @property
    def policy(self) -> FailoverPolicy:
        """The failover policy deciding trips and ejection times."""
        return self._ejector.policy

    @policy.setter
    def policy(self, policy: FailoverPolicy) -> None:
        self._ejector.policy = policy

    @property
    def max_ejection_percent(self) -> float | None:
        """The ejection cap in use: ``FailoverConfig.max_ejection_percent``, else the policy's default."""
        return self._ejector.max_ejection_percent

    @property
    def peer_check_errors(self) -> int:
        """``peer_ejections`` calls that raised (or gave something that is no PeerEjection)."""
        return self._ejector.peer_check_errors

    @property
    def _peer_checks(self) -> bool:
        return self._ejector.peer_checks
