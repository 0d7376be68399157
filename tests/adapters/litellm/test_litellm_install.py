"""install() / uninstall(): bad input, double install, exact restore, providers from deployments."""

from __future__ import annotations

from typing import Any

import litellm
import pytest
from litellm.router import CustomRoutingStrategyBase
from litellm.router_api import ChangeSet
from litellm.types.router import Deployment
from litellm_support import MESSAGES, async_wait_until, callback_lists, mock_deployment, served_by
from pi_builder_middleware.adapters.litellm import (
    LiteLLMHandle,
    MiddlewareCallback,
    install,
    installed,
    provider_from_deployment,
)
from pi_builder_middleware.adapters.litellm._legacy import unsupported_reason

from pi_builder_middleware import ConfigError, Middleware, Provider


def make_router(*deployments: dict[str, Any], **kwargs: Any) -> litellm.Router:
    return litellm.Router(
        model_list=list(deployments) or [mock_deployment("a"), mock_deployment("b")], num_retries=0, **kwargs
    )


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("thing", [object(), [mock_deployment("a")], "router", None])
def test_install_on_something_that_is_not_a_router_says_what_to_pass(thing: object) -> None:
    with pytest.raises(ConfigError) as info:
        install(thing)
    assert info.value.field == "router"
    assert "litellm.Router" in info.value.message


def test_unknown_strategy_name_is_a_config_error_listing_the_known_ones() -> None:
    router = make_router()
    with pytest.raises(ConfigError) as info:
        install(router, strategy="fastest-please")
    assert "fastest-please" in str(info.value)
    assert "latency-optimal" in str(info.value)
    assert installed(router) is None
    assert not any(isinstance(c, MiddlewareCallback) for c in litellm.callbacks)


def test_unknown_candidates_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'healthy'"):
        install(make_router(), candidates="all")


@pytest.mark.parametrize("providers", [[{"id": "a"}], {"a": 0.001}, "a"])
def test_providers_that_are_no_mapping_of_overrides_are_a_config_error(providers: object) -> None:
    router = make_router()
    with pytest.raises(ConfigError, match="providers") as info:
        install(router, providers=providers)  # type: ignore[arg-type]
    assert "cost_per_1k_input" in str(info.value)  # says what to pass instead
    assert installed(router) is None  # nothing half-applied


def test_unknown_failover_preset_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="preset"):
        install(make_router(), failover="reckless")


def test_middleware_and_settings_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="either middleware="):
        install(make_router(), middleware=Middleware(), strategy="cost-optimal")
    with pytest.raises(ConfigError, match="Middleware"):
        install(make_router(), middleware="latency-optimal")  # type: ignore[arg-type]


def test_bad_model_info_names_the_deployment() -> None:
    router = make_router(mock_deployment("a", quality=3.0))
    with pytest.raises(ConfigError) as info:
        install(router)
    assert "'a'" in info.value.field and "quality" in info.value.field
    router = make_router(mock_deployment("a", capabilities="vision"))
    with pytest.raises(ConfigError, match="list of capability names"):
        install(router)


def test_overrides_must_name_a_deployment_or_group() -> None:
    with pytest.raises(ConfigError, match="no deployment id or model group"):
        install(make_router(), providers={"gpt-5": {"quality": 0.9}})
    with pytest.raises(ConfigError, match="unknown Provider field"):
        install(make_router(), providers={"a": {"speed": 3}})


# -- install twice / uninstall ----------------------------------------------------------------------
def test_installing_twice_on_one_router_raises_and_keeps_the_first() -> None:
    router = make_router()
    handle = install(router)
    with pytest.raises(ConfigError, match="already installed"):
        install(router)
    assert installed(router) is handle
    assert sum(isinstance(c, MiddlewareCallback) for c in litellm.callbacks) == 1
    handle.uninstall()
    assert installed(router) is None
    again = install(router, strategy="cost-optimal")  # allowed once the first is gone
    assert installed(router) is again
    again.uninstall()


async def test_uninstall_restores_callbacks_and_strategy_and_stops_recording() -> None:
    router = make_router()
    await router.acompletion(model="g", messages=MESSAGES)  # LiteLLM promotes callbacks on first use
    before = callback_lists()
    assert router._custom_strategy is None

    handle = install(router)
    assert isinstance(handle, LiteLLMHandle)
    assert router._custom_strategy is handle.strategy
    await router.acompletion(model="g", messages=MESSAGES)
    await async_wait_until(lambda: handle.stats().get("recorded_ok", 0) == 1)
    assert any(isinstance(c, MiddlewareCallback) for c in litellm._async_success_callback)  # promoted

    handle.uninstall()
    assert callback_lists() == before
    assert router._custom_strategy is None
    assert "get_available_deployment" not in vars(router._core)
    for _ in range(3):
        await router.acompletion(model="g", messages=MESSAGES)
    assert handle.stats()["picks"] == 1  # our strategy is no longer asked
    assert handle.stats()["recorded_ok"] == 1  # and nothing more is recorded
    assert handle.middleware.health("a").calls + handle.middleware.health("b").calls == 1
    handle.uninstall()  # idempotent
    assert not handle.installed


class PickB(CustomRoutingStrategyBase):
    """A user's own custom strategy: always deployment b."""

    def __init__(self, router: litellm.Router) -> None:
        self.router = router

    async def async_get_available_deployment(
        self, model, messages=None, input=None, specific_deployment=False, request_kwargs=None
    ):
        return next(d for d in self.router.registry().all() if d["model_info"]["id"] == "b")

    def get_available_deployment(
        self, model, messages=None, input=None, specific_deployment=False, request_kwargs=None
    ):
        return next(d for d in self.router.registry().all() if d["model_info"]["id"] == "b")


async def test_uninstall_puts_back_the_previous_custom_strategy() -> None:
    router = make_router(mock_deployment("a", quality=0.9), mock_deployment("b", quality=0.1))
    mine = PickB(router)
    router.register_plugin(mine)
    assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "b"
    with install(router, strategy="quality-optimal") as handle:
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "a"
        assert handle.installed
    assert not handle.installed
    assert router._custom_strategy is mine
    assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "b"
    assert served_by(router.completion(model="g", messages=MESSAGES)) == "b"


# -- providers from deployments ---------------------------------------------------------------------
def test_providers_come_from_model_info_and_litellm_price_map() -> None:
    priced = mock_deployment(
        "priced",
        input_cost_per_token=2e-6,
        output_cost_per_token=8e-6,
        quality=0.8,
        capabilities=["mcp"],
        supports_vision=False,
    )
    mapped = {
        "model_name": "big",
        "litellm_params": {"model": "openai/gpt-4o", "api_key": "k", "order": 2},
        "model_info": {"id": "mapped"},
    }
    router = make_router(priced, mapped)
    with install(router, providers={"big": {"quality": 0.95}}) as handle:
        p = handle.middleware.providers
        assert set(p) == {"priced", "mapped"}
        assert p["priced"].cost_per_1k_input == pytest.approx(0.002)
        assert p["priced"].cost_per_1k_output == pytest.approx(0.008)
        assert p["priced"].quality == 0.8
        # gpt-4o-mini's map flags, minus vision (switched off on the deployment), plus the declared one
        assert {"mcp", "tools", "json", "streaming"} <= p["priced"].capabilities
        assert "vision" not in p["priced"].capabilities
        gpt4o = litellm.get_model_info("openai/gpt-4o")
        assert p["mapped"].cost_per_1k_input == pytest.approx(gpt4o["input_cost_per_token"] * 1000)
        assert p["mapped"].cost_per_1k_output == pytest.approx(gpt4o["output_cost_per_token"] * 1000)
        assert p["mapped"].max_context_tokens == gpt4o["max_input_tokens"]
        assert {"vision", "tools"} <= p["mapped"].capabilities
        assert p["mapped"].priority == 2 and p["mapped"].group == "big" and p["mapped"].model == "openai/gpt-4o"
        assert p["mapped"].quality == 0.95  # from the group override


def test_providers_configured_on_a_given_middleware_win() -> None:
    mw = Middleware(providers=[Provider(id="a", quality=0.99, capabilities={"vision"})])
    with install(make_router(), middleware=mw) as handle:
        assert handle.middleware is mw
        assert mw.providers["a"].quality == 0.99 and mw.providers["a"].capabilities == {"vision"}
        assert "b" in mw.providers  # derived
    assert "a" in mw.providers  # uninstall does not take the user's providers away


def test_provider_from_deployment_unknown_model_costs_nothing() -> None:
    p = provider_from_deployment(mock_deployment("x") | {"litellm_params": {"model": "openai/no-such-model"}})
    assert (p.cost_per_1k_input, p.cost_per_1k_output, p.quality) == (0.0, 0.0, 0.5)


async def test_deployments_added_later_are_picked_up_on_the_next_call() -> None:
    router = make_router(mock_deployment("a", quality=0.2))
    with install(router, strategy="quality-optimal") as handle:
        assert set(handle.middleware.providers) == {"a"}
        new = Deployment(**mock_deployment("late", quality=0.9))
        router.apply(ChangeSet(upsert=[new]))
        assert served_by(await router.acompletion(model="g", messages=MESSAGES)) == "late"
        assert handle.middleware.providers["late"].quality == 0.9
        router.apply(ChangeSet(delete=["a"]))
        await router.acompletion(model="g", messages=MESSAGES)
        assert set(handle.middleware.providers) == {"late"}


@pytest.mark.parametrize(
    ("version", "refused"),
    [("1.109.0", True), ("1.109.3", True), ("1.110.2", False), ("1.108.14", False), ("1.111.0", False)],
)
def test_litellm_1_109_is_refused_by_name(version: str, refused: bool) -> None:
    """1.109.x takes the modern path but its registration cannot be undone: refused with a clear message."""
    reason = unsupported_reason(version)
    assert (reason is not None) is refused
    if reason is not None:
        assert version in reason and "litellm>=1.110" in reason
