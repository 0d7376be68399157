"""Fixtures for the LiteLLM adapter on LiteLLM before 1.109 (``set_custom_routing_strategy``): real Routers of
the pinned old LiteLLM (scripts/setup.sh), simulated providers over real HTTP (``tests/adapters/litellm_fixtures.py``,
shared with the main suite)."""

from __future__ import annotations

from litellm_fixtures import make_sim, outcomes, remove_leftover_callbacks

__all__ = ["make_sim", "outcomes", "remove_leftover_callbacks"]
