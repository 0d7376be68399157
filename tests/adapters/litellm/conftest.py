"""Fixtures for the LiteLLM adapter tests: simulated providers over real HTTP, real Routers (shared with the
legacy suite in ``tests/adapters/litellm_fixtures.py``)."""

from __future__ import annotations

from litellm_fixtures import make_sim, outcomes, remove_leftover_callbacks, room_for_router_callbacks
from proxy_support import proxy_sim

__all__ = ["make_sim", "outcomes", "proxy_sim", "remove_leftover_callbacks", "room_for_router_callbacks"]
