"""Compatibility: every way LiteLLM resolves ``model`` works the same on a plain Router and an installed one.

Shared by both LiteLLM suites (``litellm/`` and ``litellm_legacy/`` each have a test module importing these).
Each scenario runs twice (``plain`` / ``installed``) on a real ``litellm.Router`` with ``mock_response``
deployments (as LiteLLM's own offline router tests do); the installed one must answer from the same deployment.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import litellm
import pytest
from litellm_support import MESSAGES, async_wait_until, mock_deployment, served_by
from pi_builder_middleware.adapters.litellm import install

__all__ = [
    "build",
    "mode",
    "test_a_deployment_id_names_that_deployment",
    "test_a_deployment_id_wins_over_a_catch_all_wildcard",
    "test_a_wildcard_route_serves_matching_names",
    "test_an_unknown_name_is_litellms_bad_request",
    "test_installed_picks_are_the_middlewares_and_are_recorded",
    "test_model_group_alias_routes_to_its_group",
    "test_other_endpoints_route_by_group_and_by_id",
    "test_specific_deployment_names_a_litellm_model",
    "test_the_default_deployment_serves_unknown_names",
]

MODES = ["plain", "installed"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def build(mode: str) -> Iterator[Any]:
    handles: list[Any] = []

    def factory(*deployments: dict[str, Any], **settings: Any) -> litellm.Router:
        router = litellm.Router(model_list=list(deployments), num_retries=0, **settings)
        if mode == "installed":
            handles.append(install(router, strategy="latency-optimal", seed=3))
        return router

    yield factory
    for handle in handles:
        handle.uninstall()


def _pair(group: str = "g") -> tuple[dict[str, Any], dict[str, Any]]:
    return mock_deployment("a", group, answer="from a"), mock_deployment("b", group, answer="from b")


async def test_a_deployment_id_names_that_deployment(build) -> None:
    router = build(*_pair())
    for pid in ("a", "b", "b", "a"):
        assert served_by(await router.acompletion(model=pid, messages=MESSAGES)) == pid
        assert served_by(router.completion(model=pid, messages=MESSAGES)) == pid


async def test_model_group_alias_routes_to_its_group(build) -> None:
    router = build(*_pair(), mock_deployment("x", "other"), model_group_alias={"smart": "g"})
    for _ in range(4):
        assert served_by(await router.acompletion(model="smart", messages=MESSAGES)) in {"a", "b"}
        assert served_by(router.completion(model="smart", messages=MESSAGES)) in {"a", "b"}


async def test_a_wildcard_route_serves_matching_names(build) -> None:
    wild = mock_deployment("w", "wild/*", answer="from w")
    wild["litellm_params"]["model"] = "openai/*"
    router = build(*_pair(), wild)
    assert served_by(await router.acompletion(model="wild/anything", messages=MESSAGES)) == "w"
    assert served_by(router.completion(model="wild/else", messages=MESSAGES)) == "w"


async def test_a_deployment_id_wins_over_a_catch_all_wildcard(build) -> None:
    star = mock_deployment("star", "*", answer="from star")
    star["litellm_params"]["model"] = "openai/*"
    router = build(*_pair(), star)
    assert served_by(await router.acompletion(model="a", messages=MESSAGES)) == "a"
    assert served_by(await router.acompletion(model="openai/unknown", messages=MESSAGES)) == "star"


async def test_specific_deployment_names_a_litellm_model(build) -> None:
    named = mock_deployment("named", "other")
    named["litellm_params"]["model"] = "openai/gpt-4o"
    router = build(*_pair(), named)
    assert (
        served_by(await router.acompletion(model="openai/gpt-4o", messages=MESSAGES, specific_deployment=True))
        == "named"
    )
    assert served_by(router.completion(model="openai/gpt-4o", messages=MESSAGES, specific_deployment=True)) == "named"


async def test_the_default_deployment_serves_unknown_names(build) -> None:
    router = build(*_pair())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        router.default_deployment = mock_deployment("dflt", "*", answer="from default")
    assert served_by(await router.acompletion(model="openai/not-configured", messages=MESSAGES)) == "dflt"
    assert served_by(router.completion(model="openai/not-configured", messages=MESSAGES)) == "dflt"
    assert served_by(await router.acompletion(model="a", messages=MESSAGES)) == "a"


async def test_an_unknown_name_is_litellms_bad_request(build) -> None:
    router = build(*_pair())
    with pytest.raises(litellm.BadRequestError):
        await router.acompletion(model="no-such-group", messages=MESSAGES)
    with pytest.raises(litellm.BadRequestError):
        router.completion(model="no-such-group", messages=MESSAGES)


def _model_id(response: Any) -> str:
    hidden = getattr(response, "_hidden_params", None) or {}
    return str(hidden.get("model_id"))


@pytest.mark.parametrize(
    ("endpoint", "arguments"),
    [
        ("aembedding", {"input": ["hello"]}),
        ("atext_completion", {"prompt": "hello"}),
        ("aresponses", {"input": "hello"}),
        ("aimage_generation", {"prompt": "a cat"}),
    ],
)
async def test_other_endpoints_route_by_group_and_by_id(build, endpoint: str, arguments: dict[str, Any]) -> None:
    router = build(*_pair())
    by_group = await getattr(router, endpoint)(model="g", **arguments)
    assert _model_id(by_group) in {"a", "b"}
    for pid in ("a", "b"):
        assert _model_id(await getattr(router, endpoint)(model=pid, **arguments)) == pid


async def test_installed_picks_are_the_middlewares_and_are_recorded() -> None:
    """The id / alias calls above are not just passed through: group picks go through the middleware and every
    call (by id too) is recorded against the deployment that answered."""
    router = litellm.Router(model_list=list(_pair()), num_retries=0, model_group_alias={"smart": "g"})
    with install(router, strategy="latency-optimal", seed=3) as handle:
        await router.acompletion(model="a", messages=MESSAGES)
        await router.acompletion(model="smart", messages=MESSAGES)
        await router.acompletion(model="g", messages=MESSAGES)
        assert handle.stats()["picks"] == 2  # the id names one deployment: LiteLLM's answer, no choice
        await async_wait_until(lambda: handle.stats()["recorded_ok"] == 3)
        assert handle.middleware.health("a").calls >= 1
