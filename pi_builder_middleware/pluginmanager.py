"""Building the plugin manager and calling hooks so that a faulty plugin never breaks a request."""

from __future__ import annotations

import importlib
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from ._entrypoints import may_declare
from .enums import ErrorKind
from .errorinfo import error_text
from .errors import ConfigError
from .hookspecs import PROJECT_NAME

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from .models import Alert, HealthChange, Outcome, Provider, RoutingDecision
    from .registry import FailoverPolicyRegistry, HealthScorerRegistry, StrategyRegistry

__all__ = ["BLOCK_ENV_VAR", "BUILTIN_PLUGINS", "PER_CALL_HOOKS", "PluginBudget", "PluginHost", "get_plugin_manager"]

log = logging.getLogger("pi_builder_middleware.plugins")

#: Comma-separated plugin names (entry-point names or built-in module paths) that must not load.
BLOCK_ENV_VAR = "PI_BUILDER_BLOCK_PLUGINS"

#: Built-in plugins, registered by module path after entry points; their hooks are all ``trylast``
#: (pluggy asks ``trylast`` implementations in registration order: LangChain's standard errors by type
#: before the provider-specific rules).
BUILTIN_PLUGINS: tuple[str, ...] = (
    "pi_builder_middleware.plugins.strategies",
    "pi_builder_middleware.plugins.scorers",
    "pi_builder_middleware.plugins.policies",
    "pi_builder_middleware.plugins.classify_langchain",
    "pi_builder_middleware.plugins.classify",
    "pi_builder_middleware.plugins.observers",
)


#: Hooks called on every request: the ones :class:`PluginBudget` times (registration hooks run once, at start).
PER_CALL_HOOKS = frozenset(
    {"pbm_classify_error", "pbm_on_alert", "pbm_on_decision", "pbm_on_health_change", "pbm_on_outcome"}
)

#: Where this package's own code lives: built-in plugins, strategies and scorers are not timed (their
#: cost is part of the hot path measured in BENCHMARKS.md, and timing them would add to it).
_OWN_PREFIX = "pi_builder_middleware."


def _blocked_from_env() -> set[str]:
    raw = os.environ.get(BLOCK_ENV_VAR, "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def entry_points(*, group: str) -> Iterable[EntryPoint]:
    """``importlib.metadata.entry_points(group=group)``; nothing, without importing importlib.metadata, when
    no installed distribution declares that group (:func:`may_declare`: most programs have no plugin)."""
    if not may_declare(group):
        return ()
    from importlib.metadata import entry_points as installed

    return installed(group=group)


def get_plugin_manager(
    *,
    load_entrypoints: bool = True,
    blocked: Iterable[str] = (),
    load_errors: list[str] | None = None,
) -> pluggy.PluginManager:
    """A plugin manager with the hookspecs, third-party entry points and the built-ins registered.

    ``blocked`` (plus ``$PI_BUILDER_BLOCK_PLUGINS``) names plugins that must not load. An entry point
    that fails to import is logged and skipped (and appended to ``load_errors``), never fatal.
    """
    pm = _VersionedPluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in {*blocked, *_blocked_from_env()}:
        pm.set_blocked(name)
    if load_entrypoints:
        for ep in entry_points(group=PROJECT_NAME):
            if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
                continue
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # a broken third-party package must not take the host down
                log.error("plugin entry point %r failed to load: %s: %s", ep.name, type(exc).__name__, exc)
                if load_errors is not None:
                    load_errors.append(f"{ep.name}: {type(exc).__name__}: {exc}")
    for module_path in BUILTIN_PLUGINS:
        if not pm.is_blocked(module_path):
            pm.register(importlib.import_module(module_path), name=module_path)
    while True:
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as exc:  # an installed plugin implements a hook that does not exist
            bad_name = pm.get_name(exc.plugin)
            if bad_name is None or bad_name in BUILTIN_PLUGINS:
                raise
            pm.unregister(exc.plugin)  # like one that fails to import: logged and skipped, never fatal
            log.error("plugin entry point %r dropped: %s", bad_name, exc)
            if load_errors is not None:
                load_errors.append(f"{bad_name}: PluginValidationError: {exc}")
    return pm


class _VersionedPluginManager(pluggy.PluginManager):
    """Counts registrations so :class:`PluginHost` can cache each hook's implementations."""

    version = 0

    def register(self, plugin: object, name: str | None = None) -> str | None:
        self.version += 1
        return super().register(plugin, name)

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        self.version += 1
        return super().unregister(plugin, name)


class PluginBudget:
    """Finds slow plugins: a plugin call that takes longer than ``budget_s`` is counted under the plugin's
    name (:meth:`report`) and logged once per name, as a WARNING.

    Timed: third-party implementations of the per-call hooks (:data:`PER_CALL_HOOKS`) and third-party
    strategies (``rank`` + ``pick``, or a built-in strategy using a third-party health scorer). Built-ins
    are not timed. ``timer`` reads seconds (the Middleware passes its injected clock, else
    :func:`time.perf_counter`); ``budget_s`` None turns timing off.
    """

    __slots__ = ("_lock", "_slow", "budget_s", "limit", "timer")

    def __init__(self, budget_s: float | None = None, timer: Callable[[], float] = time.perf_counter) -> None:
        if budget_s is not None and (
            isinstance(budget_s, bool) or not isinstance(budget_s, int | float) or not 0 < budget_s < math.inf
        ):
            raise ConfigError("plugin_budget_s", f"must be a finite number of seconds > 0, or None (got {budget_s!r})")
        if not callable(timer):
            raise ConfigError("timer", f"expected a callable returning seconds, got {type(timer).__name__}")
        self.budget_s = budget_s
        self.limit = math.inf if budget_s is None else budget_s  # what a call may take before check() counts it
        self.timer = timer
        self._slow: dict[str, list[float]] = {}  # name -> [calls, total_s, max_s]
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether plugin calls are timed."""
        return self.budget_s is not None

    def check(self, name: str, elapsed_s: float) -> None:
        """Account one call of ``name`` that took ``elapsed_s``; only an over-budget call costs more."""
        budget = self.budget_s
        if budget is None or elapsed_s <= budget:
            return
        with self._lock:
            entry = self._slow.get(name)
            first = entry is None
            if entry is None:
                entry = self._slow[name] = [0, 0.0, 0.0]
            entry[0] += 1
            entry[1] += elapsed_s
            entry[2] = max(entry[2], elapsed_s)
        if first:
            log.warning(
                "plugin %s took %.1f ms, over the %.1f ms budget (Middleware(plugin_budget_s=...)); "
                "further slow calls are counted in Middleware.stats()['plugin_slow_calls'], not logged",
                name,
                elapsed_s * 1000,
                budget * 1000,
            )

    def report(self) -> dict[str, dict[str, float]]:
        """Over-budget calls per plugin name: ``calls``, ``total_s`` and ``max_s``."""
        with self._lock:
            return {
                name: {"calls": int(calls), "total_s": total, "max_s": worst}
                for name, (calls, total, worst) in self._slow.items()
            }

    @staticmethod
    def is_own(obj: object) -> bool:
        """Whether ``obj`` (a plugin, strategy or scorer) is this package's own code, which is not timed."""
        module = obj.__name__ if isinstance(obj, ModuleType) else type(obj).__module__
        return module.startswith(_OWN_PREFIX)


def _label(plugin_name: str, plugin: object) -> str:
    """A readable name: pluggy names an object registered without a name by its id."""
    if not plugin_name.isdigit():
        return plugin_name
    cls = plugin if isinstance(plugin, type) else type(plugin)
    return f"{cls.__module__}.{cls.__qualname__}"


# (function, argument names, plugin name, "<plugin>.<hook>" when timed else None)
_Impl = tuple[Callable[..., Any], tuple[str, ...], str, str | None]


class PluginHost:
    """Calls hooks one implementation at a time, so one raising plugin cannot break the others.

    A failing implementation is counted in :attr:`failures` (its first failure is logged with the
    plugin's name); the call carries on with the remaining implementations (for firstresult hooks:
    with the next one, down to the built-in default).
    """

    def __init__(self, pm: pluggy.PluginManager, budget: PluginBudget | None = None) -> None:
        self.pm = pm
        self.budget = budget or PluginBudget()
        self.failures: Counter[str] = Counter()
        self._failures_lock = threading.Lock()
        self._cache: dict[str, tuple[int, tuple[_Impl, ...]]] = {}

    def _impls(self, hook_name: str) -> tuple[_Impl, ...]:
        """Plain implementations in call order; cached until a plugin is (un)registered."""
        version = getattr(self.pm, "version", None)
        cached = self._cache.get(hook_name)
        if cached is not None and version is not None and cached[0] == version:
            return cached[1]
        caller: pluggy.HookCaller = getattr(self.pm.hook, hook_name)
        timed = self.budget.enabled and hook_name in PER_CALL_HOOKS
        impls = tuple(
            (
                impl.function,
                tuple(impl.argnames),
                impl.plugin_name,
                f"{_label(impl.plugin_name, impl.plugin)}.{hook_name}"
                if timed and not PluginBudget.is_own(impl.plugin)
                else None,
            )
            for impl in reversed(caller.get_hookimpls())
            if not (impl.wrapper or impl.hookwrapper)
        )  # observer hooks call plain implementations only
        if version is not None:
            self._cache[hook_name] = (version, impls)
        return impls

    # -- the hooks, typed: one method per hookspec (mypy checks names and arguments) ------------
    def register_strategies(self, registry: StrategyRegistry) -> None:
        """:func:`~pi_builder_middleware.hookspecs.pbm_register_strategies`."""
        self.notify("pbm_register_strategies", registry=registry)

    def register_health_scorers(self, registry: HealthScorerRegistry) -> None:
        """:func:`~pi_builder_middleware.hookspecs.pbm_register_health_scorers`."""
        self.notify("pbm_register_health_scorers", registry=registry)

    def register_failover_policies(self, registry: FailoverPolicyRegistry) -> None:
        """:func:`~pi_builder_middleware.hookspecs.pbm_register_failover_policies`."""
        self.notify("pbm_register_failover_policies", registry=registry)

    def classify_error(self, error: BaseException, provider: Provider) -> ErrorKind | None:
        """:func:`~pi_builder_middleware.hookspecs.pbm_classify_error`: the first plugin's usable answer."""
        result = self.first_result("pbm_classify_error", ErrorKind, error=error, provider=provider)
        return result if isinstance(result, ErrorKind) else None

    def on_outcome(self, outcome: Outcome, error_kind: ErrorKind | None) -> None:
        """:func:`~pi_builder_middleware.hookspecs.pbm_on_outcome`."""
        self.notify("pbm_on_outcome", outcome=outcome, error_kind=error_kind)

    def on_decision(self, decision: RoutingDecision) -> None:
        """:func:`~pi_builder_middleware.hookspecs.pbm_on_decision`."""
        self.notify("pbm_on_decision", decision=decision)

    def on_health_change(self, event: HealthChange) -> None:
        """:func:`~pi_builder_middleware.hookspecs.pbm_on_health_change`."""
        self.notify("pbm_on_health_change", event=event)

    def on_alert(self, alert: Alert) -> None:
        """:func:`~pi_builder_middleware.hookspecs.pbm_on_alert`."""
        self.notify("pbm_on_alert", alert=alert)

    # -- by name ---------------------------------------------------------------------------------
    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call every (non-wrapper) implementation of an observer hook (the typed methods above call this)."""
        for function, argnames, plugin_name, timed in self._impls(hook_name):
            if timed is not None:
                self._call_timed(timed, function, argnames, kwargs, hook_name, plugin_name)
                continue
            try:
                function(*[kwargs[arg] for arg in argnames])
            except Exception as exc:
                self._failed(hook_name, plugin_name, exc)

    def first_result(self, hook_name: str, convert: Callable[[Any], Any] | None = None, **kwargs: Any) -> Any:
        """Call implementations in pluggy's order until one returns something other than None.

        With ``convert``, the first result it accepts, converted: a result it raises on counts as that
        plugin failing (like raising itself), and the next implementation is asked.
        """
        for function, argnames, plugin_name, timed in self._impls(hook_name):
            if timed is not None:
                result = self._call_timed(timed, function, argnames, kwargs, hook_name, plugin_name)
            else:
                try:
                    result = function(*[kwargs[arg] for arg in argnames])
                except Exception as exc:
                    self._failed(hook_name, plugin_name, exc)
                    continue
            if result is not None and convert is not None:
                try:
                    result = convert(result)
                except Exception as exc:
                    self._failed(hook_name, plugin_name, exc)
                    continue
            if result is not None:
                return result
        return None

    def _call_timed(
        self,
        name: str,
        function: Callable[..., Any],
        argnames: tuple[str, ...],
        kwargs: dict[str, Any],
        hook_name: str,
        plugin_name: str,
    ) -> Any:
        """One implementation call checked against the budget (a failure is timed too); None if it raised."""
        budget = self.budget
        timer = budget.timer
        start = timer()
        try:
            result = function(*[kwargs[arg] for arg in argnames])
        except Exception as exc:
            budget.check(name, timer() - start)
            self._failed(hook_name, plugin_name, exc)
            return None
        elapsed = timer() - start
        if elapsed > budget.limit:  # checked here: the common case costs no further call
            budget.check(name, elapsed)
        return result

    def _failed(self, hook_name: str, plugin_name: str, exc: Exception) -> None:
        key = f"{plugin_name}.{hook_name}"
        with self._failures_lock:
            self.failures[key] += 1
            first = self.failures[key] == 1
        if first:  # a hook that fails on every request must not flood the log: the rest are counted
            log.error(
                "plugin %r raised in %s (ignored; later failures of this hook are only counted in "
                "stats()['plugin_failures']): %s: %s",
                plugin_name,
                hook_name,
                type(exc).__name__,
                error_text(exc),
                exc_info=exc,
            )
