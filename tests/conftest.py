"""Suite-wide settings: no network lookups from litellm, ever; the project's wheel for the packaging tests."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest
from wheel_support import BuiltWheel, build_wheel


@pytest.fixture(scope="session")
def project_wheel(tmp_path_factory: pytest.TempPathFactory) -> BuiltWheel:
    """The project's wheel, built once per test process."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))
