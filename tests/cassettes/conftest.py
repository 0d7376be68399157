"""Fixtures for replaying the provider cassettes through a real ``litellm.Router``."""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

from typing import Any

import pytest

from ._helpers import CASSETTE_DIR, FILTER_HEADERS, MATCH_ON, model_list


@pytest.fixture(scope="session")
def vcr_config() -> dict[str, Any]:
    """The shared vcrpy settings (the name pytest-recording looks for); ``make_vcr()`` applies them."""
    return {
        "cassette_library_dir": str(CASSETTE_DIR),
        "record_mode": "none",
        "match_on": list(MATCH_ON),
        "filter_headers": list(FILTER_HEADERS),
    }


@pytest.fixture
def router() -> Any:
    """A real ``litellm.Router`` with one OpenAI and one Anthropic deployment, no retries."""
    import litellm

    return litellm.Router(model_list=model_list(), num_retries=0)
