"""Typed registries that plugins fill through the ``pbm_register_*`` hooks."""

from __future__ import annotations

from typing import Generic, TypeVar

from .errors import ConfigError, PluginError
from .interfaces import FailoverPolicy, HealthScorer, Strategy

__all__ = ["FailoverPolicyRegistry", "HealthScorerRegistry", "Registry", "StrategyRegistry"]

T = TypeVar("T", Strategy, HealthScorer, FailoverPolicy)


class Registry(Generic[T]):
    """Named objects of one kind. Third-party entries win over built-ins of the same name."""

    kind: type[T]
    label: str

    def __init__(self) -> None:
        self._items: dict[str, T] = {}
        self._builtin: set[str] = set()

    def add(self, item: T) -> None:
        """Register ``item`` under ``item.name``; a second non-built-in of one name is an error."""
        name = self._check(item)
        if name in self._items and name not in self._builtin:
            raise PluginError(f"two plugins register a {self.label} named {name!r}; block one of them")
        self._items[name] = item
        self._builtin.discard(name)

    def add_default(self, item: T) -> None:
        """Register a built-in: kept only if no plugin registered that name already."""
        name = self._check(item)
        if name not in self._items:
            self._items[name] = item
            self._builtin.add(name)

    def get(self, name: str) -> T:
        """The entry named ``name``; ConfigError listing the known names otherwise."""
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none registered"
            raise ConfigError(self.label, f"unknown {self.label} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def is_builtin(self, name: str) -> bool:
        """Whether the entry under ``name`` is a built-in default."""
        return name in self._builtin

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def _check(self, item: T) -> str:
        if not isinstance(item, self.kind):
            raise PluginError(f"a {self.label} must be a {self.kind.__name__} instance, got {item!r}")
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"{type(item).__name__} has no 'name'; set a class attribute name = '...'")
        return name


class StrategyRegistry(Registry[Strategy]):
    """Routing strategies by name."""

    kind = Strategy
    label = "strategy"


class HealthScorerRegistry(Registry[HealthScorer]):
    """Health scorers by name."""

    kind = HealthScorer
    label = "health scorer"


class FailoverPolicyRegistry(Registry[FailoverPolicy]):
    """Failover policies by name."""

    kind = FailoverPolicy
    label = "failover policy"
