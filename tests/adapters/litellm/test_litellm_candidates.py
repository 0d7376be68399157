"""``install(candidates="auto")``: the group minus cooldowns wherever it equals LiteLLM's healthy list, else LiteLLM's.

Each narrowing case gives the deployment LiteLLM filters out the best quality, so a pick made among the
wrong candidates (``strategy="quality-optimal"``) would land on it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger
from litellm.router_api import ChangeSet, RoutingContext
from litellm.types.router import Deployment
from litellm_support import MESSAGES, mock_deployment, served_by
from pi_builder_middleware.adapters.litellm import _candidates, install
from pi_builder_middleware.adapters.litellm._registration import remove_callback as _remove_callback

from pi_builder_middleware import ManualClock


async def _served(router: litellm.Router, n: int, **kwargs: Any) -> Counter[str]:
    return Counter([served_by(await router.acompletion(model="g", messages=MESSAGES, **kwargs)) for _ in range(n)])


class DropBest(CustomLogger):
    """Another library's callback that filters deployments (here: never 'best')."""

    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list[Any],
        messages: Any,
        request_kwargs: dict[str, Any] | None = None,
        parent_otel_span: Any = None,
    ) -> list[Any]:
        return [d for d in healthy_deployments if d["model_info"]["id"] != "best"]


async def test_a_plain_router_compares_once_then_picks_from_the_group() -> None:
    router = litellm.Router(
        model_list=[mock_deployment("best", quality=0.9), mock_deployment("other", quality=0.1)], num_retries=0
    )
    with install(router, strategy="quality-optimal") as handle:
        assert handle.strategy is not None and handle.strategy.mode == "auto"
        assert await _served(router, 6) == {"best": 6}
        stats = handle.stats()
        assert (stats["auto_checks"], stats["picks_healthy"], stats["picks_fast"]) == (1, 1, 5)
        assert stats["auto_mismatches"] == 0
        assert handle.strategy.auto_status() == {"g": {"fast": True, "reason": None}}


def _order(best: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    best["litellm_params"]["order"], other["litellm_params"]["order"] = 2, 1
    return {}


def _team(best: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    best["model_info"]["team_id"] = "team-1"
    return {}


def _tags(best: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    best["litellm_params"]["tags"], other["litellm_params"]["tags"] = ["us"], ["eu"]
    return {"enable_tag_filtering": True}


@pytest.mark.parametrize(
    ("configure", "request_kwargs", "reason"),
    [
        (_order, {}, "litellm_params order"),
        (_team, {}, "model_info team_id"),
        (_tags, {"metadata": {"tags": ["eu"]}}, None),  # a tagged request goes to LiteLLM's list by itself
    ],
    ids=["order", "team", "tags"],
)
async def test_litellms_own_filters_send_the_group_to_litellms_healthy_list(
    configure: Any, request_kwargs: dict[str, Any], reason: str | None
) -> None:
    best, other = mock_deployment("best", quality=0.9), mock_deployment("other", quality=0.1)
    router_kwargs = configure(best, other)
    router = litellm.Router(model_list=[best, other], num_retries=0, **router_kwargs)
    with install(router, strategy="quality-optimal") as handle:
        assert await _served(router, 5, **request_kwargs) == {"other": 5}
        assert handle.stats()["picks_fast"] == 0
        assert handle.stats()["picks_healthy"] == 5
        if reason is not None:
            assert handle.strategy is not None
            status = handle.strategy.auto_status()["g"]
            assert status["fast"] is False and reason in str(status["reason"])


async def test_a_tagged_request_uses_litellms_list_and_untagged_ones_stay_fast() -> None:
    router = litellm.Router(model_list=[mock_deployment("a"), mock_deployment("b")], num_retries=0)
    with install(router) as handle:
        await _served(router, 3)
        before = handle.stats()
        await _served(router, 2, metadata={"tags": ["x"]})
        after = handle.stats()
        assert after["picks_healthy"] - before["picks_healthy"] == 2
        assert after["picks_fast"] == before["picks_fast"]


async def test_another_callbacks_filter_is_honoured() -> None:
    router = litellm.Router(
        model_list=[mock_deployment("best", quality=0.9), mock_deployment("other", quality=0.1)], num_retries=0
    )
    dropper = DropBest()
    litellm.callbacks.append(dropper)
    try:
        with install(router, strategy="quality-optimal") as handle:
            assert await _served(router, 4) == {"other": 4}
            assert handle.strategy is not None
            assert "DropBest filters deployments" in str(handle.strategy.auto_status()["g"]["reason"])
    finally:
        _remove_callback(dropper)


async def test_the_comparison_alone_catches_a_filter_the_static_checks_do_not_know(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Blind the static checks to ``order``: comparing with LiteLLM's own answer still finds the difference."""
    monkeypatch.setattr(_candidates, "NARROWING_PARAMS", frozenset())
    best, other = mock_deployment("best", quality=0.9), mock_deployment("other", quality=0.1)
    _order(best, other)
    router = litellm.Router(model_list=[best, other], num_retries=0)
    with install(router, strategy="quality-optimal") as handle:
        assert await _served(router, 5) == {"other": 5}
        assert handle.stats()["auto_mismatches"] == 1
        assert handle.stats()["picks_fast"] == 0
        assert handle.strategy is not None
        assert "differs from the group minus cooldowns" in str(handle.strategy.auto_status()["g"]["reason"])


async def test_the_verdict_is_rechecked_every_second_and_after_a_deployment_change() -> None:
    clock = ManualClock()
    router = litellm.Router(
        model_list=[mock_deployment("best", quality=0.9), mock_deployment("other", quality=0.1)], num_retries=0
    )
    dropper = DropBest()
    with install(router, strategy="quality-optimal", clock=clock) as handle:
        assert handle.strategy is not None
        await _served(router, 3)
        assert handle.stats()["auto_checks"] == 1
        clock.advance(0.5)
        await _served(router, 2)
        assert handle.stats()["auto_checks"] == 1  # the verdict holds for recheck_s (1 s)
        litellm.callbacks.append(dropper)  # a filter appears at run time ...
        try:
            clock.advance(0.6)
            assert await _served(router, 4) == {"other": 4}  # ... and is honoured from the next check on
            assert handle.stats()["auto_checks"] == 2
            assert handle.strategy.auto_status()["g"]["fast"] is False
        finally:
            _remove_callback(dropper)
        clock.advance(1.1)
        await _served(router, 1)
        assert handle.strategy.auto_status()["g"] == {"fast": True, "reason": None}  # gone again: fast again
        router.apply(ChangeSet(upsert=[Deployment(**mock_deployment("late", quality=0.95))]))
        assert await _served(router, 2) == {"late": 2}  # no clock change: the registry version triggered it
        assert handle.stats()["auto_checks"] == 4


async def test_candidate_modes_are_explicit_choices_too() -> None:
    best, other = mock_deployment("best", quality=0.9), mock_deployment("other", quality=0.1)
    _order(best, other)
    router = litellm.Router(model_list=[best, other], num_retries=0)
    with install(router, strategy="quality-optimal", candidates="group") as handle:
        # "group" ignores LiteLLM's order groups by design (documented): the best deployment wins
        assert await _served(router, 3) == {"best": 3}
        assert handle.stats()["picks_fast"] == 3 and handle.stats()["auto_checks"] == 0
    with install(router, strategy="quality-optimal", candidates="healthy") as handle:
        assert await _served(router, 3) == {"other": 3}
        assert handle.stats()["picks_healthy"] == 3 and handle.stats()["auto_checks"] == 0


async def test_a_cooldown_set_outside_this_process_is_seen_within_the_refresh_time() -> None:
    """The cheap source reuses LiteLLM's cooldown list for ``cooldown_refresh_s`` unless a failure event arrives
    (a cooldown set by another replica, as here directly in LiteLLM's cooldown store, comes without one)."""
    router = litellm.Router(
        model_list=[mock_deployment("best", quality=0.9), mock_deployment("other", quality=0.1)], num_retries=0
    )
    clock = ManualClock()
    with install(router, strategy="quality-optimal", clock=clock) as handle:
        assert handle.strategy is not None
        handle.strategy.cooldown_refresh_s = 0.6
        assert await _served(router, 3) == {"best": 3}
        RoutingContext(router).health().cooldowns.add_deployment_to_cooldown("best", Exception("503"), 503, 30.0)
        clock.advance(0.5)
        assert await _served(router, 1) == {"best": 1}  # the list read 0.5 s ago is still used
        clock.advance(0.15)  # the installation's clock, not wall time: no sleep
        assert await _served(router, 3) == {"other": 3}
        assert handle.stats()["picks_fast"] == 6  # all but the first, comparing pick
