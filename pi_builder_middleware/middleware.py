"""Middleware: the facade that wires router, monitor and failover manager through the plugin host."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from ._clock import Clock, monotonic_clock
from ._guard import CallbackFailures
from ._registries import build_registries
from .attempts import AsyncOptions, AttemptTimeoutError, OpenAttempt, arun_attempts, complete, run_attempts
from .budget import RetryBudget
from .config import FailoverConfig, MonitorConfig, RoutingConfig
from .enums import AllOutMode, CircuitState, ErrorKind, FailoverPreset
from .errorinfo import extract_retry_after
from .errors import ConfigError, UnknownProviderError
from .failover import FailoverManager
from .hedging import HedgePolicy, Hedger
from .interfaces import Strategy
from .models import (
    MAX_COST,
    Alert,
    HealthChange,
    HealthSnapshot,
    Outcome,
    Provider,
    RouteRequest,
    RoutingDecision,
    Usage,
)
from .monitor import HealthMonitor, WindowMetrics
from .pluginmanager import PluginBudget, PluginHost, get_plugin_manager
from .routing import DEFAULT_REQUEST, ProviderRouter
from .state import StateStore
from .telemetry._hub import Telemetry
from .telemetry._hub import attach as attach_telemetry

if TYPE_CHECKING:
    from .telemetry.otel import OtelTelemetry

__all__ = ["Middleware"]

T = TypeVar("T")


async def _asyncio_sleep(seconds: float) -> None:
    """:func:`asyncio.sleep`, imported when first awaited: a program that never awaits never loads asyncio."""
    import asyncio

    await asyncio.sleep(seconds)


class Middleware:
    """Health-aware routing, monitoring and failover for a set of providers.

    >>> mw = Middleware(providers=[Provider(id="a"), Provider(id="b")], strategy="failover")
    >>> mw.select().provider.id
    'a'

    ``state_store`` shares breaker trips, recoveries and rate-limit cooldowns with other replicas
    (:class:`MemoryStateStore` in one process, ``redis_store.RedisStateStore`` across processes);
    :meth:`close` (or ``with Middleware(...) as mw:``) detaches from it.

    ``clock`` (seconds, monotonic), ``sleep`` and ``async_sleep`` (used by ``max_wait_s`` waits) are
    injectable so tests drive time instead of sleeping; they default to the real ones.

    ``plugin_budget_s`` (None: off) finds slow plugins: a third-party strategy, observer or error
    classifier call that takes longer is counted in ``stats()["plugin_slow_calls"]`` under the plugin's
    name and logged once per name (:class:`PluginBudget`). Built-in plugins are not timed.

    ``telemetry``: None (default) reports OpenTelemetry spans and metrics when the application set a global
    TracerProvider or MeterProvider (``PI_BUILDER_OTEL_DISABLED=1`` keeps them off) and Prometheus series once
    :func:`~pi_builder_middleware.telemetry.enable_prometheus` was called; True forces OpenTelemetry on; an
    :class:`~pi_builder_middleware.telemetry.otel.OtelTelemetry` reports to its own providers; False: nothing.
    ``hedge`` (a :class:`HedgePolicy`; None: off) hedges every async call (``aexecute``,
    ``aexecute_open`` and the adapters' async calls) unless its request says ``hedge=False``, and
    throttles failover retries with a shared retry budget (:class:`RetryBudget`), sync calls included.
    """

    def __init__(
        self,
        providers: Iterable[Provider] = (),
        *,
        strategy: str | Strategy = "latency-optimal",
        failover: FailoverConfig | FailoverPreset | str | None = "balanced",
        monitor: MonitorConfig | None = None,
        routing: RoutingConfig | None = None,
        health_scorer: str = "availability",
        plugins: Sequence[object] = (),
        load_entrypoints: bool = True,
        blocked_plugins: Iterable[str] = (),
        clock: Clock | None = None,
        sleep: Callable[[float], object] | None = None,
        async_sleep: Callable[[float], Awaitable[object]] | None = None,
        seed: int | None = None,
        history_size: int = 1000,
        state_store: StateStore | None = None,
        plugin_budget_s: float | None = 0.05,
        telemetry: bool | OtelTelemetry | None = None,
        hedge: HedgePolicy | None = None,
    ) -> None:
        provider_list, plugin_list, blocked = _checked_arguments(
            providers, plugins, blocked_plugins, monitor, clock, seed
        )
        for field, value in (("sleep", sleep), ("async_sleep", async_sleep)):
            if value is not None and not callable(value):
                raise ConfigError(field, f"expected a callable taking seconds, got {type(value).__name__}")
        if hedge is not None and not isinstance(hedge, HedgePolicy):
            raise ConfigError("hedge", f"expected a HedgePolicy or None, got {type(hedge).__name__}")
        #: Hedging state (policy, retry budget, counters), None when hedging is off.
        self.hedger: Hedger | None = None if hedge is None else Hedger(hedge)
        #: The budget failover retries and hedges draw on (gRPC retry throttling), None without one.
        self.retry_budget: RetryBudget | None = None if self.hedger is None else self.hedger.budget
        if state_store is not None and not isinstance(state_store, StateStore):
            raise ConfigError(
                "state_store", f"expected a StateStore (e.g. MemoryStateStore), got {type(state_store).__name__}"
            )
        self.load_errors: list[str] = []
        self.callback_failures = CallbackFailures(logging.getLogger("pi_builder_middleware.middleware"))
        pm = get_plugin_manager(load_entrypoints=load_entrypoints, blocked=blocked, load_errors=self.load_errors)
        for plugin in plugin_list:
            try:
                pm.register(plugin)
            except (ValueError, pluggy.PluginValidationError) as exc:  # registered twice, or a malformed hook
                raise ConfigError("plugins", f"cannot register {plugin!r}: {exc}") from None
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:  # a misspelled hook name would silently never run
            raise ConfigError("plugins", f"{exc}; hook names are listed in pi_builder_middleware.hookspecs") from None
        # The injected clock when there is one (tests move it inside a plugin), else the cheapest timer.
        self.plugins = PluginHost(pm, PluginBudget(plugin_budget_s, timer=clock or time.perf_counter))
        self.registries = build_registries(self.plugins)
        self.clock: Clock = clock or monotonic_clock
        self.sleep: Callable[[float], object] = sleep or time.sleep
        self.async_sleep: Callable[[float], Awaitable[object]] = async_sleep or _asyncio_sleep
        rng = random.Random(seed)
        fo_config = FailoverConfig.coerce(failover)
        if routing is not None and not isinstance(routing, RoutingConfig):
            raise ConfigError("routing", f"expected a RoutingConfig, got {type(routing).__name__}")
        self.monitor = HealthMonitor(monitor, clock=self.clock, routing=routing)
        self.failover = FailoverManager(
            fo_config,
            policy=self.registries.policies.get(fo_config.policy),
            clock=self.clock,
            rng=rng,
            classify=lambda exc, pid: self.classify(exc, self.router.provider(pid)),
            store=state_store,
        )
        self.router = ProviderRouter(
            strategy=strategy,
            health_scorer=health_scorer,
            monitor=self.monitor,
            failover=self.failover,
            registries=self.registries,
            clock=self.clock,
            rng=rng,
            history_size=history_size,
            config=self.monitor.routing,
            budget=self.plugins.budget,
        )
        self.monitor.subscribe_health(self._on_health_change)
        self.monitor.subscribe_alerts(self._on_alert)
        for provider in provider_list:
            self.router.add_provider(provider)
        self.telemetry: Telemetry | None = None  # None while no telemetry is on: the hot path skips it
        attach_telemetry(self, telemetry)

    # -- providers -----------------------------------------------------------------------------
    def add_provider(self, provider: Provider) -> None:
        """Add a provider at runtime (ids must be unique)."""
        self.router.add_provider(provider)

    def remove_provider(self, provider_id: str) -> None:
        """Remove a provider and its health data."""
        self.router.remove_provider(provider_id)

    @property
    def providers(self) -> dict[str, Provider]:
        """Providers by id."""
        return self.router.providers

    # -- hot path ------------------------------------------------------------------------------
    def select(
        self, request: RouteRequest | None = None, *, reserve: bool = True, when_all_out: AllOutMode | None = None
    ) -> RoutingDecision:
        """Choose a provider (plus ordered backups) for one request.

        ``when_all_out`` overrides ``RoutingConfig.when_all_out`` for this call (what happens when
        every candidate is ejected or cooling down).
        """
        decision = self.router.select(
            DEFAULT_REQUEST if request is None else request, reserve=reserve, when_all_out=when_all_out
        )
        self.plugins.on_decision(decision)
        return decision

    def record(self, outcome: Outcome) -> ErrorKind | None:
        """Feed one attempt's outcome to the monitor and the breaker; returns its classification."""
        if type(outcome) is not Outcome and not isinstance(outcome, Outcome):
            raise ConfigError("outcome", f"expected an Outcome, got {type(outcome).__name__}")
        provider = self.router.provider(outcome.provider_id)
        kind = outcome.error_kind
        if not outcome.ok and kind is None:
            kind = self.classify(outcome.error, provider) if outcome.error is not None else ErrorKind.UNKNOWN
        cost = outcome.cost
        if cost is None:
            cost = provider.cost_of(outcome.input_tokens, outcome.output_tokens)
            if cost > MAX_COST:  # bounded prices and token counts, but their product may pass MAX_COST
                cost = MAX_COST
        retry_after = outcome.retry_after_s
        if kind is ErrorKind.RATE_LIMITED and retry_after is None and outcome.error is not None:
            retry_after = extract_retry_after(outcome.error, limit_s=self.failover.config.max_rate_limit_cooldown_s)
        # Both engines' record() would check these arguments again: the outcome was checked when built,
        # kind comes from classify(), cost and retry_after are bounded just above.
        self.monitor._record(outcome, kind, cost, retry_after)
        if kind is ErrorKind.RATE_LIMITED and retry_after is None and self.router.in_flight(outcome.provider_id) >= 2:
            # Refused while it was running other calls of ours: a concurrency ceiling, not a quota. The
            # router now knows the ceiling and overflows above it; cooling the provider down would
            # waste the capacity it has (and a few such 429s on every provider would shut them all).
            retry_after = 0.0
        detail = type(outcome.error).__name__ if outcome.error is not None else ""
        self.failover._record(outcome.provider_id, outcome.ok, kind, retry_after, outcome.probe, detail)
        hedger = self.hedger
        if hedger is not None and not outcome.probe:
            hedger.observe(
                outcome.provider_id,
                outcome.ok,
                outcome.latency_s,
                outcome.ttft_s,
                kind is ErrorKind.RATE_LIMITED or (kind is not None and kind.is_health_failure),
            )
        self.plugins.on_outcome(outcome, kind)
        return kind

    def record_at_least(self, provider_id: str, seconds: float, *, stream: bool = False) -> None:
        """An attempt on ``provider_id`` was cancelled after ``seconds`` with no outcome (a hedge that lost).

        Not a failure and not a sample: the provider's routing latency estimate (time to first token for
        a stream) moves a tenth of the way up to ``seconds`` if it was below, since the call took at least
        that long (a lost race is weaker news than a slow answer: a hedge took care of its tail).
        """
        self.monitor.record_at_least(provider_id, seconds, stream=stream)

    def begin_attempt(self, provider_id: str) -> None:
        """An attempt on ``provider_id`` starts now: it counts as in flight until :meth:`end_attempt`.

        Load-aware strategies read the in-flight count; every front-end (execute, the adapters) calls
        both around each attempt, whatever its outcome. Unknown ids are ignored (removed meanwhile).
        """
        self.router.begin(provider_id)
        tel = self.telemetry
        if tel is not None:
            tel.begin(provider_id)

    def end_attempt(self, provider_id: str) -> None:
        """The attempt begun by :meth:`begin_attempt` ended (answered, failed or was cancelled)."""
        self.router.end(provider_id)
        tel = self.telemetry
        if tel is not None:
            tel.end(provider_id)

    def classify(self, error: BaseException, provider: Provider | str) -> ErrorKind:
        """What ``error`` means (first plugin that answers; the built-in answers last).

        A plugin's answer that is no :class:`ErrorKind` (nor the value of one) counts as that plugin
        failing: the next one is asked.
        """
        if isinstance(provider, str):
            provider = self.router.provider(provider)
        kind = self.plugins.classify_error(error, provider)
        return ErrorKind.UNKNOWN if kind is None else kind

    # -- execution -----------------------------------------------------------------------------
    def execute(
        self,
        fn: Callable[[Provider], T],
        request: RouteRequest | None = None,
        *,
        usage: Callable[[T], Usage] | None = None,
        max_wait_s: float = 0.0,
    ) -> T:
        """Call ``fn(provider)`` along the decision's chain until one succeeds.

        Each attempt is recorded and counted in flight while it runs. Errors whose kind does not fail
        over (bad request) propagate at once; if every provider fails, :class:`AllProvidersFailedError`
        lists every attempt. ``max_wait_s`` > 0: when a pass ends without an answer (nobody available,
        or each one tried failed over), sleep until the first provider may take a call again and run
        another pass, until ``max_wait_s`` after the call started (0: fail at once).
        """
        return complete(run_attempts(self, fn, request, max_wait_s=max_wait_s), usage)

    async def aexecute(
        self,
        fn: Callable[[Provider], Awaitable[T]],
        request: RouteRequest | None = None,
        *,
        usage: Callable[[T], Usage] | None = None,
        max_wait_s: float = 0.0,
    ) -> T:
        """Async :meth:`execute`, hedged when the middleware has a :class:`HedgePolicy`.

        ``request.timeout_s`` is a deadline across every attempt, hedge and wait;
        ``request.attempt_timeout_s`` bounds each attempt (a timeout fails over).
        """
        timeout = request.attempt_timeout_s if isinstance(request, RouteRequest) else None  # else: refused there
        return complete(await self.aexecute_open(fn, request, max_wait_s=max_wait_s, timeout_s=timeout), usage)

    def execute_open(
        self, fn: Callable[[Provider], T], request: RouteRequest | None = None, *, max_wait_s: float = 0.0
    ) -> OpenAttempt[T]:
        """:meth:`execute`, but the attempt that answered stays in flight (e.g. a stream's first chunk).

        End the returned :class:`OpenAttempt` once delivery ends (``succeeded`` or ``interrupted``).
        """
        return run_attempts(self, fn, request, max_wait_s=max_wait_s)

    async def aexecute_open(
        self,
        fn: Callable[[Provider], Awaitable[T]],
        request: RouteRequest | None = None,
        *,
        max_wait_s: float = 0.0,
        timeout_s: float | None = None,
        timeout_error: Callable[[str, float], AttemptTimeoutError] = AttemptTimeoutError,
        discard: Callable[[T], Awaitable[object]] | None = None,
    ) -> OpenAttempt[T]:
        """Async :meth:`execute_open`; ``timeout_s`` bounds each ``fn`` (a timeout fails over: ``timeout_error``).

        Hedged when the middleware has a :class:`HedgePolicy` and the request does not say ``hedge=False``;
        ``discard(value)`` is awaited for an answer that came too late to be used (e.g. to close a stream).
        """
        options = AsyncOptions(max_wait_s, timeout_s, timeout_error, discard)
        hedger = self.hedger
        if hedger is not None and hedger.policy.max_hedges and (request is None or getattr(request, "hedge", True)):
            from ._hedged import arun_hedged  # asyncio and the race load with the first hedged call

            return await arun_hedged(self, hedger, fn, request, options)
        return await arun_attempts(self, fn, request, options)

    # -- reading -------------------------------------------------------------------------------
    def health(self, provider_id: str) -> HealthSnapshot:
        """Everything known about one provider's health now (O(its window), whatever the number of providers)."""
        self.router.provider(provider_id)
        breaker = self.failover.breaker_info(provider_id)  # first: an ejection that ended changes the status
        return _snapshot(provider_id, self.monitor.metrics(provider_id), breaker, self.clock())

    def subscribe_alerts(self, callback: Callable[[Alert], None]) -> Callable[[], None]:
        """Call ``callback`` for each alert; returns an unsubscribe function."""
        return self.monitor.subscribe_alerts(callback)

    def stats(self) -> dict[str, Any]:
        """Routing and failover statistics, plugin failures, user callbacks that failed, and plugin calls over
        the time budget.

        ``callback_failures`` counts by kind the user callbacks that raised or returned something
        unusable, which never reaches the request: ``usage`` (execute's ``usage=``, or token counts an
        adapter read that a record cannot take), ``alert_subscriber``, ``health_subscriber``,
        ``failover_subscriber`` and ``failover_policy`` (``should_trip`` / ``ejection_s`` raised or gave
        no usable number). The first failure of each kind is logged. ``plugin_slow_calls``: third-party
        plugin calls over ``plugin_budget_s``, per plugin. ``hedging`` (None without a :class:`HedgePolicy`):
        hedges started, won (answered first) and cancelled (lost the race), the estimated input cost of
        the cancelled ones, and the retry budget (tokens left, retries and hedges it refused).
        """
        callbacks = {
            **self.monitor.callback_failures.snapshot(),
            **self.failover.callback_failures.snapshot(),
            **self.callback_failures.snapshot(),
        }
        return {
            "router": self.router.statistics(),
            "failover": self.failover.stats(),
            "plugin_failures": dict(self.plugins.failures),
            "plugin_load_errors": list(self.load_errors),
            "callback_failures": callbacks,
            "plugin_budget_s": self.plugins.budget.budget_s,
            "plugin_slow_calls": self.plugins.budget.report(),
            "hedging": None if self.hedger is None else self.hedger.snapshot(),
        }

    def export(self) -> dict[str, Any]:
        """JSON-safe state: configuration, metrics, breakers, events, decisions (``hedging`` when on). No secrets.

        O(providers + samples + events + decisions): every breaker and every window is read once.
        """
        failover = self.failover.export()  # first: an ejection that ended changes the status
        now = self.clock()
        metrics: dict[str, WindowMetrics] = {}
        health = {}
        for pid in self.router.providers:
            breaker = failover["providers"].get(pid)
            try:
                metrics[pid] = self.monitor.metrics(pid)
            except UnknownProviderError:  # removed by another thread while exporting
                continue
            if breaker is not None:
                health[pid] = _snapshot(pid, metrics[pid], breaker, now).to_dict()
        exported = {
            "config": {
                "strategy": self.router.strategy.name,
                "health_scorer": self.router.health_scorer.name,
                "providers": [p.to_dict() for p in self.router.providers.values()],
            },
            "health": health,
            "monitor": self.monitor.export(metrics),
            "failover": failover,
            "router": self.router.statistics(),
            "decisions": [d.to_dict() for d in list(self.router.history)],  # copy: other threads append
            "plugins": {
                "registered": sorted(n for n, _ in self.plugins.pm.list_name_plugin() if n),
                "failures": dict(self.plugins.failures),
                "load_errors": list(self.load_errors),
                "budget_s": self.plugins.budget.budget_s,
                "slow_calls": self.plugins.budget.report(),
                "strategies": self.registries.strategies.names(),
            },
        }
        if self.hedger is not None:
            exported["hedging"] = self.hedger.snapshot()
        return exported

    def reset(self, provider_id: str | None = None) -> None:
        """Close breakers and clear metrics (one provider, or all)."""
        self.failover.reset(provider_id)
        self.monitor.clear(provider_id)
        if self.hedger is not None:
            self.hedger.reset(provider_id)
        if provider_id is None:
            self.router.clear_history()

    # -- health checks -------------------------------------------------------------------------
    def start_health_checks(
        self, probe: Callable[[Provider], Awaitable[object]], interval_s: float, timeout_s: float | None = None
    ) -> None:
        """Probe every provider every ``interval_s`` seconds (from a running loop); feeds the breakers.

        Each probe runs on its own (one that hangs holds back no other provider) and within ``timeout_s``
        (default: ``FailoverConfig.health_check_timeout_s``, 10 s); a probe that runs out of time, raises
        or returns False is a failure of its provider.
        """
        self.failover.start_health_checks(lambda pid: probe(self.router.provider(pid)), interval_s, timeout_s)

    async def stop_health_checks(self) -> None:
        """Stop periodic health checks."""
        await self.failover.stop_health_checks()

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Detach from the state store; a store's background threads stop with its last middleware."""
        self.failover.close()

    def __enter__(self) -> Middleware:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- wiring --------------------------------------------------------------------------------
    def _on_health_change(self, event: HealthChange) -> None:
        self.plugins.on_health_change(event)

    def _on_alert(self, alert: Alert) -> None:
        self.plugins.on_alert(alert)


def _snapshot(provider_id: str, m: WindowMetrics, breaker: dict[str, Any], now: float) -> HealthSnapshot:
    """A HealthSnapshot from one provider's window metrics and breaker info."""
    return HealthSnapshot(
        provider_id=provider_id,
        status=m["status"],
        circuit=CircuitState(breaker["state"]),
        calls=m["calls"],
        successes=m["successes"],
        failures=m["failures"],
        errors=m["errors"],
        rate_limited=m["rate_limited"],
        availability=m["availability"],
        success_rate=m["success_rate"],
        error_rate=m["error_rate"],
        latency_min_ms=m["latency_min_ms"],
        latency_avg_ms=m["latency_avg_ms"],
        latency_p50_ms=m["latency_p50_ms"],
        latency_p95_ms=m["latency_p95_ms"],
        latency_p99_ms=m["latency_p99_ms"],
        latency_max_ms=m["latency_max_ms"],
        ttft_avg_ms=m["ttft_avg_ms"],
        ttft_p50_ms=m["ttft_p50_ms"],
        ttft_p95_ms=m["ttft_p95_ms"],
        tokens_in=m["tokens_in"],
        tokens_out=m["tokens_out"],
        cost_total=m["cost_total"],
        cost_per_request=m["cost_per_request"],
        consecutive_failures=breaker["consecutive_failures"],
        trips=breaker["trips"],
        open_for_s=breaker["open_for_s"],
        cooldown_for_s=breaker["cooldown_for_s"],
        at=now,
    )


def _checked_arguments(
    providers: object, plugins: object, blocked_plugins: object, monitor: object, clock: object, seed: object
) -> tuple[list[Any], list[object], list[str]]:
    """Check the constructor's loosely typed arguments up front, so a mistake is a ConfigError."""

    def as_list(value: object, field: str) -> list[Any]:
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise ConfigError(field, f"expected a list, got {type(value).__name__}")
        return list(value)

    blocked = as_list(blocked_plugins, "blocked_plugins")
    if not all(isinstance(name, str) for name in blocked):
        raise ConfigError("blocked_plugins", "plugin names must be strings")
    if monitor is not None and not isinstance(monitor, MonitorConfig):
        raise ConfigError("monitor", f"expected a MonitorConfig or None, got {type(monitor).__name__}")
    if clock is not None and not callable(clock):
        raise ConfigError("clock", f"expected a callable returning seconds, got {type(clock).__name__}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError("seed", f"expected an int or None, got {type(seed).__name__}")
    return as_list(providers, "providers"), as_list(plugins, "plugins"), blocked
