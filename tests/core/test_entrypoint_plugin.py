"""A third-party plugin installed the real way: a distribution with an entry point in the
``pi_builder_middleware`` group, found by :func:`importlib.metadata.entry_points`.

Each test writes tiny distributions (a module plus ``<name>-0.1.dist-info/`` with METADATA and
entry_points.txt) into ``tmp_path``, puts it on ``sys.path`` and lets ``Middleware(...)`` load them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pi_builder_middleware import (
    BLOCK_ENV_VAR,
    CircuitState,
    ConfigError,
    ErrorKind,
    Middleware,
    Outcome,
    Provider,
    RouteRequest,
    hookimpl,
)

GOOD_MODULE = "pbm_roundrobin_testplugin"
BROKEN_MODULE = "pbm_broken_testplugin"

GOOD_SOURCE = '''
"""A third-party plugin: a round-robin strategy and a classifier for its SDK's quota error."""

from pi_builder_middleware import ErrorKind, Strategy, hookimpl


class QuotaExhausted(Exception):
    """What this vendor's SDK raises when the quota is used up (it carries HTTP 500, oddly)."""

    status_code = 500


class RoundRobin(Strategy):
    name = "round-robin-test"

    def __init__(self):
        self.turn = 0

    def rank(self, candidates, request, ctx):
        pick = self.turn % len(candidates)
        self.turn += 1
        return [1.0 if i == pick else 0.0 for i in range(len(candidates))]


@hookimpl
def pbm_register_strategies(registry):
    registry.add(RoundRobin())


@hookimpl
def pbm_classify_error(error, provider):
    if isinstance(error, QuotaExhausted):
        return ErrorKind.RATE_LIMITED
    return None
'''

BROKEN_SOURCE = """
raise RuntimeError("this plugin is broken on purpose")
"""

TYPO_MODULE = "pbm_typo_testplugin"
TYPO_SOURCE = """
from pi_builder_middleware import hookimpl

SEEN = []


@hookimpl
def pbm_on_outcom(outcome, error_kind):  # misspelled: no such hook
    SEEN.append(outcome)


@hookimpl
def pbm_on_decision(decision):
    SEEN.append(decision)
"""


def write_distribution(root: Path, dist: str, module: str, source: str, entry_name: str) -> None:
    """A module ``module.py`` plus ``dist-0.1.dist-info`` declaring it as an entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[pi_builder_middleware]\n{entry_name} = {module}\n")
    (info / "RECORD").write_text("")


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Both distributions 'installed' on sys.path for the duration of one test."""
    write_distribution(tmp_path, "pbm-roundrobin-test", GOOD_MODULE, GOOD_SOURCE, "roundrobin-test")
    write_distribution(tmp_path, "pbm-broken-test", BROKEN_MODULE, BROKEN_SOURCE, "broken-test")
    write_distribution(tmp_path, "pbm-typo-test", TYPO_MODULE, TYPO_SOURCE, "typo-test")
    monkeypatch.delenv(BLOCK_ENV_VAR, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield tmp_path
    finally:
        for name in (GOOD_MODULE, BROKEN_MODULE, TYPO_MODULE):
            sys.modules.pop(name, None)
        monkeypatch.undo()  # sys.path first, then the caches, so no later test sees these distributions
        importlib.invalidate_caches()


def providers() -> list[Provider]:
    return [Provider(id="a"), Provider(id="b"), Provider(id="c")]


def test_entry_points_are_visible_to_importlib(installed: Path) -> None:
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="pi_builder_middleware")}
    assert eps.get("roundrobin-test") == GOOD_MODULE
    assert eps.get("broken-test") == BROKEN_MODULE
    assert eps.get("typo-test") == TYPO_MODULE


def test_plugin_strategy_is_selectable_by_name_and_behaves_as_written(
    installed: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="pi_builder_middleware.plugins"):
        mw = Middleware(providers(), strategy="round-robin-test")
    assert mw.router.strategy.name == "round-robin-test"
    assert type(mw.router.strategy).__module__ == GOOD_MODULE
    assert "round-robin-test" in mw.registries.strategies.names()
    assert not mw.registries.strategies.is_builtin("round-robin-test")
    picks = [mw.select().provider.id for _ in range(7)]
    assert picks == ["a", "b", "c", "a", "b", "c", "a"]
    # Chosen by name per request as well, from a middleware whose default strategy is built in.
    other = Middleware(providers(), strategy="cost-optimal")
    by_request = RouteRequest(strategy="round-robin-test")
    assert [other.select(by_request).provider.id for _ in range(4)] == ["a", "b", "c", "a"]
    assert other.select().strategy == "cost-optimal"
    # The broken distributions next to it were logged and recorded, not fatal.
    errors = sorted(mw.load_errors)
    assert len(errors) == 2
    assert errors[0].startswith("broken-test: RuntimeError: this plugin is broken on purpose")
    assert errors[1].startswith("typo-test: PluginValidationError: unknown hook 'pbm_on_outcom'")
    for name in ("broken-test", "typo-test"):
        assert any(name in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    assert mw.stats()["plugin_load_errors"] == mw.load_errors
    registered = mw.export()["plugins"]["registered"]
    assert "roundrobin-test" in registered and "broken-test" not in registered and "typo-test" not in registered
    assert importlib.import_module(TYPO_MODULE).SEEN == []  # dropped entirely, its valid hook too


def test_plugin_classifier_overrides_the_builtin(installed: Path) -> None:
    quota = importlib.import_module(GOOD_MODULE).QuotaExhausted
    builtin_only = Middleware(providers(), load_entrypoints=False)
    assert builtin_only.classify(quota("quota used up"), "a") is ErrorKind.SERVER_ERROR  # status 500

    mw = Middleware(
        providers(), strategy="failover", failover="aggressive"
    )  # two server errors would trip an aggressive breaker
    assert mw.classify(quota("quota used up"), "a") is ErrorKind.RATE_LIMITED
    assert mw.classify(TimeoutError(), "a") is ErrorKind.TIMEOUT  # None from the plugin: the built-in decides
    for _ in range(3):
        assert mw.record(Outcome("a", False, 0.1, error=quota("quota used up"))) is ErrorKind.RATE_LIMITED
    assert mw.failover.state("a") is CircuitState.CLOSED
    assert "rate limited" in (mw.failover.unavailable_reason("a") or "")
    assert mw.health("a").rate_limited == 3 and mw.health("a").failures == 0
    assert mw.select().provider.id == "b"


def test_block_env_var_blocks_the_plugin(installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BLOCK_ENV_VAR, "roundrobin-test, broken-test,typo-test")
    with pytest.raises(ConfigError) as info:
        Middleware(providers(), strategy="round-robin-test")
    assert info.value.field == "strategy"
    assert "round-robin-test" in info.value.message
    for known in ("cost-optimal", "failover", "latency-optimal", "quality-optimal"):
        assert known in info.value.message  # the message lists what is available
    mw = Middleware(providers())
    assert "round-robin-test" not in mw.registries.strategies.names()
    assert mw.load_errors == []  # the broken one was blocked before it was imported
    assert BROKEN_MODULE not in sys.modules
    quota = importlib.import_module(GOOD_MODULE).QuotaExhausted
    assert mw.classify(quota("x"), "a") is ErrorKind.SERVER_ERROR  # the built-in classifier again


def test_blocked_plugins_argument_blocks_only_the_named_one(installed: Path) -> None:
    mw = Middleware(providers(), strategy="round-robin-test", blocked_plugins=["broken-test", "typo-test"])
    assert mw.load_errors == []
    assert mw.select().provider.id == "a"
    with pytest.raises(ConfigError):
        Middleware(providers(), strategy="round-robin-test", blocked_plugins=["roundrobin-test"])


def test_load_entrypoints_false_ignores_installed_plugins(installed: Path) -> None:
    mw = Middleware(providers(), load_entrypoints=False)
    assert "round-robin-test" not in mw.registries.strategies.names() and mw.load_errors == []


def test_nothing_leaks_after_the_fixture(tmp_path: Path) -> None:
    """Runs without the fixture: the distributions of the other tests are gone again."""
    names = {ep.name for ep in importlib.metadata.entry_points(group="pi_builder_middleware")}
    assert not names & {"roundrobin-test", "broken-test", "typo-test"}
    assert GOOD_MODULE not in sys.modules
    with pytest.raises(ConfigError):
        Middleware(providers(), strategy="round-robin-test")


def test_a_misspelled_hook_in_a_plugin_passed_directly_is_a_config_error() -> None:
    class Typo:
        @hookimpl
        def pbm_on_alrt(self, alert):
            pass

    with pytest.raises(ConfigError) as info:
        Middleware(providers(), plugins=[Typo()], load_entrypoints=False)
    assert info.value.field == "plugins" and "pbm_on_alrt" in info.value.message
