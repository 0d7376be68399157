"""ProviderRouter: filters providers for a request and ranks the rest with a strategy.

``select`` is O(providers): it reads the live :class:`Candidate` numbers the monitor keeps current
and asks the failover manager whether each provider may be called now.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

from ._clock import Clock, monotonic_clock
from ._registries import Registries, build_registries
from ._validation import require
from .config import FailoverConfig, RoutingConfig
from .enums import AllOutMode, CircuitState, EventKind
from .errorinfo import error_text
from .errors import ConfigError, NoProviderAvailableError, UnknownProviderError
from .failover import FailoverManager
from .interfaces import Candidate, HealthScorer, Strategy, StrategyContext
from .models import FailoverEvent, Provider, RouteRequest, RoutingDecision
from .monitor import HealthMonitor
from .pluginmanager import PluginBudget

__all__ = ["DEFAULT_REQUEST", "ProviderRouter"]

log = logging.getLogger("pi_builder_middleware.routing")

_CIRCUIT_EVENTS = frozenset({EventKind.BLACKLIST, EventKind.HALF_OPEN, EventKind.RECOVERY, EventKind.RESET})

#: How often the decayed estimates and window expiry of every provider are brought up to date.
_MAINTAIN_S = 0.25
#: How often the idlest provider is looked for (exploration).
_EXPLORE_CHECK_S = 0.25

#: Probes that may be spent at once (the budget refills by ``explore_share`` per decision).
_EXPLORE_BURST = 3.0

#: Most decisions ``history_size`` may keep (each is a few hundred bytes).
_MAX_HISTORY = 10_000_000

#: The request used when ``select`` is called without one.
DEFAULT_REQUEST = RouteRequest()


class ProviderRouter:
    """Chooses a provider per request and keeps a bounded history of decisions.

    ``strategy`` and ``health_scorer`` are names looked up in the registries (plugins can add
    more; without ``registries``, the built-in ones: no entry point is loaded) or instances.
    A strategy that raises or returns nonsense (the wrong number of scores, NaN or
    infinite ones) is logged and counted in :attr:`plugin_failures`, and the request is ranked by the
    health scorer instead (by the given order if that fails too). ``budget`` times third-party
    strategies (and built-ins using a third-party health scorer): see :class:`PluginBudget`.
    """

    def __init__(
        self,
        providers: Iterable[Provider] = (),
        *,
        strategy: str | Strategy = "latency-optimal",
        health_scorer: str | HealthScorer = "availability",
        monitor: HealthMonitor | None = None,
        failover: FailoverManager | None = None,
        registries: Registries | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        history_size: int = 1000,
        config: RoutingConfig | None = None,
        budget: PluginBudget | None = None,
    ) -> None:
        require(
            "history_size",
            isinstance(history_size, int) and not isinstance(history_size, bool) and 1 <= history_size <= _MAX_HISTORY,
            f"a whole number from 1 to {_MAX_HISTORY:,}",
            history_size,
        )
        if config is not None and not isinstance(config, RoutingConfig):
            raise ConfigError("routing", f"expected a RoutingConfig, got {type(config).__name__}")
        self.registries = registries or build_registries()
        self.clock: Clock = clock or monotonic_clock
        self.monitor = monitor or HealthMonitor(clock=self.clock, routing=config)
        self.config = config or self.monitor.routing
        if failover is None:
            default = FailoverConfig.coerce(None)
            failover = FailoverManager(default, clock=self.clock, policy=self.registries.policies.get(default.policy))
        self.failover = failover
        self.strategy = self._resolve_strategy(strategy)
        if not isinstance(health_scorer, str | HealthScorer):
            raise ConfigError("health_scorer", f"expected a scorer name or HealthScorer, got {health_scorer!r}")
        self.health_scorer = (
            health_scorer if isinstance(health_scorer, HealthScorer) else self.registries.scorers.get(health_scorer)
        )
        self._ctx = StrategyContext(
            rng or random.Random(),
            self.health_scorer,
            self.monitor.config.min_samples,
            self.clock,
            self.config.spread_within,
        )
        self.budget = budget or PluginBudget()
        # (strategy, its budget label or None, whether third-party code ranks: its scores are checked)
        self._timed: tuple[Strategy | None, str | None, bool] = (None, None, False)
        self._providers: dict[str, Provider] = {}
        self._candidates: dict[str, Candidate] = {}
        self._lock = threading.Lock()
        self.history: deque[RoutingDecision] = deque(maxlen=history_size)
        self._total = 0
        self._score_sum = 0.0
        self._by_provider: Counter[str] = Counter()
        self._by_strategy: Counter[str] = Counter()
        self.plugin_failures = 0
        self._failures_logged: set[str] = set()
        self._explored = 0
        self._panics = 0
        self._explore_tokens = 1.0
        self._explore_at = float("-inf")
        self._pairs: tuple[tuple[str, Candidate], ...] = ()
        self._uniform_priority = True
        self._maintain_at = float("-inf")
        self.failover.subscribe(self._on_failover_event)
        for provider in providers:
            self.add_provider(provider)

    def _on_failover_event(self, event: FailoverEvent) -> None:
        # keeps each Candidate's circuit (what strategies and health status read) in step with its breaker
        if event.kind in _CIRCUIT_EVENTS and event.provider_id in self._candidates:
            self.monitor.set_circuit(event.provider_id, event.circuit)
            if event.kind is EventKind.RECOVERY:
                self._candidates[event.provider_id].recovered()
                self._maintain_at = float("-inf")

    # -- providers -----------------------------------------------------------------------------
    def add_provider(self, provider: Provider) -> None:
        """Add a provider (its id must be new)."""
        if not isinstance(provider, Provider):
            raise ConfigError("providers", f"expected a Provider, got {type(provider).__name__}")
        with self._lock:
            if provider.id in self._providers:
                raise ConfigError("providers", f"duplicate provider id {provider.id!r}; ids must be unique")
            self._providers[provider.id] = provider
        # candidate first: a breaker state adopted from a shared store on add must reach the monitor
        self._candidates[provider.id] = self.monitor.add_provider(provider)
        self._reindex()
        self.failover.add_provider(provider.id, group=provider.group)

    def remove_provider(self, provider_id: str) -> None:
        """Remove a provider and its health data."""
        with self._lock:
            self._providers.pop(provider_id, None)
            self._candidates.pop(provider_id, None)
        self._reindex()
        self.monitor.remove_provider(provider_id)
        self.failover.remove_provider(provider_id)

    def _reindex(self) -> None:
        # one tuple swap, so a select running in another thread sees the old or the new set, whole
        pairs = tuple(self._candidates.items())
        self._pairs = pairs
        self._uniform_priority = len({c.provider.priority for _, c in pairs}) <= 1
        self._maintain_at = float("-inf")

    @property
    def providers(self) -> dict[str, Provider]:
        """Providers by id, in the order they were added."""
        return dict(self._providers)

    def provider(self, provider_id: str) -> Provider:
        """One provider by id; :class:`UnknownProviderError` (a ConfigError) if unknown."""
        try:
            return self._providers[provider_id]
        except KeyError:
            raise UnknownProviderError(provider_id) from None

    # -- load ----------------------------------------------------------------------------------
    def begin(self, provider_id: str) -> None:
        """Count one more attempt in flight on ``provider_id`` (unknown ids are ignored)."""
        cand = self._candidates.get(provider_id)
        if cand is not None:
            with self._lock:
                cand.inflight += 1

    def end(self, provider_id: str) -> None:
        """Count one attempt on ``provider_id`` as ended (never below zero)."""
        cand = self._candidates.get(provider_id)
        if cand is not None:
            with self._lock:
                if cand.inflight > 0:
                    cand.inflight -= 1

    def in_flight(self, provider_id: str) -> int:
        """Attempts in flight on ``provider_id`` (0 for unknown ids)."""
        cand = self._candidates.get(provider_id)
        return cand.inflight if cand is not None else 0

    # -- selection -----------------------------------------------------------------------------
    def select(
        self, request: RouteRequest = DEFAULT_REQUEST, *, reserve: bool = True, when_all_out: AllOutMode | None = None
    ) -> RoutingDecision:
        """Choose a provider for ``request``; ``reserve`` claims a half-open trial permit for it.

        ``when_all_out`` overrides :attr:`RoutingConfig.when_all_out` for this call (a caller that
        will wait for a re-admission itself passes ``AllOutMode.FAIL``).
        """
        if type(request) is not RouteRequest and not isinstance(request, RouteRequest):
            raise ConfigError("request", f"expected a RouteRequest or None, got {type(request).__name__}")
        strategy = self.strategy if request.strategy is None else self._resolve_strategy(request.strategy)
        now = self.clock()
        eligible, excluded, held, half_open = self._filter(request, now)
        if not eligible:
            mode = self.config.when_all_out if when_all_out is None else when_all_out
            if held and mode is AllOutMode.SOONEST:
                return self._panic(held, excluded, strategy, now, reserve)
            raise NoProviderAvailableError(excluded)
        timed = self._timed
        if timed[0] is not strategy:
            timed = self._timed = (strategy, self._budget_label(strategy), not self._own_ranking(strategy))
        label = timed[1]
        if label is not None:
            timer = self.budget.timer
            start = timer()
        scores = self._rank(strategy, eligible, request, timed[2])
        if label is not None:
            spent = timer() - start
        note = ""
        if len(eligible) == 1:
            ranked = eligible
        else:
            if self._uniform_priority:  # a stable sort keeps the given order among equal scores
                order = sorted(range(len(eligible)), key=scores.__getitem__, reverse=True)
            else:
                order = sorted(range(len(eligible)), key=lambda i: (-scores[i], eligible[i].provider.priority, i))
            ranked = [eligible[i] for i in order]
            if label is not None:
                start = timer()
                pick = self._pick(strategy, ranked, request)
                spent += timer() - start
            else:
                pick = self._pick(strategy, ranked, request)
            if pick:
                # priority strategies say whom they passed over (few); load-spreading ones draw at random
                passed = [c for c in ranked[:pick] if c.suspect] if not strategy.explores else None
                ranked.insert(0, ranked.pop(pick))
                if passed:
                    note = "passing over " + ", ".join(_suspicion(c) for c in passed)
            elif ranked[0].suspect and not strategy.explores:
                note = "probing " + _suspicion(ranked[0])
            if ranked[0].concurrency_limit is not None:
                ranked = _overflow(ranked)
        if label is not None and spent > self.budget.limit:
            self.budget.check(label, spent)
        explored = False
        trial = next((c for c in ranked if c.circuit is CircuitState.HALF_OPEN), None) if half_open else None
        if trial is not None:
            if trial is not ranked[0]:
                # A half-open provider only recovers through trial calls; the strategy would rarely rank it
                # first (its estimates still hold the outage), so it goes first within its permit allowance.
                ranked.remove(trial)
                ranked.insert(0, trial)
                note = ""
        elif strategy.explores:
            probe = self._explore(ranked, now)
            if probe is not None:
                ranked.remove(probe)
                ranked.insert(0, probe)
                note = f"exploring {probe.provider.id} (no request for {now - probe.last_sent_at:.1f} s)"
                explored = True
        if reserve:
            while ranked and not self._acquire(ranked[0].provider.id):
                lost = ranked.pop(0)  # lost a race for the last half-open permit
                excluded[lost.provider.id] = "half-open trial permits taken"
                note = ""
                explored = False
            if not ranked:
                raise NoProviderAvailableError(excluded)
        chosen = ranked[0]
        decision = RoutingDecision(
            chosen.provider,
            tuple([c.provider for c in ranked[1:]]),
            (eligible, scores),
            strategy.name,
            excluded,
            now,
            trial=chosen.circuit is CircuitState.HALF_OPEN,
            note=note,
        )
        self._count(decision, chosen, now, scores[eligible.index(chosen)], explored=explored, panic=False)
        return decision

    def _count(
        self, decision: RoutingDecision, chosen: Candidate, now: float, score: float, *, explored: bool, panic: bool
    ) -> None:
        with self._lock:
            chosen.last_sent_at = now
            self.history.append(decision)
            self._total += 1
            self._score_sum += score
            self._by_provider[chosen.provider.id] += 1
            self._by_strategy[decision.strategy] += 1
            if explored:
                self._explored += 1
                self._explore_tokens -= 1.0
            else:
                self._explore_tokens = min(self._explore_tokens + self.config.explore_share, _EXPLORE_BURST)
            if panic:
                self._panics += 1

    def _explore(self, ranked: list[Candidate], now: float) -> Candidate | None:
        """The usable provider idle the longest, if it is due a probe and the probe budget allows one."""
        if self._explore_tokens < 1.0 or now < self._explore_at:
            return None
        self._explore_at = now + _EXPLORE_CHECK_S  # looking costs O(providers): a few times a second is plenty
        due = now - self.config.explore_after_s
        idle = min(ranked, key=_last_sent)
        if idle is ranked[0] or idle.last_sent_at > due or idle.circuit is not CircuitState.CLOSED:
            return None
        return idle

    def _panic(
        self, held: list[Candidate], excluded: dict[str, str], strategy: Strategy, now: float, reserve: bool
    ) -> RoutingDecision:
        """Every candidate is ejected or cooling down: send the request to the soonest re-admission."""
        soonest: tuple[float, int, Candidate] | None = None
        for index, cand in enumerate(held):
            try:
                at = self.failover.available_at(cand.provider.id)
            except UnknownProviderError:  # removed by another thread meanwhile
                continue
            key = (at, cand.provider.priority, index)
            if soonest is None or key[:2] < soonest[:2]:
                soonest = (at, cand.provider.priority, cand)
        if soonest is None:
            raise NoProviderAvailableError(excluded)
        at, _, chosen = soonest
        pid = chosen.provider.id
        if reserve:
            try:
                self.failover.admit_early(pid)
            except UnknownProviderError:
                raise NoProviderAvailableError(excluded) from None
        note = (
            f"every candidate is out; sending to {pid}, the soonest back "
            f"(in {max(at - now, 0.0):.1f} s), instead of failing"
        )
        decision = RoutingDecision(
            chosen.provider, (), {pid: 0.0}, strategy.name, excluded, now, trial=True, note=note, panic=True
        )
        self._count(decision, chosen, now, 0.0, explored=False, panic=True)
        log.warning("routing: %s", note)
        return decision

    def _refresh(self, provider_id: str, now: float) -> None:
        with contextlib.suppress(UnknownProviderError):  # removed by another thread meanwhile
            self.monitor.refresh(provider_id, now)

    def _acquire(self, provider_id: str) -> bool:
        try:
            return self.failover.acquire(provider_id)
        except UnknownProviderError:  # removed by another thread since it was ranked
            return False

    def _filter(
        self, request: RouteRequest, now: float
    ) -> tuple[list[Candidate], dict[str, str], list[Candidate], bool]:
        """Eligible candidates, why the others were left out, those left out only by their breaker or
        cooldown, and whether any eligible one is half-open."""
        pairs = self._pairs
        if now >= self._maintain_at:
            self._maintain(pairs, now)
        excluded: dict[str, str] = {}
        held: list[Candidate] = []
        suspects = self.failover.suspects
        wanted = request.candidates
        caps = request.required_capabilities
        exclude = request.exclude
        min_avail = request.min_availability
        max_lat = request.max_latency_ms
        if wanted is not None:
            known = self._candidates
            if len(wanted) >= len(known) and wanted.issuperset(known):
                if len(wanted) > len(known):
                    for pid in wanted - known.keys():
                        excluded[pid] = "unknown provider"
                wanted = None  # names every provider (as the LiteLLM adapter's requests do): no filter
            else:
                for pid in wanted - known.keys():
                    excluded[pid] = "unknown provider"
        plain = wanted is None and not caps and not exclude and min_avail is None and max_lat is None
        if plain and not suspects:
            return [c for _, c in pairs], excluded, held, False
        eligible: list[Candidate] = []
        half_open = False
        for pid, cand in pairs:
            suspect = pid in suspects
            if not plain:
                if wanted is not None and pid not in wanted:
                    continue
                if exclude and pid in exclude:
                    excluded[pid] = "excluded by request"
                    continue
                if caps and not caps <= cand.provider.capabilities:
                    missing = ", ".join(sorted(caps - cand.provider.capabilities))
                    excluded[pid] = f"missing capabilities: {missing}"
                    continue
            if suspect:
                try:
                    why = self.failover.unavailable_reason(pid, now)
                except UnknownProviderError:  # removed by another thread after the copy was taken
                    continue
                if why is not None:
                    excluded[pid] = why
                    held.append(cand)
                    continue
                if cand.circuit is CircuitState.HALF_OPEN:
                    half_open = True
                else:
                    self.failover.settle(pid)
            if plain:
                eligible.append(cand)
                continue
            if min_avail is not None and cand.availability < min_avail:
                excluded[pid] = f"availability {cand.availability:.1%} below {min_avail:.1%}"
                continue
            if max_lat is not None and cand.latency_s is not None and cand.latency_s * 1000.0 > max_lat:
                excluded[pid] = f"latency {cand.latency_s * 1000:.0f} ms above {max_lat:.0f} ms"
                continue
            eligible.append(cand)
        return eligible, excluded, held, half_open

    def _maintain(self, pairs: tuple[tuple[str, Candidate], ...], now: float) -> None:
        """Expire window samples and re-read decayed estimates (every provider, a few times a second)."""
        self._maintain_at = now + _MAINTAIN_S
        memory_s = self.config.concurrency_memory_s
        for pid, cand in pairs:
            if now >= cand.stale_at:
                self._refresh(pid, now)
            if now >= cand.decay_at:
                cand.refresh(now, memory_s)

    def _pick(self, strategy: Strategy, ranked: list[Candidate], request: RouteRequest) -> int:
        try:
            pick = strategy.pick(ranked, request, self._ctx)
            if not isinstance(pick, int) or isinstance(pick, bool) or not 0 <= pick < len(ranked):
                raise ValueError(f"picked {pick!r}, expected an index below {len(ranked)}")
            return pick
        except Exception as exc:  # a broken strategy plugin must not fail the request
            self._failed(
                f"strategy {getattr(strategy, 'name', strategy)!r} failed to pick (taking its best-ranked candidate)",
                exc,
            )
            return 0

    def _rank(self, strategy: Strategy, eligible: list[Candidate], request: RouteRequest, foreign: bool) -> list[float]:
        """The strategy's scores; ``foreign`` (third-party code ranks): NaN or infinite ones count as a failure."""
        try:
            scores = strategy.rank(eligible, request, self._ctx)
            if foreign:  # third-party scores are checked; the built-ins' are floats by construction (hot path)
                scores = [float(s) for s in scores]
                if not math.isfinite(sum(scores)):  # one sum: cheap; NaN would order nothing, nor export
                    raise ValueError("returned a score that is not a finite number (scores are numbers from 0 to 1)")
            if len(scores) != len(eligible):
                raise ValueError(f"returned {len(scores)} scores for {len(eligible)} candidates")
            return scores
        except Exception as exc:  # a broken strategy plugin must not fail the request
            self._failed(
                f"strategy {getattr(strategy, 'name', strategy)!r} failed (falling back to health ranking)", exc
            )
            return self._health_ranking(eligible)

    def _health_ranking(self, eligible: list[Candidate]) -> list[float]:
        """Scores by the health scorer; if it fails too, equal scores (the given order: priority, then as added)."""
        try:
            scores = [float(self.health_scorer.score(c)) for c in eligible]
            if not math.isfinite(sum(scores)):
                raise ValueError(f"returned a score that is not a finite number: {scores}")
            return scores
        except Exception as exc:
            self._failed(
                f"health scorer {getattr(self.health_scorer, 'name', self.health_scorer)!r} failed "
                f"(keeping the given order)",
                exc,
            )
            return [0.0] * len(eligible)

    def _failed(self, what: str, exc: Exception) -> None:
        with self._lock:
            self.plugin_failures += 1
            first = what not in self._failures_logged
            if first and len(self._failures_logged) < 100:
                self._failures_logged.add(what)
        if first:  # a strategy failing on every request must not flood the log: the rest are counted
            log.error(
                "%s: %s: %s (later failures only counted in statistics()['strategy_failures'])",
                what,
                type(exc).__name__,
                error_text(exc),
            )

    def _own_ranking(self, strategy: Strategy) -> bool:
        """Whether ranking with ``strategy`` runs this package's code only (strategy and health scorer)."""
        return PluginBudget.is_own(strategy) and PluginBudget.is_own(self.health_scorer)

    def _budget_label(self, strategy: Strategy) -> str | None:
        """How the budget names this strategy's calls; None when they are not timed (built-in code only)."""
        if not self.budget.enabled or self._own_ranking(strategy):
            return None
        scorer = self.health_scorer
        own_scorer = PluginBudget.is_own(scorer)
        name = getattr(strategy, "name", type(strategy).__name__)
        return f"strategy:{name}" if own_scorer else f"strategy:{name} with health scorer:{scorer.name}"

    def _resolve_strategy(self, strategy: str | Strategy) -> Strategy:
        if isinstance(strategy, Strategy):
            return strategy
        if not isinstance(strategy, str):
            raise ConfigError("strategy", f"expected a strategy name or Strategy, got {type(strategy).__name__}")
        return self.registries.strategies.get(strategy)

    # -- reporting -----------------------------------------------------------------------------
    def statistics(self) -> dict[str, Any]:
        """Totals over all decisions: count, average score, preferred provider, per-strategy counts."""
        with self._lock:
            preferred = self._by_provider.most_common(1)
            return {
                "total_decisions": self._total,
                "average_score": self._score_sum / self._total if self._total else 0.0,
                "preferred_provider": preferred[0][0] if preferred else None,
                "per_provider": dict(self._by_provider),
                "per_strategy": dict(self._by_strategy),
                "strategy_failures": self.plugin_failures,
                "explore_decisions": self._explored,
                "all_out_decisions": self._panics,
            }

    def clear_history(self) -> None:
        """Forget decisions and statistics."""
        with self._lock:
            self.history.clear()
            self._total, self._score_sum = 0, 0.0
            self._by_provider.clear()
            self._by_strategy.clear()
            self._explored = self._panics = 0


def _suspicion(c: Candidate) -> str:
    """Why a candidate is suspect, for a decision's reason."""
    why = []
    if c.slowdown > 1.5:
        why.append(f"{c.slowdown:.1f}x slower than usual")
    if c.recent_failures >= 0.5:
        why.append(f"{c.recent_failures:.1f} recent failures")
    return f"suspect {c.provider.id} ({', '.join(why) or 'recovering'})"


def _last_sent(cand: Candidate) -> float:
    return cand.last_sent_at


def _overflow(ranked: list[Candidate]) -> list[Candidate]:
    """The same order with saturated providers (in flight at their 429 ceiling) behind the others."""
    free = [c for c in ranked if not c.saturated]
    if not free or len(free) == len(ranked):
        return ranked
    return free + [c for c in ranked if c.saturated]
