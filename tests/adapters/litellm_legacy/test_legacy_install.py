"""install() on LiteLLM before 1.109: registration through set_custom_routing_strategy, exact restore."""

from __future__ import annotations

import re
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import Any

import litellm
import pytest
from litellm.router import CustomRoutingStrategyBase
from litellm_support import MESSAGES, async_wait_until, mock_deployment, served_by
from pi_builder_middleware.adapters.litellm import MiddlewareCallback, _legacy, install, installed

from pi_builder_middleware import ConfigError


def make_router(*deployments: dict[str, Any], **kwargs: Any) -> litellm.Router:
    return litellm.Router(
        model_list=list(deployments) or [mock_deployment("a", quality=0.9), mock_deployment("b", quality=0.1)],
        num_retries=0,
        **kwargs,
    )


def test_this_is_a_litellm_without_register_plugin() -> None:
    """The suite means nothing on a modern LiteLLM: make sure the venv really has an old one."""
    major, minor = (int(p) for p in version("litellm").split(".")[:2])
    assert (major, minor) < (1, 109)
    assert not hasattr(litellm.Router, "register_plugin")
    assert not hasattr(litellm.Router, "registry")
    assert callable(litellm.Router.set_custom_routing_strategy)


async def test_install_registers_through_set_custom_routing_strategy() -> None:
    router = make_router()
    handle = install(router, strategy="quality-optimal")
    try:
        # set_custom_routing_strategy puts the strategy's bound picks on the router instance
        assert vars(router)["async_get_available_deployment"].__self__ is handle.strategy
        assert vars(router)["get_available_deployment"].__self__ is handle.strategy
        for _ in range(3):
            assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "a"
        assert served_by(router.completion(model="g", messages=MESSAGES)) == "a"
        assert handle.stats()["picks"] == 4  # every pick went through the middleware
        await async_wait_until(lambda: handle.stats().get("recorded_ok", 0) == 4)
    finally:
        handle.uninstall()


async def test_uninstall_restores_the_router_and_litellms_own_routing() -> None:
    router = make_router()
    await router.acompletion(model="g", messages=MESSAGES)  # LiteLLM promotes callbacks on first use
    before = {name for name in ("get_available_deployment", "async_get_available_deployment") if name in vars(router)}
    assert before == set()

    handle = install(router, strategy="quality-optimal")
    for _ in range(3):
        await router.acompletion(model="g", messages=MESSAGES)
    await async_wait_until(lambda: handle.stats().get("recorded_ok", 0) == 3)
    handle.uninstall()

    assert "get_available_deployment" not in vars(router)
    assert "async_get_available_deployment" not in vars(router)
    assert not any(isinstance(c, MiddlewareCallback) for c in litellm.callbacks)
    assert installed(router) is None
    served = Counter([served_by(await router.acompletion(model="g", messages=MESSAGES)) for _ in range(30)])
    assert set(served) == {"a", "b"}  # LiteLLM's simple-shuffle again, not quality-optimal
    assert served_by(router.completion(model="g", messages=MESSAGES)) in {"a", "b"}
    assert handle.stats()["picks"] == 3 and handle.stats()["recorded_ok"] == 3  # no longer asked, no longer fed


class PickB(CustomRoutingStrategyBase):
    """A user's own custom strategy: always deployment b."""

    def __init__(self, router: litellm.Router) -> None:
        self.router = router

    def _b(self) -> dict[str, Any]:
        return next(d for d in self.router.model_list if d["model_info"]["id"] == "b")

    async def async_get_available_deployment(
        self, model, messages=None, input=None, specific_deployment=False, request_kwargs=None
    ):
        return self._b()

    def get_available_deployment(
        self, model, messages=None, input=None, specific_deployment=False, request_kwargs=None
    ):
        return self._b()


async def test_uninstall_puts_back_a_previous_custom_strategy() -> None:
    router = make_router()
    mine = PickB(router)
    router.set_custom_routing_strategy(mine)
    assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "b"
    with install(router, strategy="quality-optimal") as handle:
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "a"
        assert vars(router)["async_get_available_deployment"].__self__ is handle.strategy
    assert vars(router)["async_get_available_deployment"].__self__ is mine
    assert vars(router)["get_available_deployment"].__self__ is mine
    assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "b"
    assert served_by(router.completion(model="g", messages=MESSAGES)) == "b"


def test_a_litellm_older_than_the_tested_minimum_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_legacy, "litellm_version", lambda: "1.79.3")
    router = make_router()
    with pytest.raises(ConfigError) as info:
        install(router)
    assert info.value.field == "router"
    assert "1.79.3" in info.value.message and f"litellm>={_legacy.MIN_LEGACY_VERSION}" in info.value.message
    assert installed(router) is None
    assert "async_get_available_deployment" not in vars(router)


def test_the_installed_version_is_at_least_the_claimed_minimum() -> None:
    have = tuple(int(p) for p in version("litellm").split(".")[:3])
    need = tuple(int(p) for p in _legacy.MIN_LEGACY_VERSION.split("."))
    assert have >= need


def test_ci_tests_the_claimed_minimum() -> None:
    """scripts/litellm-legacy.sh pins the venvs CI runs this suite in; its oldest must be the claimed minimum."""
    pins = re.findall(r"=(\d+\.\d+\.\d+)\"", (Path(__file__).parents[3] / "scripts/litellm-legacy.sh").read_text())
    assert pins and min(pins, key=lambda v: tuple(map(int, v.split(".")))) == _legacy.MIN_LEGACY_VERSION


async def test_specific_deployment_returns_the_named_deployment() -> None:
    named = mock_deployment("named", quality=0.1)
    named["litellm_params"]["model"] = "openai/gpt-4o"
    router = make_router(mock_deployment("best", quality=0.9), named)
    with install(router, strategy="quality-optimal") as handle:
        response = await router.acompletion(model="openai/gpt-4o", messages=MESSAGES, specific_deployment=True)
        assert served_by(response) == "named"
        assert (
            served_by(router.completion(model="openai/gpt-4o", messages=MESSAGES, specific_deployment=True)) == "named"
        )
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "best"
        assert handle.stats()["picks"] == 1  # LiteLLM resolved the named one; the middleware chose only for "g"
        await async_wait_until(lambda: handle.middleware.health("named").calls == 2)


async def test_model_group_alias_and_deployment_id_resolve_as_in_litellm() -> None:
    router = make_router(
        mock_deployment("best", quality=0.9), mock_deployment("worst", quality=0.1), model_group_alias={"smart": "g"}
    )
    with install(router, strategy="quality-optimal") as handle:
        assert served_by(await router.acompletion(model="smart", messages=MESSAGES)) == "best"
        assert served_by(router.completion(model="smart", messages=MESSAGES)) == "best"
        assert served_by(await router.acompletion(model="worst", messages=MESSAGES)) == "worst"  # an id: that one
        assert handle.stats()["picks"] == 2
        with pytest.raises(litellm.BadRequestError):
            await router.acompletion(model="no-such-group", messages=MESSAGES)
