"""Building the plugin manager and calling hooks so that a faulty plugin never breaks a request."""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs
from .errorinfo import error_text
from .hookspecs import PROJECT_NAME

__all__ = ["BLOCK_ENV_VAR", "BUILTIN_PLUGINS", "PluginHost", "get_plugin_manager"]

log = logging.getLogger("pi_builder_middleware.plugins")

#: Comma-separated plugin names (entry-point names or built-in module paths) that must not load.
BLOCK_ENV_VAR = "PI_BUILDER_BLOCK_PLUGINS"

#: Built-in plugins, registered by module path after entry points; their hooks are all ``trylast``.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "pi_builder_middleware.plugins.strategies",
    "pi_builder_middleware.plugins.scorers",
    "pi_builder_middleware.plugins.policies",
    "pi_builder_middleware.plugins.classify",
    "pi_builder_middleware.plugins.observers",
)


def _blocked_from_env() -> set[str]:
    raw = os.environ.get(BLOCK_ENV_VAR, "")
    return {name.strip() for name in raw.split(",") if name.strip()}


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


_Impl = tuple[Callable[..., Any], tuple[str, ...], str]


class PluginHost:
    """Calls hooks one implementation at a time, so one raising plugin cannot break the others.

    A failing implementation is counted in :attr:`failures` (its first failure is logged with the
    plugin's name); the call carries on with the remaining implementations (for firstresult hooks:
    with the next one, down to the built-in default).
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
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
        impls = tuple((impl.function, tuple(impl.argnames), impl.plugin_name)
                      for impl in reversed(caller.get_hookimpls())
                      if not (impl.wrapper or impl.hookwrapper))  # observer hooks call plain implementations only
        if version is not None:
            self._cache[hook_name] = (version, impls)
        return impls

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call every (non-wrapper) implementation of an observer hook."""
        for function, argnames, plugin_name in self._impls(hook_name):
            try:
                function(*[kwargs[arg] for arg in argnames])
            except Exception as exc:
                self._failed(hook_name, plugin_name, exc)

    def first_result(self, hook_name: str, convert: Callable[[Any], Any] | None = None, **kwargs: Any) -> Any:
        """Call implementations in pluggy's order until one returns something other than None.

        With ``convert``, the first result it accepts, converted: a result it raises on counts as that
        plugin failing (like raising itself), and the next implementation is asked.
        """
        for function, argnames, plugin_name in self._impls(hook_name):
            try:
                result = function(*[kwargs[arg] for arg in argnames])
                if result is not None and convert is not None:
                    result = convert(result)
            except Exception as exc:
                self._failed(hook_name, plugin_name, exc)
                continue
            if result is not None:
                return result
        return None

    def _failed(self, hook_name: str, plugin_name: str, exc: Exception) -> None:
        key = f"{plugin_name}.{hook_name}"
        with self._failures_lock:
            self.failures[key] += 1
            first = self.failures[key] == 1
        if first:  # a hook that fails on every request must not flood the log: the rest are counted
            log.error("plugin %r raised in %s (ignored; later failures of this hook are only counted in "
                      "stats()['plugin_failures']): %s: %s", plugin_name, hook_name, type(exc).__name__,
                      error_text(exc), exc_info=exc)
