"""The public API is explicit, sorted, complete and light to import."""

from __future__ import annotations

import subprocess
import sys

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
