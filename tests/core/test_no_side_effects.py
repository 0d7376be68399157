"""Building the core's parts bare reads no installed entry points; only the Middleware's plugin host does."""

from __future__ import annotations

from importlib.metadata import EntryPoints

import pytest

import pi_builder_middleware.pluginmanager as pluginmanager
from pi_builder_middleware import FailoverManager, Middleware, Provider, ProviderRouter


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each group asked of the installed entry points (the real lookup still runs)."""
    seen: list[str] = []
    real = pluginmanager.entry_points

    def counting(*, group: str) -> EntryPoints:
        seen.append(group)
        return real(group=group)

    monkeypatch.setattr(pluginmanager, "entry_points", counting)
    return seen


def test_bare_router_and_manager_load_no_entry_points(scans: list[str]) -> None:
    router = ProviderRouter([Provider(id="a"), Provider(id="b")])
    manager = FailoverManager()
    assert scans == []
    assert router.select().provider.id in {"a", "b"}  # the built-in strategy and policy are there
    assert router.failover.policy.name == manager.policy.name == "default"


def test_middleware_loads_entry_points_once(scans: list[str]) -> None:
    Middleware([Provider(id="a")])
    assert scans == [pluginmanager.PROJECT_NAME]
