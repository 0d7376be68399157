"""What plugins implement: routing strategies, health scorers and failover policies.

Each is a small class with a ``name`` (how configuration refers to it) and one job. Strategies see
providers as :class:`Candidate` objects: the provider plus live, precomputed health numbers, so
scoring is O(candidates) and reads no percentiles.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from .enums import CircuitState

if TYPE_CHECKING:
    from .config import FailoverConfig
    from .models import Provider, RouteRequest

__all__ = [
    "BreakerWindow",
    "Candidate",
    "FailoverPolicy",
    "HealthScorer",
    "PeerEjection",
    "Strategy",
    "StrategyContext",
]


class Candidate:
    """A provider as strategies see it. The engine updates these fields in place as outcomes arrive.

    ``latency_s`` / ``ttft_s`` are the median of the last successful calls, None until the first one
    (and again once the window holds nothing, so a starved provider gets explored again);
    ``latency_s`` comes from non-streamed calls (streamed ones only while there are none: a stream's
    duration depends on the answer's length), ``ttft_s`` from streamed ones;
    ``availability`` is successes / (successes + health failures) in the monitor window (1.0 with no
    data); ``samples`` counts outcomes in that window; ``explore_picks`` counts how often this
    provider was chosen while it had too little data.
    """

    __slots__ = (
        "availability",
        "circuit",
        "consecutive_failures",
        "error_rate",
        "explore_picks",
        "inflight",
        "latency_s",
        "provider",
        "samples",
        "stale_at",
        "ttft_s",
    )

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.latency_s: float | None = None
        self.ttft_s: float | None = None
        self.availability = 1.0
        self.error_rate = 0.0
        self.samples = 0
        self.circuit = CircuitState.CLOSED
        self.consecutive_failures = 0
        self.explore_picks = 0
        self.inflight = 0  # attempts started and not yet ended (Middleware.begin_attempt / end_attempt)
        self.stale_at = float("inf")  # when the oldest sample leaves the window (the router refreshes then)

    def __repr__(self) -> str:
        return (f"Candidate({self.provider.id!r}, latency_s={self.latency_s}, availability="
                f"{self.availability:.3f}, samples={self.samples}, circuit={self.circuit.value})")


@dataclass(frozen=True, slots=True)
class StrategyContext:
    """What a strategy may use besides the candidates."""

    rng: random.Random
    health_scorer: HealthScorer
    min_samples: int


class Strategy(ABC):
    """Orders candidates for a request. Subclass it, set ``name`` and implement :meth:`rank`."""

    name: ClassVar[str]

    @abstractmethod
    def rank(self, candidates: Sequence[Candidate], request: RouteRequest, ctx: StrategyContext) -> list[float]:
        """Return one score per candidate, in the same order, in [0, 1]; higher is better."""


class HealthScorer(ABC):
    """Turns a candidate's live health into one 0–1 number (1 = fully reliable)."""

    name: ClassVar[str]

    @abstractmethod
    def score(self, candidate: Candidate) -> float:
        """Score one candidate."""


@dataclass(frozen=True, slots=True)
class BreakerWindow:
    """What a failover policy sees of one provider: its breaker's recent calls (over ``window_s``).

    ``calls`` and ``failures`` count successes and health failures while the breaker was CLOSED (429s
    and request-specific errors are not in them).
    """

    provider_id: str
    consecutive_failures: int
    calls: int
    failures: int
    trips: int


@dataclass(frozen=True, slots=True)
class PeerEjection:
    """A provider a policy wants ejected because of how it compares with its peers, and why."""

    provider_id: str
    reason: str


class FailoverPolicy(ABC):
    """Decides when a breaker trips and how long the provider stays ejected.

    :meth:`should_trip` judges one provider on each failure; :meth:`peer_ejections` (optional) judges a
    whole group now and then. ``default_max_ejection_percent`` is the ejection cap used when
    ``FailoverConfig.max_ejection_percent`` is None (None: no cap).
    """

    name: ClassVar[str]
    default_max_ejection_percent: ClassVar[float | None] = None

    @abstractmethod
    def should_trip(self, window: BreakerWindow, config: FailoverConfig) -> str | None:
        """Return why the breaker should open now, or None to keep it closed."""

    @abstractmethod
    def ejection_s(self, trips: int, config: FailoverConfig, rng: random.Random) -> float:
        """Seconds to keep the provider out on its ``trips``-th trip (1 = first)."""

    def peer_ejections(self, windows: Mapping[str, BreakerWindow], config: FailoverConfig,
                       now: float) -> Sequence[PeerEjection]:
        """Providers of one group to eject, worst first; ``windows`` holds the group's CLOSED providers.

        Called at most every ``config.outlier.interval_s``, as outcomes are recorded. The manager
        ejects in order while ``max_ejection_percent`` allows. Default: nobody (not even called).
        """
        return ()
