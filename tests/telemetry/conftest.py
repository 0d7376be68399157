from __future__ import annotations

from collections.abc import Iterator

import pytest
from otel_support import Otel
from pi_builder_middleware.testing import SimProvider, Simulator


@pytest.fixture
def otel() -> Otel:
    return Otel()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """Two simulated providers, ``a`` and ``b``, on 127.0.0.1."""
    with Simulator([SimProvider(name="a"), SimProvider(name="b")], seed=7) as simulator:
        yield simulator
