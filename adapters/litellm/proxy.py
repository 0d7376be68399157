"""The middleware in the LiteLLM proxy (the gateway), enabled from ``config.yaml`` alone.

::

    litellm_settings:
      callbacks: ["pi_builder_middleware.adapters.litellm.proxy.handler"]
      pi_builder_middleware:            # optional; or PBM_* environment variables (see _proxy_settings)
        failover: balanced
        redis_url: os.environ/PBM_REDIS_URL

The proxy imports :data:`handler` while loading its callbacks, before it builds its ``Router``
(``litellm.proxy.proxy_server.llm_router``), and may build a new Router later (models added through the
UI/API, a reload from its database). So the handler installs lazily: on every proxy request
(``async_pre_call_hook``, before routing) it compares the proxy's current Router with the one it installed
on (one identity check) and, when a new one appeared, moves the installation there with the same
:class:`~pi_builder_middleware.Middleware`, so health, breakers and statistics carry over. What
:func:`~pi_builder_middleware.adapters.litellm.install` adds then does the work: the routing strategy picks
deployments, its callback records every outcome and filters out deployments whose breaker is open
(``async_filter_deployments``). With ``redis_url`` the breakers live in Redis (``RedisStateStore``): a trip
seen by one proxy replica is honoured by every replica sharing the cluster name.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from pi_builder_middleware import ConfigError, FailoverConfig, Middleware

from ._events import MiddlewareCallback
from ._install import LiteLLMHandle, _strategy_from_router, install, weight_lookup
from ._proxy_settings import CONFIG_KEY, ProxySettings
from ._registration import remove_callback
from ._shuffle import HealthShuffle

__all__ = ["ProxyHandler", "handler"]

log = logging.getLogger("pi_builder_middleware.adapters.litellm")


def _proxy_router() -> Any:
    """The proxy's current Router, or None (not running inside the proxy, or not built yet)."""
    import sys

    server = sys.modules.get("litellm.proxy.proxy_server")
    return getattr(server, "llm_router", None) if server is not None else None


class ProxyHandler(CustomLogger):
    """A ``CustomLogger`` for ``litellm_settings.callbacks`` that installs the middleware on the proxy's Router.

    ``settings`` default to :meth:`ProxySettings.load` over ``litellm.pi_builder_middleware`` (the config
    section) and the ``PBM_*`` environment variables, read when the first Router appears.
    """

    def __init__(self, settings: ProxySettings | None = None) -> None:
        super().__init__()
        #: Marks this filter as the middleware's own (``candidates="auto"`` does not count it as a foreign filter).
        self.pbm_router_token = "litellm-proxy"
        self._settings = settings
        self._lock = threading.Lock()
        self.handle: LiteLLMHandle | None = None
        self.middleware: Middleware | None = None
        self.installs = 0

    def settings(self) -> ProxySettings:
        """The settings in force (read from the config section and environment on first use)."""
        if self._settings is None:
            import litellm

            self._settings = ProxySettings.load(getattr(litellm, CONFIG_KEY, None))
        return self._settings

    def ensure_installed(self, router: Any = None) -> LiteLLMHandle | None:
        """Install on ``router`` (default: the proxy's current Router) unless already there; the handle or None."""
        router = _proxy_router() if router is None else router
        if router is None:
            return None
        handle = self.handle
        if handle is not None and handle.router is router and handle.installed:
            return handle
        with self._lock:
            handle = self.handle
            if handle is not None and handle.router is router and handle.installed:
                return handle
            if handle is not None:
                handle.uninstall()  # the proxy replaced its Router: the same middleware moves to the new one
            self.handle = self._install(router)
            remove_callback(self.handle.callback)  # its events come through this handler (see the hooks)
            # The proxy gives a request's logging events another litellm_trace_id than its pick saw; with one
            # Router per proxy process the router token alone tells the installation's events.
            self.handle._binding.check_trace = False
            self.middleware = self.handle.middleware
            self.installs += 1
            log.info(
                "pi-builder-middleware: installed on the proxy's Router (%d deployments, strategy %r)",
                len(self.middleware.providers),
                self.middleware.router.strategy.name,
            )
            return self.handle

    def _install(self, router: Any) -> LiteLLMHandle:
        settings = self.settings()
        if self.middleware is not None:
            return install(
                router, middleware=self.middleware, candidates=settings.candidates, max_wait_s=settings.max_wait_s
            )
        route: bool | None = None
        strategy = settings.strategy
        if strategy is None:
            strategy, route = _strategy_from_router(router, None)
        overrides = {"base_ejection_s": settings.base_ejection_s} if settings.base_ejection_s is not None else {}
        failover = FailoverConfig.preset(settings.failover or "balanced", **overrides)
        store = None
        if settings.redis_url:
            from pi_builder_middleware.redis_store import RedisStateStore

            store = RedisStateStore(settings.redis_url, cluster=settings.redis_cluster)
        middleware = Middleware(
            strategy=HealthShuffle(weight_lookup(router)) if strategy == HealthShuffle.name else strategy,
            failover=failover,
            state_store=store,
        )
        handle = install(
            router, middleware=middleware, route=route, candidates=settings.candidates, max_wait_s=settings.max_wait_s
        )
        self._enable_metrics(middleware)
        return handle

    def _enable_metrics(self, middleware: Middleware) -> None:
        """Export the ``pi_builder_*`` series (every middleware of the process, ``middleware`` included) on
        ``prometheus_client``'s default registry, which the proxy's ``/metrics`` serves (mounted by LiteLLM's
        own ``success_callback: ["prometheus"]``), when ``prometheus-client`` is installed."""
        import importlib.util

        if importlib.util.find_spec("prometheus_client") is None:
            log.info("pi-builder-middleware: prometheus-client is not installed; no pi_builder_* series on /metrics")
            return
        from pi_builder_middleware.telemetry import enable_prometheus

        try:
            enable_prometheus()
        except ConfigError as exc:  # series of these names registered by someone else: routing goes on
            log.warning("pi-builder-middleware: pi_builder_* series not exported (%s)", exc)

    # -- LiteLLM hooks: parameter names must match LiteLLM's (it calls them by keyword) ----------------
    # The proxy hands logging events to the callbacks it loaded at startup (this handler), not to ones
    # added to ``litellm.callbacks`` later; so the installation's callback is taken out of LiteLLM's lists
    # and this handler passes every event on to it.
    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> None:
        """Every proxy request, before routing: make sure the current Router has the middleware."""
        try:
            self.ensure_installed()
        except Exception:  # never fail a request because of the middleware
            log.exception("pi-builder-middleware: could not install on the proxy's Router")
        return None

    def _callback(self) -> MiddlewareCallback | None:
        handle = self.handle
        return handle.callback if handle is not None and handle.installed else None

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        if (callback := self._callback()) is not None:
            await callback.async_log_success_event(kwargs, response_obj, start_time, end_time)

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        if (callback := self._callback()) is not None:
            await callback.async_log_failure_event(kwargs, response_obj, start_time, end_time)

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        if (callback := self._callback()) is not None:
            callback.log_success_event(kwargs, response_obj, start_time, end_time)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        if (callback := self._callback()) is not None:
            callback.log_failure_event(kwargs, response_obj, start_time, end_time)

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        if (callback := self._callback()) is not None:
            callback.log_pre_api_call(model, messages, kwargs)

    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list[Any],
        messages: Any,
        request_kwargs: dict[str, Any] | None = None,
        parent_otel_span: Any = None,
    ) -> list[Any]:
        """Deployments whose breaker is open leave LiteLLM's candidates (never all of them)."""
        if (callback := self._callback()) is None:
            return healthy_deployments
        return await callback.async_filter_deployments(
            model, healthy_deployments, messages, request_kwargs, parent_otel_span
        )


#: The instance ``litellm_settings.callbacks`` names: ``pi_builder_middleware.adapters.litellm.proxy.handler``.
handler = ProxyHandler()
