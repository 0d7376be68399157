"""RecoveryWait on a manual clock: how long the attempt loop sleeps between passes (``max_wait_s``)."""

from __future__ import annotations

import pytest
from core_support import HTTPError

from pi_builder_middleware import (
    AllProvidersFailedError,
    Attempt,
    ErrorKind,
    FailoverConfig,
    FailoverManager,
    ManualClock,
    NoProviderAvailableError,
)
from pi_builder_middleware.recovery import RecoveryWait


@pytest.fixture
def fm(clock: ManualClock) -> FailoverManager:
    config = FailoverConfig.preset("aggressive", base_ejection_s=0.2, jitter=0.0, half_open_permit_timeout_s=30.0)
    manager = FailoverManager(config, clock=clock)
    for pid in ("a", "b"):
        manager.add_provider(pid)
    return manager


def trip(fm: FailoverManager, pid: str) -> None:
    fm.record(pid, False, ErrorKind.SERVER_ERROR)
    fm.record(pid, False, ErrorKind.SERVER_ERROR)


def failed(*pids: str) -> AllProvidersFailedError:
    return AllProvidersFailedError([Attempt(pid, HTTPError(503), ErrorKind.SERVER_ERROR, 0.01) for pid in pids])


NOBODY = NoProviderAvailableError({"a": "circuit open", "b": "circuit open"})


def test_wait_sleeps_until_the_first_ejection_ends(fm, clock):
    trip(fm, "a")
    clock.advance(0.1)
    trip(fm, "b")
    wait = RecoveryWait(fm, ["a", "b"], 1.0, clock)
    assert wait.delay(NOBODY) == pytest.approx(0.1)  # a is back at +0.2 s from its trip


def test_wait_backs_off_doubling_while_providers_are_available_but_failing(fm, clock):
    wait = RecoveryWait(fm, ["a", "b"], 10.0, clock)
    delays = []
    for _ in range(4):
        delays.append(wait.delay(failed("a", "b")))
        clock.advance(delays[-1] or 0.0)
    assert delays == pytest.approx([0.05, 0.1, 0.2, 0.4])


def test_wait_gives_up_when_nobody_is_back_before_the_deadline(fm, clock):
    trip(fm, "a")
    trip(fm, "b")
    assert RecoveryWait(fm, ["a", "b"], 0.15, clock).delay(NOBODY) is None
    assert RecoveryWait(fm, ["a", "b"], 0.0, clock).delay(failed("a")) is None  # max_wait_s=0: never waits


def test_wait_never_sleeps_past_the_deadline_nor_longer_in_total_than_max_wait(fm, clock):
    wait = RecoveryWait(fm, ["a"], 0.12, clock)
    assert wait.delay(failed("a")) == pytest.approx(0.05)
    assert wait.delay(failed("a")) == pytest.approx(0.07)  # the backoff (0.1) is cut at the deadline
    assert wait.delay(failed("a")) is None  # the clock never moved, but 0.12 s were slept


def test_wait_polls_a_half_open_provider_whose_trial_permit_is_taken(fm, clock):
    trip(fm, "a")
    clock.advance(0.2)
    assert fm.acquire("a")  # another call's trial: available_at says +30 s (the permit timeout) ...
    wait = RecoveryWait(fm, ["a"], 1.0, clock)
    assert wait.delay(NoProviderAvailableError({"a": "half-open with 1 trial call(s) in flight"})) == 0.05


def test_wait_ignores_providers_that_selection_excluded_for_other_reasons(fm, clock):
    trip(fm, "a")
    wait = RecoveryWait(fm, ["a", "b"], 1.0, clock)  # b is healthy: excluded by a filter, not by its breaker
    nobody = NoProviderAvailableError({"a": "circuit open", "b": "missing capabilities"})
    assert wait.delay(nobody) == pytest.approx(0.2)


def test_giving_up_after_selection_found_nobody_still_lists_the_earlier_attempts(fm, clock):
    wait = RecoveryWait(fm, ["a", "b"], 1.0, clock)
    assert wait.give_up(NOBODY, []) is NOBODY  # no attempt was made: the selection's reasons are the news
    error = wait.give_up(NOBODY, failed("a", "b").attempts)
    assert isinstance(error, AllProvidersFailedError)
    assert [a.provider_id for a in error.attempts] == ["a", "b"]
