"""Fixtures for the LiteLLM adapter on LiteLLM before 1.109 (``set_custom_routing_strategy``): real Routers of
the pinned old LiteLLM (scripts/setup.sh), simulated providers over real HTTP (``tests/adapters/litellm_fixtures.py``,
shared with the main suite)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER
from litellm_fixtures import make_sim, outcomes, remove_leftover_callbacks, room_for_router_callbacks

__all__ = [
    "litellm_logging_worker_per_loop",
    "make_sim",
    "outcomes",
    "remove_leftover_callbacks",
    "room_for_router_callbacks",
]

# LiteLLM 1.80's logging worker (litellm_core_utils/logging_worker.py) predates the event-loop handling later
# releases have (1.108: ``_bound_loop``, a fresh queue and worker on a loop change).
_WORKER_WITHOUT_LOOP_HANDLING = not hasattr(GLOBAL_LOGGING_WORKER, "_bound_loop")


@pytest.fixture(autouse=True)
async def litellm_logging_worker_per_loop() -> AsyncIterator[None]:
    """On LiteLLM 1.80: each test's event loop gets its own logging worker, idle when the loop closes.

    1.80's ``GLOBAL_LOGGING_WORKER`` (every async success event goes through it: ``utils.py:871``,
    ``_client_async_logging_helper``) keeps the ``asyncio.Queue`` of the first loop that used it
    (``logging_worker.py:50-59``); pytest-asyncio gives each test a new loop, where that queue raises "bound to
    a different event loop" once empty. And a loop closed while the worker runs an event can hang for good:
    ``Runner.close()`` cancels the worker inside ``asyncio.wait_for`` (``logging_worker.py:72``), which on
    Python 3.11 drops the cancellation when the awaited callback finishes at the same moment, so the worker
    waits on its queue again and the close never returns (plain LiteLLM 1.80 does the same under
    ``asyncio.run``; README, *LiteLLM versions*). So: a fresh queue and worker for each test's loop, as later
    releases do, and at the end of the test wait (bounded) until the worker has finished what was queued.
    """
    if not _WORKER_WITHOUT_LOOP_HANDLING:
        yield
        return
    worker = GLOBAL_LOGGING_WORKER
    if worker._worker_task is None or worker._worker_task.done():
        worker._queue = None
        worker._worker_task = None
    yield
    deadline = time.monotonic() + 5.0
    while worker._queue is not None and worker._queue._unfinished_tasks and time.monotonic() < deadline:  # type: ignore[attr-defined]
        await asyncio.sleep(0.005)
