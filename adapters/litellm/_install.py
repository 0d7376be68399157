"""``install`` / ``uninstall``: put the middleware into a ``litellm.Router`` and take it out again."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import litellm
from litellm.router import Router

try:  # the entry points the strategy reads candidates through (litellm >= 1.110)
    from litellm.router_api import RoutingContext as _RoutingContext
except ImportError:  # pragma: no cover - older LiteLLM
    _RoutingContext = None  # type: ignore[assignment,misc]

from pi_builder_middleware import Clock, ConfigError, FailoverConfig, Middleware, MonitorConfig, Strategy

from ._binding import Binding
from ._candidates import CANDIDATE_MODES
from ._events import MiddlewareCallback
from ._legacy import check_legacy_router, litellm_version, unsupported_reason
from ._names import litellm_strategy_of, mapped_strategy, unmapped_once
from ._registration import Snapshot, current_strategy, promote_if_full, remove_callback, restore, snapshot
from ._shuffle import HealthShuffle, shuffle_weight
from ._strategy import MiddlewareRoutingStrategy

__all__ = ["LiteLLMHandle", "install", "installed"]

log = logging.getLogger("pi_builder_middleware.adapters.litellm")

_handles: weakref.WeakKeyDictionary[Any, LiteLLMHandle] = weakref.WeakKeyDictionary()
_install_lock = threading.Lock()


class LiteLLMHandle:
    """What :func:`install` returns: the middleware, the installed parts, and :meth:`uninstall`.

    Usable as a context manager (uninstalls on exit).
    """

    def __init__(
        self,
        router: Any,
        binding: Binding,
        callback: MiddlewareCallback,
        strategy: MiddlewareRoutingStrategy | None,
        saved: Snapshot,
    ) -> None:
        self._router_ref = weakref.ref(router)
        self._binding = binding
        self.callback = callback
        self.strategy = strategy
        self._snapshot = saved
        self._installed = True
        self._finalizer = weakref.finalize(router, remove_callback, callback)

    @property
    def middleware(self) -> Middleware:
        """The middleware making the decisions; provider ids are the router's deployment ids."""
        return self._binding.middleware

    @property
    def router(self) -> Any:
        """The ``litellm.Router`` this handle is installed on (None once it was garbage-collected)."""
        return self._router_ref()

    @property
    def installed(self) -> bool:
        """False after :meth:`uninstall`."""
        return self._installed

    def stats(self) -> dict[str, int]:
        """Adapter counters: picks, fallback_picks, recorded_ok/_failure, duplicate_events, filtered_out, ..."""
        return dict(self._binding.counts)

    def sync_providers(self) -> tuple[list[str], list[str]]:
        """Re-read the router's deployments now; returns (added, removed) provider ids.

        Not normally needed: new deployments are picked up on the next routing call or event.
        """
        return self._binding.sync()

    def uninstall(self) -> None:
        """Remove exactly what :func:`install` added and put back the routing strategy it replaced.

        The callback leaves every LiteLLM callback list; the router's previous custom strategy (or
        none) is restored unless another strategy was registered after ours, which is left in place.
        Idempotent.
        """
        with _install_lock:
            if not self._installed:
                return
            self._installed = False
            remove_callback(self.callback)
            self._finalizer.detach()
            router = self._router_ref()
            if router is None:
                return
            if self.strategy is not None:
                if current_strategy(router) is self.strategy:
                    restore(self._snapshot)
                else:
                    log.warning(
                        "pi-builder-middleware: the router's routing strategy was replaced after install; "
                        "leaving the current one in place"
                    )
            if _handles.get(router) is self:
                del _handles[router]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uninstall()

    def __repr__(self) -> str:
        state = "installed" if self._installed else "uninstalled"
        return (
            f"<LiteLLMHandle {state} strategy={self.middleware.router.strategy.name!r} "
            f"providers={sorted(self.middleware.providers)}>"
        )


def _strategy_from_router(router: Any, route: bool | None) -> tuple[str, bool | None]:
    """The strategy standing in for the router's own ``routing_strategy`` (see ``_names``), and ``route``.

    LiteLLM's ``simple-shuffle`` (its default, also when unset) maps onto ``health-shuffle`` (LiteLLM's
    weighted shuffle with health in it); ``cost-based-routing`` / ``latency-based-routing`` map onto cost- /
    latency-optimal; a strategy without an equivalent keeps LiteLLM picking (``route=False`` unless given)
    and is logged once.
    """
    name = litellm_strategy_of(router)
    if name is None or name == "simple-shuffle":
        return HealthShuffle.name, route
    mapped = mapped_strategy(name)
    if mapped is not None:
        log.info("pi-builder-middleware: the router's routing_strategy %r is served by %r", name, mapped)
        return mapped, route
    if route is None:
        unmapped_once(
            name,
            "LiteLLM keeps picking; the middleware records every outcome and filters out "
            "deployments whose breaker is open (async calls)",
        )
        return "latency-optimal", False
    return "latency-optimal", route


def weight_lookup(router: Any) -> Callable[[str], float | None]:
    """``health-shuffle``'s weight per deployment id, read from the router's deployments."""
    ref = weakref.ref(router)

    def weight_of(pid: str) -> float | None:
        current = ref()
        if current is None:
            return None
        registry = getattr(current, "registry", None)
        try:
            found = registry().deployment_dict(pid) if callable(registry) else current.get_deployment(model_id=pid)
        except Exception:  # an unknown id weighs as an unweighted deployment
            return None
        if found is not None and not isinstance(found, Mapping):
            found = found.model_dump(exclude_none=True) if hasattr(found, "model_dump") else None
        return shuffle_weight(found) if isinstance(found, Mapping) else None

    return weight_of


def installed(router: Any) -> LiteLLMHandle | None:
    """The handle installed on ``router``, or None."""
    try:
        return _handles.get(router)
    except TypeError:  # not weak-referenceable: certainly not a router we installed on
        return None


def install(
    router: Any,
    *,
    middleware: Middleware | None = None,
    strategy: str | Strategy | None = None,
    failover: FailoverConfig | str | None = None,
    monitor: MonitorConfig | None = None,
    providers: Mapping[str, Mapping[str, Any]] | None = None,
    route: bool | None = None,
    candidates: str = "auto",
    plugins: Sequence[object] = (),
    clock: Clock | None = None,
    seed: int | None = None,
    max_wait_s: float = 0.0,
) -> LiteLLMHandle:
    """Install health-aware routing, monitoring and failover into a ``litellm.Router``.

    Either pass ``middleware=`` (your own :class:`Middleware`; providers you configured on it under a
    deployment id keep your settings) or the settings to build one: ``strategy`` (default
    ``"latency-optimal"``), ``failover`` (default ``"balanced"``), ``monitor``, ``plugins``,
    ``clock``, ``seed``.

    ``providers`` overrides derived provider fields per deployment id or model group name, e.g.
    ``{"gpt-4o": {"quality": 0.9, "capabilities": {"vision", "tools"}}}``.
    ``route=False`` keeps LiteLLM's own routing strategy and only monitors and filters out
    deployments whose breaker is open (async calls only). Without ``strategy=`` the router's own
    ``routing_strategy`` decides (``_names``): ``cost-based-routing`` → cost-optimal,
    ``latency-based-routing`` → latency-optimal, LiteLLM's default → latency-optimal, and one without an
    equivalent (``usage-based-routing-v2``, ``least-busy``) → ``route=False`` unless ``route`` is given.
    ``candidates`` is what the strategy chooses among on async calls: ``"healthy"`` asks LiteLLM for
    the group's healthy deployments, so its cooldowns, ``order`` groups, tag filtering, pre-call checks,
    team/budget/health-check filters and other callbacks' filters all apply (about one extra LiteLLM
    selection per pick); ``"group"`` takes the group's deployments minus LiteLLM's cooldowns and paused
    ones (much cheaper; ignores those filters); ``"auto"`` (default) takes the group wherever that
    equals the healthy list (none of those features in use, checked against LiteLLM's own answer after
    every deployment change and every second) and the healthy list elsewhere
    (``handle.strategy.auto_status()`` says which and why). Sync calls always use ``"group"``.
    ``max_wait_s`` (async picks, LiteLLM 1.110+): when every deployment of the group is ejected or cooling
    down, a pick first waits for the soonest re-admission if it comes within that many seconds (the same
    option as the LangChain wrappers' and ``execute``'s); otherwise, and with 0 (default), the request goes
    to the soonest re-admission at once (``RoutingConfig.when_all_out``).

    Raises :class:`ConfigError` for something that is not a Router, an unknown strategy or preset,
    conflicting arguments, or a router that already has an installation.
    """
    if isinstance(max_wait_s, bool) or not isinstance(max_wait_s, int | float) or not 0 <= max_wait_s < float("inf"):
        raise ConfigError("max_wait_s", f"must be a finite number of seconds >= 0, got {max_wait_s!r}")
    if candidates not in CANDIDATE_MODES:
        raise ConfigError(
            "candidates",
            f"use 'auto' (default), 'healthy' (LiteLLM's healthy list) or 'group' "
            f"(the group minus cooldowns), not {candidates!r}",
        )
    if not isinstance(router, Router):
        raise ConfigError(
            "router",
            f"expected a litellm.Router instance (Router(model_list=[...])), got "
            f"{type(router).__name__}; pass the router itself, not its model_list or a client",
        )
    if _RoutingContext is None or not callable(getattr(router, "registry", None)):
        check_legacy_router(router)  # LiteLLM before 1.109: set_custom_routing_strategy, candidates from _legacy
    elif (unsupported := unsupported_reason(litellm_version())) is not None:
        raise ConfigError("router", unsupported)
    if middleware is not None:
        if not isinstance(middleware, Middleware):
            raise ConfigError(
                "middleware", f"expected a pi_builder_middleware.Middleware, got {type(middleware).__name__}"
            )
        given = [
            name
            for name, value in (
                ("strategy", strategy),
                ("failover", failover),
                ("monitor", monitor),
                ("clock", clock),
                ("seed", seed),
            )
            if value is not None
        ]
        if given or plugins:
            raise ConfigError(
                "middleware",
                f"pass either middleware= or settings to build one "
                f"({', '.join(given + (['plugins'] if plugins else []))}), not both",
            )
    else:
        if strategy is None:
            strategy, route = _strategy_from_router(router, route)
        if strategy == HealthShuffle.name:  # ours: built here, with the router's deployment weights
            strategy = HealthShuffle(weight_lookup(router))
        middleware = Middleware(
            strategy=strategy,
            failover=failover if failover is not None else "balanced",
            monitor=monitor,
            plugins=plugins,
            clock=clock,
            seed=seed,
        )
    if providers is not None and not (
        isinstance(providers, Mapping) and all(isinstance(v, Mapping) for v in providers.values())
    ):
        raise ConfigError(
            "providers",
            "expected a mapping of deployment id or model group name to field "
            "overrides, e.g. {'my-deployment': {'cost_per_1k_input': 0.001}}; got "
            f"{type(providers).__name__}",
        )
    with _install_lock:
        existing = _handles.get(router)
        if existing is not None and existing.installed:
            raise ConfigError(
                "router",
                "pi-builder-middleware is already installed on this Router; use "
                "installed(router) to get its handle, or handle.uninstall() first",
            )
        route = True if route is None else route
        middleware.registries.strategies.add_default(HealthShuffle(weight_lookup(router)))
        binding = Binding(router, middleware, providers or {}, route=route)
        binding.sync()
        binding.check_overrides()
        callback = MiddlewareCallback(binding)
        saved = snapshot(router)
        routing = (
            MiddlewareRoutingStrategy(router, binding, seed=seed, mode=candidates, max_wait_s=float(max_wait_s))
            if route
            else None
        )
        if routing is not None:
            register = getattr(router, "register_plugin", None)
            if callable(register):
                register(routing)
            else:  # LiteLLM before register_plugin
                router.set_custom_routing_strategy(routing)
        litellm.callbacks.append(callback)
        promote_if_full(callback)
        handle = LiteLLMHandle(router, binding, callback, routing, saved)
        _handles[router] = handle
    return handle
