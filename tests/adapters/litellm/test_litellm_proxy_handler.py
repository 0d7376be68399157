"""The proxy handler in-process: its settings, and moving the installation when the proxy builds a new Router."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import litellm
import pytest
from litellm_support import MESSAGES, async_wait_until, mock_deployment, served_by
from pi_builder_middleware.adapters.litellm import installed
from pi_builder_middleware.adapters.litellm._proxy_settings import ProxySettings
from pi_builder_middleware.adapters.litellm.proxy import ProxyHandler

from pi_builder_middleware import ConfigError, ErrorKind, Outcome


def test_settings_come_from_the_config_section_over_the_environment() -> None:
    env = {
        "PBM_STRATEGY": "cost-optimal",
        "PBM_FAILOVER": "aggressive",
        "PBM_MAX_WAIT_S": "0.5",
        "SECRET_URL": "redis://127.0.0.1:1/0",
    }
    settings = ProxySettings.load({"failover": "conservative", "redis_url": "os.environ/SECRET_URL"}, env)
    assert settings == ProxySettings(
        strategy="cost-optimal", failover="conservative", redis_url="redis://127.0.0.1:1/0", max_wait_s=0.5
    )
    assert ProxySettings.load(None, {}) == ProxySettings()


@pytest.mark.parametrize("section", [{"stratgy": "x"}, ["strategy"], {"max_wait_s": "soon"}, {"strategy": 3}])
def test_bad_settings_say_what_to_fix(section: object) -> None:
    with pytest.raises(ConfigError):
        ProxySettings.load(section, {})


@pytest.fixture
def fake_proxy_server() -> Iterator[types.ModuleType]:
    """Stands in for ``litellm.proxy.proxy_server`` only as the place holding ``llm_router`` (the real module
    is exercised by test_litellm_proxy.py, which starts real proxy processes)."""
    name = "litellm.proxy.proxy_server"
    saved = sys.modules.get(name)
    module = types.ModuleType(name)
    module.llm_router = None  # type: ignore[attr-defined]
    sys.modules[name] = module
    yield module
    if saved is None:
        del sys.modules[name]
    else:
        sys.modules[name] = saved


def _router() -> litellm.Router:
    return litellm.Router(
        model_list=[mock_deployment("a", answer="a"), mock_deployment("b", answer="b")], num_retries=0
    )


async def test_the_handler_installs_when_the_router_appears_and_moves_with_a_rebuilt_one(fake_proxy_server) -> None:
    handler = ProxyHandler(ProxySettings(strategy="quality-optimal", failover="aggressive"))
    assert handler.ensure_installed() is None  # no Router yet: nothing to do, no error
    first = _router()
    fake_proxy_server.llm_router = first
    await handler.async_pre_call_hook(None, None, {}, "acompletion")
    handle = handler.handle
    assert handle is not None and installed(first) is handle and handler.installs == 1
    assert handle.middleware.router.strategy.name == "quality-optimal"
    mw = handle.middleware
    for _ in range(2):
        mw.record(Outcome("a", False, 0.01, error_kind=ErrorKind.SERVER_ERROR))
    assert mw.failover.unavailable_reason("a") is not None
    second = _router()  # the proxy rebuilt its Router (e.g. from its database)
    fake_proxy_server.llm_router = second
    await handler.async_pre_call_hook(None, None, {}, "acompletion")
    assert handler.installs == 2 and installed(first) is None and installed(second) is handler.handle
    assert handler.middleware is mw  # the same middleware: health and breakers carried over
    assert {served_by(await second.acompletion(model="g", messages=MESSAGES)) for _ in range(6)} == {"b"}
    handler.handle.uninstall()


async def test_events_reach_the_installation_through_the_handler(fake_proxy_server) -> None:
    handler = ProxyHandler(ProxySettings())
    router = _router()
    fake_proxy_server.llm_router = router
    handle = handler.ensure_installed()
    assert handle is not None
    assert handle.callback not in litellm.callbacks  # taken out: the proxy only calls its startup callbacks
    litellm.callbacks.append(handler)
    try:
        for _ in range(3):
            await router.acompletion(model="g", messages=MESSAGES)
        await async_wait_until(lambda: handle.stats()["recorded_ok"] == 3)
    finally:  # LiteLLM promoted the handler into its other callback lists too
        litellm.logging_callback_manager.remove_callback_from_all_lists(handler)
        handle.uninstall()


async def test_a_router_strategy_without_equivalent_keeps_litellm_picking(fake_proxy_server) -> None:
    handler = ProxyHandler(ProxySettings())
    fake_proxy_server.llm_router = litellm.Router(model_list=[mock_deployment("a")], routing_strategy="least-busy")
    handle = handler.ensure_installed()
    assert handle is not None and handle.strategy is None
    handle.uninstall()
