"""The request path: a provider that answered is never lost, and no user callback breaks a request."""

from __future__ import annotations

import pytest

from pi_builder_middleware import (
    AllProvidersFailedError,
    ErrorKind,
    FailoverConfig,
    ManualClock,
    Middleware,
    Provider,
    StreamInterruptedError,
)


class Unprintable(Exception):
    """An exception whose ``__str__`` raises (seen with SDK errors built from a broken response)."""

    def __init__(self, status_code: int = 500) -> None:
        super().__init__()
        self.status_code = status_code

    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


def chain(clock: ManualClock, *ids: str, **kw: object) -> Middleware:
    """Strategy failover over ``ids`` (a first); two failures eject for 5 s, one success closes a half-open breaker."""
    config = FailoverConfig.preset("aggressive", base_ejection_s=5.0, jitter=0.0, recovery_successes=1)
    return Middleware([Provider(id=pid) for pid in ids or ("a", "b")], strategy="failover", failover=config,
                      clock=clock, load_entrypoints=False, **kw)  # type: ignore[arg-type]


# -- error messages ------------------------------------------------------------------------------


def test_every_provider_failing_with_an_unprintable_error_still_raises_all_providers_failed(clock):
    mw = chain(clock)

    def call(provider: Provider) -> str:
        raise Unprintable(503)

    with pytest.raises(AllProvidersFailedError) as info:
        mw.execute(call)
    assert [(a.provider_id, a.error_kind) for a in info.value.attempts] == [
        ("a", ErrorKind.OVERLOADED), ("b", ErrorKind.OVERLOADED)]
    assert "Unprintable: <unprintable>" in str(info.value)
    assert isinstance(info.value.__cause__, Unprintable)


def test_a_stream_interrupted_by_an_unprintable_error_has_a_message():
    error = StreamInterruptedError("a", 3, Unprintable())
    assert str(error) == "stream from 'a' failed after 3 chunk(s): Unprintable: <unprintable>"
