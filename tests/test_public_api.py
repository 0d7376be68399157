"""The public API is explicit, sorted, complete and light to import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pi_builder_middleware


def test_all_is_sorted_and_unique():
    names = pi_builder_middleware.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))  # constants first, as ruff sorts
    assert len(names) == len(set(names))


def test_every_exported_name_exists_and_is_public():
    for name in pi_builder_middleware.__all__:
        assert hasattr(pi_builder_middleware, name), name
        assert not name.startswith("_")


def test_contract_names_are_exported():
    contract = {
        "Middleware",
        "Provider",
        "RouteRequest",
        "RoutingDecision",
        "Outcome",
        "HealthStatus",
        "CircuitState",
        "ErrorKind",
        "FailoverPreset",
        "PiBuilderError",
        "ConfigError",
        "NoProviderAvailableError",
        "AllProvidersFailedError",
        "hookimpl",
    }
    assert contract <= set(pi_builder_middleware.__all__)


def test_exported_classes_claim_this_package():
    for name in pi_builder_middleware.__all__:
        obj = getattr(pi_builder_middleware, name)
        module = getattr(obj, "__module__", None)
        if isinstance(obj, type) and module is not None:
            assert module.startswith("pi_builder_middleware"), (name, module)


def test_import_does_not_pull_frameworks():
    code = (
        "import sys, pi_builder_middleware; "
        "bad = [m for m in ('litellm', 'langchain_core', 'aiohttp', 'redis', 'opentelemetry', 'prometheus_client') "
        "if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_plugins_and_adapters_are_namespaced():
    import importlib.util

    assert importlib.util.find_spec("pi_builder_middleware.plugins.strategies") is not None
    assert importlib.util.find_spec("pi_builder_middleware.adapters") is not None


def test_lazy_exports_match_all_and_the_type_checking_imports():
    """The three lists of public names in ``__init__`` (``__all__``, the lazy map, the imports for type checkers)."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(pi_builder_middleware.__file__).read_text())
    typed: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.level == 1
                typed.update({alias.name: f".{imp.module}" for alias in imp.names})
    lazy = pi_builder_middleware._MODULE_OF
    assert typed == lazy
    assert set(lazy) == set(pi_builder_middleware.__all__)


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = pi_builder_middleware.Nope  # type: ignore[attr-defined]
    assert "Middleware" in dir(pi_builder_middleware)


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_loads_no_submodule_and_no_pydantic():
    out = _fresh(
        "import sys, pi_builder_middleware; "
        "print(sorted(m for m in sys.modules if m.startswith(('pi_builder_middleware.', 'pydantic', 'pluggy'))))"
    )
    assert out == "[]"


def test_first_use_of_the_core_loads_no_pydantic():
    """Settings, a Middleware (entry points loaded, as by default), select, record, health, stats, export: no pydantic.

    The core's settings are hand-checked dataclasses (``_validation.settings``) because importing pydantic and
    building its schemas cost more than the whole first-use budget (BENCHMARKS.md, "Import cost").
    """
    out = _fresh(
        "import json, sys\n"
        "from pi_builder_middleware import (FailoverConfig, Middleware, MonitorConfig, Outcome, Provider,\n"
        "    RouteRequest, RoutingConfig)\n"
        "mw = Middleware([Provider(id='a', capabilities=['tools']), Provider(**{'id': 'b', 'quality': '0.9'})],\n"
        "    failover=FailoverConfig.preset('aggressive', outlier={'interval_s': 5}),\n"
        "    monitor=MonitorConfig(thresholds={'healthy_availability': 0.98}),\n"
        "    routing=RoutingConfig(when_all_out='fail'))\n"
        "decision = mw.select(RouteRequest())\n"
        "mw.record(Outcome(decision.provider.id, True, 0.1))\n"
        "assert mw.health(decision.provider.id).calls == 1\n"
        "json.dumps([mw.stats(), mw.export()])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'pydantic_core')))"
    )
    assert out == "[]"


def test_sync_use_loads_no_asyncio():
    """A sync program (select, record, execute) never loads asyncio: the async paths import it when awaited."""
    out = _fresh(
        "import sys\n"
        "from pi_builder_middleware import Middleware, Outcome, Provider\n"
        "mw = Middleware([Provider(id='a'), Provider(id='b')])\n"
        "mw.record(Outcome('a', True, 0.1))\n"
        "assert mw.execute(lambda p: p.id) in ('a', 'b')\n"
        "print('asyncio' in sys.modules)"
    )
    assert out == "False"


def test_async_use_still_works_after_a_lazy_import():
    out = _fresh(
        "import asyncio\n"
        "from pi_builder_middleware import Middleware, Provider\n"
        "mw = Middleware([Provider(id='a')])\n"
        "async def call(p):\n"
        "    await mw.async_sleep(0)\n"
        "    return p.id\n"
        "print(asyncio.run(mw.aexecute(call)))"
    )
    assert out == "a"
