from __future__ import annotations

import pytest
from otel_support import Otel


@pytest.fixture
def otel() -> Otel:
    return Otel()
