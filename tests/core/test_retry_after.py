"""Retry-After is read from anything a provider sends without ever raising, and is always a usable number.

The rule: a value that says nothing (NaN, unparsable, a header mapping that raises) is absent (None);
a negative one means "now" (0); anything longer than the bound (infinite, 10**400, a date in year 9999)
is the bound, ``FailoverConfig.max_rate_limit_cooldown_s`` (300 s by default).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pi_builder_middleware import (
    CircuitState,
    ErrorKind,
    FailoverConfig,
    ManualClock,
    Middleware,
    Outcome,
    Provider,
    extract_retry_after,
    parse_retry_after,
)
from pi_builder_middleware.errorinfo import RETRY_AFTER_LIMIT_S, status_code_of


class RateLimited(Exception):
    def __init__(self, headers: object = None, **attrs: object) -> None:
        super().__init__("429 Too Many Requests")
        self.status_code = 429
        if headers is not None:
            self.headers = headers
        for name, value in attrs.items():
            setattr(self, name, value)


class RaisingHeaders:
    """A header mapping whose ``get`` raises (a lazily decoded response that turned out corrupt)."""

    def get(self, key: str, default: object = None) -> object:
        raise RuntimeError("header block is corrupt")


def chain(clock: ManualClock) -> Middleware:
    config = FailoverConfig.preset("aggressive", jitter=0.0)
    return Middleware(
        [Provider(id="a"), Provider(id="b")], strategy="failover", failover=config, clock=clock, load_entrypoints=False
    )


# -- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("nan", None),
        (float("nan"), None),
        ("NaN", None),
        ("soon", None),
        ("", None),
        (None, None),
        (True, None),
        ("inf", RETRY_AFTER_LIMIT_S),
        ("1e999", RETRY_AFTER_LIMIT_S),
        (float("inf"), RETRY_AFTER_LIMIT_S),
        (10**400, RETRY_AFTER_LIMIT_S),
        ("9" * 500, RETRY_AFTER_LIMIT_S),
        ("Fri, 31 Dec 9999 23:59:59 GMT", RETRY_AFTER_LIMIT_S),
        ("-inf", 0.0),
        (-5, 0.0),
        ("-1e999", 0.0),
        (-(10**400), 0.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("7", 7.0),
        (" 2.5 ", 2.5),
        (12, 12.0),
        (b"3", 3.0),
    ],
)
def test_parse_retry_after_is_none_or_a_finite_number_within_the_bound(value, expected):
    assert parse_retry_after(value) == expected


def test_the_bound_is_the_failover_configs_default_and_can_be_given():
    assert FailoverConfig().max_rate_limit_cooldown_s == RETRY_AFTER_LIMIT_S
    assert parse_retry_after("inf", limit_s=30.0) == 30.0
    assert parse_retry_after("12", limit_s=30.0) == 12.0


@given(
    st.one_of(st.text(), st.floats(), st.integers(), st.binary(), st.none(), st.booleans()),
    st.floats(min_value=0.0, max_value=1e6),
)
def test_parse_retry_after_never_raises(value, limit):
    seconds = parse_retry_after(value, limit_s=limit)
    assert seconds is None or (math.isfinite(seconds) and 0.0 <= seconds <= limit)


def test_extract_retry_after_survives_headers_that_raise_and_falls_back_to_attributes():
    assert extract_retry_after(RateLimited(RaisingHeaders())) is None
    assert extract_retry_after(RateLimited(RaisingHeaders(), retry_after=4)) == 4.0
    assert status_code_of(RateLimited(RaisingHeaders())) == 429


def test_extract_retry_after_clamps_after_converting_milliseconds():
    assert extract_retry_after(RateLimited({"retry-after-ms": "1e999"})) == RETRY_AFTER_LIMIT_S
    assert extract_retry_after(RateLimited({"retry-after-ms": "nan", "retry-after": "3"})) == 3.0
    assert extract_retry_after(RateLimited({"retry-after-ms": "1500"})) == 1.5
    assert extract_retry_after(RateLimited(retry_after=10**400), limit_s=60.0) == 60.0


def test_extract_retry_after_survives_attributes_that_raise():
    class Hostile(Exception):
        @property
        def headers(self) -> object:
            raise RuntimeError("no headers for you")

        @property
        def status_code(self) -> int:
            raise RuntimeError("no status either")

    assert extract_retry_after(Hostile()) is None
    assert status_code_of(Hostile()) is None


# -- the request path ----------------------------------------------------------------------------


def test_a_429_whose_headers_raise_is_recorded_and_the_backup_answers(clock):
    mw = chain(clock)
    calls = []

    def call(provider: Provider) -> str:
        calls.append(provider.id)
        if provider.id == "a":
            raise RateLimited(RaisingHeaders())
        return "from b"

    assert mw.execute(call) == "from b"
    assert calls == ["a", "b"]
    assert mw.health("a").rate_limited == 1
    assert mw.failover.unavailable_reason("a") is not None  # cooling down (a backoff: no usable Retry-After)


def test_a_429_with_an_overflowing_retry_after_is_recorded_with_the_bound(clock):
    mw = chain(clock)

    def call(provider: Provider) -> str:
        if provider.id == "a":
            raise RateLimited(retry_after=10**400)
        return "from b"

    assert mw.execute(call) == "from b"
    bound = mw.failover.config.max_rate_limit_cooldown_s
    assert mw.health("a").cooldown_for_s == pytest.approx(bound)
    clock.advance(bound - 1)
    assert mw.select().provider.id == "b"
    clock.advance(2)
    assert mw.select().provider.id == "a"


def test_record_with_an_infinite_retry_after_header_cools_down_for_the_bound(clock):
    mw = chain(clock)
    kind = mw.record(Outcome("a", False, 0.1, error=RateLimited({"Retry-After": "inf"})))
    assert kind is ErrorKind.RATE_LIMITED
    assert mw.failover.state("a") is CircuitState.CLOSED
    assert mw.health("a").cooldown_for_s == pytest.approx(mw.failover.config.max_rate_limit_cooldown_s)
