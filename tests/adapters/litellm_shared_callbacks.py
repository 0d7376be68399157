"""The logger keeps its events when LiteLLM's callback lists are full.

LiteLLM copies a logger from ``litellm.callbacks`` into its success/failure lists on the next call, but refuses
once a list holds ``MAX_CALLBACKS`` entries (1.80: 30; 1.108+: 100), and before 1.110 every Router leaves its own
callbacks there for good: a process that built enough Routers would silence the middleware. Collected by the
main suite only for now: run on LiteLLM 1.80 it passes, but the latency-routing case after it then sometimes
sees traffic spread evenly (not yet understood).
"""

from __future__ import annotations

import logging
from typing import Any

import litellm
from litellm_support import CALLBACK_LISTS, MESSAGES, async_wait_until, mock_deployment, served_by
from pi_builder_middleware.adapters.litellm import MiddlewareCallback, _registration, install

__all__ = ["test_full_litellm_callback_lists_do_not_silence_the_logger"]


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


async def _async_ignore(*args: Any, **kwargs: Any) -> None:
    return None


async def test_full_litellm_callback_lists_do_not_silence_the_logger(caplog) -> None:
    limit = _registration.callback_limit()
    assert limit is not None
    before = {name: list(getattr(litellm, name)) for name in CALLBACK_LISTS}
    for name in _registration.PROMOTED_LISTS:  # full, as after many Routers
        entries = getattr(litellm, name)
        entries.extend([_async_ignore if name.startswith("_async") else _ignore] * max(0, limit - len(entries)))
    caplog.set_level(logging.WARNING, logger="pi_builder_middleware.adapters.litellm")
    try:
        router = litellm.Router(model_list=[mock_deployment("a"), mock_deployment("b")], num_retries=0)
        with install(router, strategy="latency-optimal") as handle:
            assert "MAX_CALLBACKS" in caplog.text
            for _ in range(3):
                assert served_by(await router.acompletion(model="g", messages=MESSAGES)) in {"a", "b"}
            router.completion(model="g", messages=MESSAGES)
            await async_wait_until(lambda: handle.stats().get("recorded_ok", 0) == 4)
        assert not any(isinstance(c, MiddlewareCallback) for name in CALLBACK_LISTS for c in getattr(litellm, name))
    finally:
        for name, entries in before.items():  # the lists exactly as they were
            getattr(litellm, name)[:] = entries
