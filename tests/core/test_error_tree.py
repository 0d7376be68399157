"""One error tree: an unknown provider has its own error, and every error raised on purpose is a PiBuilderError."""

from __future__ import annotations

import pytest
from pi_builder_middleware.adapters.langchain import FirstChunkTimeoutError as AdapterFirstChunkTimeoutError
from pi_builder_middleware.testing import SimProvider, Simulator, SimulatorConfigError, SimulatorStateError

from pi_builder_middleware import (
    AttemptTimeoutError,
    ConfigError,
    FailoverManager,
    FirstChunkTimeoutError,
    Middleware,
    PiBuilderError,
    Provider,
    UnknownProviderError,
)


def test_an_unknown_provider_is_an_unknown_provider_error_everywhere() -> None:
    mw = Middleware([Provider(id="a")])
    for call in (
        lambda: mw.router.provider("gone"),
        lambda: mw.monitor.metrics("gone"),
        lambda: mw.failover.state("gone"),
        lambda: mw.health("gone"),
    ):
        with pytest.raises(UnknownProviderError) as info:
            call()
        assert isinstance(info.value, ConfigError) and info.value.provider_id == "gone"
        assert info.value.field == "provider_id" and "unknown provider 'gone'" in str(info.value)


def test_other_config_errors_are_not_taken_for_a_removed_provider() -> None:
    manager = FailoverManager()
    with pytest.raises(ConfigError) as info:
        manager.record("a", ok="yes")  # type: ignore[arg-type]
    assert not isinstance(info.value, UnknownProviderError)


def test_timeouts_and_simulator_errors_are_in_the_tree() -> None:
    assert AdapterFirstChunkTimeoutError is FirstChunkTimeoutError
    error = FirstChunkTimeoutError("a", 2.0)
    assert isinstance(error, AttemptTimeoutError) and isinstance(error, TimeoutError)
    assert error.provider_id == "a" and "first_chunk_timeout_s" in str(error)
    with pytest.raises(SimulatorConfigError) as bad:
        Simulator([SimProvider(name="a"), SimProvider(name="a")])
    assert isinstance(bad.value, ConfigError) and isinstance(bad.value, ValueError) and bad.value.problems
    assert bad.value.field == bad.value.problems[0][0]
    assert issubclass(SimulatorStateError, PiBuilderError) and issubclass(SimulatorStateError, RuntimeError)
