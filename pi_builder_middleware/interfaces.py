"""What plugins implement: routing strategies, health scorers and failover policies.

Each is a small class with a ``name`` (how configuration refers to it) and one job. Strategies see
providers as :class:`Candidate` objects: the provider plus live, precomputed health numbers, so
scoring is O(candidates) and reads no percentiles.
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, ClassVar

from .config import RoutingConfig
from .enums import CircuitState
from .estimators import DecayedBeta, DecayedCount, PeakEwma, Slowdown

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
    "Verdict",
]


class Candidate:
    """A provider as strategies see it. The engine updates these fields in place as outcomes arrive.

    What strategies read (plain numbers, kept current by the monitor on every outcome and refreshed
    by the router as time passes; see :class:`~pi_builder_middleware.config.RoutingConfig`):

    - ``latency_s`` / ``ttft_s``: peak-EWMA of successful calls' latency / time to first token (None
      until ``RoutingConfig.latency_warmup`` of them are in); ``latency_s`` comes from non-streamed
      calls (streamed ones only while there are none: a stream's duration depends on the answer's
      length), ``ttft_s`` from streams.
    - ``availability``: decayed Beta estimate of P(success) over health-relevant outcomes; never 0 or
      1, back toward the prior when the provider gets no traffic.
    - ``recent_failures``: health failures, decayed (one failure now reads 1.0, half that a
      half-life later, halved by each success, cleared when the breaker recovers);
      ``rate_limited``: decayed share of recent answers that were 429s (0–1).
    - ``inflight``: attempts started and not yet ended; ``concurrency_limit``: the in-flight level
      at which the provider answered 429 (None when it never did, or long ago); ``saturated``.
    - ``slowdown``: how many times slower than usual it answers now (1.0 = as usual; latency or TTFT,
      whichever slowed more); ``suspect``: recent failures or slowdown past the
      :class:`~pi_builder_middleware.config.RoutingConfig` thresholds (priority strategies pass it over
      and probe it, :meth:`probe_due`).
    - ``penalty``: what a call costs beyond its latency, (1 + recent failures) / (availability × share
      of calls accepted); latency-optimal multiplies it in.
    - ``price_in`` / ``price_out``: the provider's prices per 1k tokens (copies, for speed).
    - ``samples`` / ``error_rate``: outcomes and error rate in the monitor's window (health status).
    - ``last_sent_at``: when a request was last routed to it (exploration).
    """

    __slots__ = (
        "_answered",
        "_avail",
        "_cfg",
        "_failures",
        "_limit_at",
        "_limited",
        "availability",
        "circuit",
        "concurrency_limit",
        "consecutive_failures",
        "decay_at",
        "error_rate",
        "inflight",
        "last_sent_at",
        "latency",
        "latency_s",
        "penalty",
        "price_in",
        "price_out",
        "provider",
        "rate_limited",
        "recent_failures",
        "samples",
        "slow_latency",
        "slow_ttft",
        "slowdown",
        "stale_at",
        "suspect",
        "ttft",
        "ttft_s",
    )

    def __init__(self, provider: Provider, config: RoutingConfig | None = None) -> None:
        cfg = config or _DEFAULT_ROUTING
        self.provider = provider
        self.price_in = provider.cost_per_1k_input  # copied: read per candidate on every cost-optimal decision
        self.price_out = provider.cost_per_1k_output
        self._cfg = cfg
        self.latency = PeakEwma(cfg.latency_half_life_s, cfg.latency_warmup)
        self.ttft = PeakEwma(cfg.latency_half_life_s, cfg.latency_warmup)
        self.slow_latency = Slowdown(cfg.baseline_half_life_s)
        self.slow_ttft = Slowdown(cfg.baseline_half_life_s)
        self.slowdown = 1.0
        self.suspect = False
        self._avail = DecayedBeta(cfg.availability_half_life_s, cfg.availability_prior, cfg.availability_prior_weight)
        self._failures = DecayedCount(cfg.failure_half_life_s)
        # share of 429s among answers: limited / (limited + answered + 1); exactly 0 without a 429
        self._limited = DecayedCount(cfg.rate_limit_half_life_s)
        self._answered = DecayedCount(cfg.rate_limit_half_life_s)
        self._limit_at = float("-inf")
        self.latency_s: float | None = None
        self.ttft_s: float | None = None
        self.availability = self._avail.mean(0.0)
        self.recent_failures = 0.0
        self.rate_limited = 0.0
        self.concurrency_limit: int | None = None
        self.error_rate = 0.0
        self.samples = 0
        self.circuit = CircuitState.CLOSED
        self.consecutive_failures = 0
        self.inflight = 0  # attempts started and not yet ended (Middleware.begin_attempt / end_attempt)
        self.last_sent_at = float("-inf")
        self.stale_at = float("inf")  # when the oldest sample leaves the window (the router refreshes then)
        self.decay_at = float("inf")  # when the decayed numbers above should be read again
        self.penalty = 1.0 / self.availability  # see refresh()

    @property
    def saturated(self) -> bool:
        """Whether the provider already has as many calls in flight as it accepted before a 429."""
        limit = self.concurrency_limit
        return limit is not None and self.inflight >= limit

    def observe(
        self,
        verdict: Verdict,
        latency_s: float,
        ttft_s: float | None,
        now: float,
        memory_s: float,
        output_tokens: int = 0,
    ) -> None:
        """Fold one outcome into the estimates (the monitor calls this under its lock).

        The slowdown of non-streamed calls is judged on latency per ``1 + output_tokens / 64``: a
        long answer takes longer without the provider being slower (64 tokens stand for the fixed
        part of a call). Streams are judged on time to first token.
        """
        if now > self.last_sent_at:
            self.last_sent_at = now  # a call went there (whoever routed it): no exploration needed
        if verdict is Verdict.OK:
            # Until ``warmup`` calls are in, a provider is costed like one without data (the best known
            # latency), so it gets the calls it needs to show its real speed past connection setup.
            if ttft_s is None:
                value = self.latency.observe(latency_s, now)
                if self.latency.count >= self.latency.warmup:
                    self.latency_s = value
                    self.slow_latency.observe(latency_s / (1.0 + output_tokens * _PER_TOKEN), now, not self.suspect)
            else:
                value = self.ttft.observe(ttft_s, now)
                if self.ttft.count >= self.ttft.warmup:
                    self.ttft_s = value
                    self.slow_ttft.observe(ttft_s, now, not self.suspect)
                if self.latency.value is None:
                    self.latency_s = latency_s if self.latency_s is None else min(self.latency_s, latency_s)
            self._avail.observe(True, now)
            self._answered.add(now)
            self._failures.scale(0.5, now)  # each success is evidence too: a blip fades in a few calls
            limit = self.concurrency_limit
            if limit is not None and self.inflight > limit:
                self.concurrency_limit = self.inflight  # it took more than we thought: raise the ceiling
        elif verdict is Verdict.FAILED:
            self._avail.observe(False, now)
            self._failures.add(now)
        elif verdict is Verdict.RATE_LIMITED:
            self._limited.add(now)
            if self.inflight >= 2:  # refused while others ran: a concurrency ceiling, not a quota
                self.concurrency_limit = self.inflight - 1
                self._limit_at = now
        self.refresh(now, memory_s)

    def at_least(self, seconds: float, stream: bool, now: float) -> None:
        """A call cancelled after ``seconds`` (a hedge that lost): its latency (TTFT for a stream) was at least that."""
        if stream:
            if self.ttft.at_least(seconds, now):
                self.ttft_s = self.ttft.value
        elif self.latency.at_least(seconds, now):
            self.latency_s = self.latency.value

    def refresh(self, now: float, memory_s: float) -> None:
        """Recompute the decayed numbers for ``now``."""
        self.availability = self._avail.mean(now)
        self.recent_failures = self._failures.read(now)
        limited = self._limited.read(now)
        self.rate_limited = limited / (limited + self._answered.read(now) + 1.0) if limited else 0.0
        if self.concurrency_limit is not None and now - self._limit_at > memory_s:
            self.concurrency_limit = None  # no 429 for a long time: forget the ceiling
        # What a call costs beyond its latency, folded once here so ranking stays one multiplication per
        # provider: failures just now, answers that fail, answers that are 429s (each needs another try).
        avail = self.availability if self.availability > _FLOOR else _FLOOR
        accepted = 1.0 - self.rate_limited
        self.penalty = (1.0 + self.recent_failures) / (avail * (accepted if accepted > _FLOOR else _FLOOR))
        lat, ttft = self.slow_latency.ratio(), self.slow_ttft.ratio()
        self.slowdown = lat if lat > ttft else ttft
        self._judge()
        self.decay_at = now + _REFRESH_S

    def _judge(self) -> None:
        """Set ``suspect`` from recent failures and slowdown (read by the priority strategies)."""
        cfg = self._cfg
        slow = cfg.slow_factor
        # hysteresis: suspect after failures reading suspect_failures, well again once they read a third
        # of that (two successful probes after two failures), so a provider failing half its calls
        # does not win its traffic back with every lucky call
        fails = cfg.suspect_failures * _RELEASE if self.suspect else cfg.suspect_failures
        self.suspect = self.recent_failures >= fails or (slow is not None and self.slowdown >= slow)

    def probe_due(self, now: float) -> bool:
        """Whether a suspect provider may get its next probe: nothing in flight there and no request
        routed to it for ``RoutingConfig.probe_interval_s``."""
        return self.inflight == 0 and now - self.last_sent_at >= self._cfg.probe_interval_s

    def recovered(self) -> None:
        """The breaker closed after successful trial calls: the failures that tripped it are settled."""
        self._failures.reset()
        self.recent_failures = 0.0
        self._judge()  # at once: the router's next look may be a quarter second away
        self.decay_at = float("-inf")  # the router re-reads the rest (penalty) at its next look

    def forget(self) -> None:
        """Drop every estimate (``Middleware.reset``)."""
        self.latency.reset()
        self.ttft.reset()
        self.slow_latency.reset()
        self.slow_ttft.reset()
        self.slowdown = 1.0
        self.suspect = False
        self._avail.reset()
        self._failures.reset()
        self._limited.reset()
        self._answered.reset()
        self._limit_at = float("-inf")
        self.latency_s = self.ttft_s = self.concurrency_limit = None
        self.availability = self._avail.mean(0.0)
        self.penalty = 1.0 / self.availability
        self.recent_failures = self.rate_limited = 0.0
        self.error_rate, self.samples, self.consecutive_failures = 0.0, 0, 0
        self.last_sent_at = float("-inf")

    def __repr__(self) -> str:
        return (
            f"Candidate({self.provider.id!r}, latency_s={self.latency_s}, availability="
            f"{self.availability:.3f}, inflight={self.inflight}, samples={self.samples}, "
            f"circuit={self.circuit.value})"
        )


class Verdict(Enum):
    """What one outcome means for the estimates."""

    OK = 0
    FAILED = 1  # a health failure (5xx, timeout, connection, unknown)
    RATE_LIMITED = 2
    OTHER = 3  # counts for nothing (context window, bad request, auth)


_FLOOR = 0.05  # keeps a dead provider's penalty finite
_RELEASE = 1.0 / 3.0  # Candidate.refresh: a suspect's failures must fall to this share of the threshold
_PER_TOKEN = 1.0 / 64.0  # Candidate.observe: a call's fixed part counted as 64 output tokens
_REFRESH_S = 0.25  # decayed numbers move slowly: reading them four times a second is plenty
_DEFAULT_ROUTING = RoutingConfig()


@dataclass(frozen=True, slots=True)
class StrategyContext:
    """What a strategy may use besides the candidates."""

    rng: random.Random
    health_scorer: HealthScorer
    min_samples: int
    #: the router's clock (seconds), for strategies that time probes (:meth:`Candidate.probe_due`)
    clock: Callable[[], float] = time.monotonic
    #: ``RoutingConfig.spread_within``: how far from the best a candidate may be to share load
    spread_within: float = 1.5


class Strategy(ABC):
    """Orders candidates for a request. Subclass it, set ``name`` and implement :meth:`rank`."""

    name: ClassVar[str]
    #: Whether the router may send an occasional probe to a provider idle for ``explore_after_s``
    #: (strategies that rank by measurements need fresh ones; fixed preferences do not).
    explores: ClassVar[bool] = False

    @abstractmethod
    def rank(self, candidates: Sequence[Candidate], request: RouteRequest, ctx: StrategyContext) -> list[float]:
        """Return one score per candidate, in the same order, in [0, 1]; higher is better."""

    def pick(self, ranked: Sequence[Candidate], request: RouteRequest, ctx: StrategyContext) -> int:
        """Index (into ``ranked``, best score first) of the candidate to send this request to.

        The default takes the best; a strategy that spreads load overrides it (e.g. power of two
        choices). The others stay in ``ranked`` order as the request's backups.
        """
        return 0


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

    def peer_ejections(
        self, windows: Mapping[str, BreakerWindow], config: FailoverConfig, now: float
    ) -> Sequence[PeerEjection]:
        """Providers of one group to eject, worst first; ``windows`` holds the group's CLOSED providers.

        Called at most every ``config.outlier.interval_s``, as outcomes are recorded. The manager
        ejects in order while ``max_ejection_percent`` allows. Default: nobody (not even called).
        """
        return ()
