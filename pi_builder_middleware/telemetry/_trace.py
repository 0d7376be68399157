"""One call of the attempt loop as telemetry sees it: the request span, one CLIENT span per attempt.

Spans exist only when OpenTelemetry is on (``hub.otel``); without it a :class:`RequestTrace` only counts
the call's failovers for the metric sinks. The attempt loop calls, in order: :meth:`RequestTrace.open`
(the request span becomes current: breaker events, waits and failovers land on it), per pass
:meth:`~RequestTrace.decided`, per attempt :meth:`~RequestTrace.attempt` (its CLIENT span is current
while the provider is called, so the framework's own spans nest under it) and one of
:meth:`AttemptTrace.failed`, :meth:`~AttemptTrace.cancelled` or :meth:`~AttemptTrace.answered`; an
answered attempt ends with :meth:`~AttemptTrace.succeeded` or :meth:`~AttemptTrace.interrupted`,
which ends the request; a call that raises ends with :meth:`RequestTrace.failed`.

A hedged call adds attempts beside the loop's: :meth:`RequestTrace.hedge` starts one (a child of the request
span, made current inside the hedge's own task with :meth:`AttemptTrace.enter` / :meth:`AttemptTrace.leave`);
an attempt cancelled because another answered first ends with :meth:`AttemptTrace.lost`; when a hedge wins,
:meth:`RequestTrace.hand_over` keeps the closing loop from ending the request, which the winner then ends.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from pi_builder_middleware.models import Attempt, Outcome, Provider, RouteRequest, RoutingDecision

from . import _names as n

if TYPE_CHECKING:
    from pi_builder_middleware.enums import ErrorKind

    from ._hub import Telemetry

__all__ = ["AttemptTrace", "RequestTrace", "traced"]


class RequestTrace:
    """Telemetry of one call: its span (when OpenTelemetry is on), its attempts and failovers."""

    __slots__ = ("_ended", "_handed", "_token", "attempts", "failovers", "hub", "span", "stream")

    def __init__(self, hub: Telemetry, request: RouteRequest | None) -> None:
        self.hub = hub
        self.attempts = 0
        self.failovers = 0
        self._ended = False
        self._handed = False
        self._token: object = None
        self.stream = request is not None and request.stream
        otel = hub.otel
        self.span: Any = otel.start_request(request) if otel is not None else None

    def open(self) -> None:
        """The request span becomes the current span (until :meth:`close`)."""
        if self.span is not None and self.hub.otel is not None:
            self._token = self.hub.otel.attach(self.span)

    def close(self) -> None:
        """The span current before :meth:`open` is current again (the request itself may go on: a stream)."""
        if self._token is not None and self.hub.otel is not None:
            self.hub.otel.detach(self._token)
            self._token = None

    def decided(self, decision: RoutingDecision) -> None:
        """A pass's routing decision: its reason goes on the request span."""
        if self.span is not None and self.hub.otel is not None:
            self.hub.otel.decided(self.span, decision)

    def attempt(self, provider: Provider) -> AttemptTrace:
        """An attempt on ``provider`` starts: its CLIENT span is current until it fails or answers."""
        self.attempts += 1
        if self.attempts > 1:
            self.failovers += 1
        return AttemptTrace(self, provider, self.attempts)

    def hedge(self, provider: Provider) -> AttemptTrace:
        """A hedge on ``provider`` starts beside the loop's attempt: its CLIENT span, not yet current."""
        self.attempts += 1
        return AttemptTrace(self, provider, self.attempts, hedge=True)

    def hand_over(self) -> None:
        """A hedge answered or may still answer: the loop ending without an answer does not end the request."""
        self._handed = True

    def take_back(self) -> None:
        """Undo :meth:`hand_over` (the loop went on, or its verdict ends the call after all)."""
        self._handed = False

    def waiting(self, seconds: float) -> None:
        """No provider answered this pass: the next one starts in ``seconds``."""
        if self.span is not None and self.hub.otel is not None:
            self.hub.otel.waiting(self.span, seconds)

    def failed(self, error: BaseException) -> None:
        """The call raises ``error`` (every provider failed, none was available, a bad request, cancelled)."""
        if self._handed:  # the loop closing behind a winning hedge: not the call's end
            self._handed = False
            return
        self._end(False, error)

    def _end(self, ok: bool, error: BaseException | None, provider_id: str | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        otel = self.hub.otel
        if self.span is not None and otel is not None:
            otel.end_request(self.span, self.attempts, self.failovers, provider_id, error)
        self.hub.request_ended(ok, self.failovers)


class AttemptTrace:
    """One attempt of a :class:`RequestTrace`."""

    __slots__ = ("_token", "number", "provider", "request", "span")

    def __init__(self, request: RequestTrace, provider: Provider, number: int, *, hedge: bool = False) -> None:
        self.request = request
        self.provider = provider
        self.number = number
        otel = request.hub.otel
        self.span: Any = None
        self._token: object = None
        if otel is not None:
            if hedge:  # runs in a task of its own: a child of the request span, made current there (enter)
                self.span = otel.start_attempt(provider, number, stream=request.stream, parent=request.span)
                self.span.set_attribute(n.ATTEMPT_HEDGE, True)
            else:
                self.span = otel.start_attempt(provider, number, stream=request.stream)
                self._token = otel.attach(self.span)

    def _detach(self) -> None:
        otel = self.request.hub.otel
        if self._token is not None and otel is not None:
            otel.detach(self._token)
            self._token = None

    def failed(self, error: BaseException, attempts: list[Attempt]) -> None:
        """The attempt raised ``error`` (already recorded: its breaker events are on this span)."""
        self._detach()
        kind = attempts[-1].error_kind if attempts and attempts[-1].error is error else None
        otel = self.request.hub.otel
        if self.span is not None and otel is not None:
            otel.end_attempt(self.span, None, error, kind)

    def cancelled(self, error: BaseException) -> None:
        """The attempt was cancelled or interrupted (no outcome recorded)."""
        self.failed(error, [])

    def lost(self) -> None:
        """Cancelled because another attempt of the request answered first: no error, marked as a lost race."""
        self._detach()
        otel = self.request.hub.otel
        if self.span is not None and otel is not None:
            self.span.set_attribute(n.ATTEMPT_LOST, True)
            otel.end_attempt(self.span, None, None, None)

    def answered(self) -> None:
        """The provider answered: its span stays open until the answer is delivered."""
        self._detach()

    def enter(self) -> object:
        """Make the attempt's span current again while its outcome is recorded; give the result to the end call."""
        otel = self.request.hub.otel
        return otel.attach(self.span) if self.span is not None and otel is not None else None

    def leave(self, token: object) -> None:
        """Undo :meth:`enter`."""
        otel = self.request.hub.otel
        if token is not None and otel is not None:
            otel.detach(token)

    def succeeded(self, outcome: Outcome | None, token: object = None) -> None:
        """The answer was delivered: ends the attempt and the request."""
        self._delivered(token, outcome, None, None)

    def interrupted(self, error: BaseException, kind: ErrorKind | None, token: object = None) -> None:
        """The delivery broke after the first chunk: ends the attempt and the request with ``error``."""
        self._delivered(token, None, error, kind)

    def _delivered(
        self, token: object, outcome: Outcome | None, error: BaseException | None, kind: ErrorKind | None
    ) -> None:
        """End the delivery (``token``: from :meth:`enter`): the attempt's span, then the request."""
        otel = self.request.hub.otel
        if otel is not None:
            if token is not None:
                otel.detach(token)
            if self.span is not None:
                otel.end_attempt(self.span, outcome, error, kind)
        self.request._end(error is None, error, self.provider.id)


def traced(steps: Generator[Any, Any, Any], trace: RequestTrace) -> Generator[Any, Any, Any]:
    """Run the attempt loop ``steps`` with ``trace`` open; a call that raises ends its request span."""
    trace.open()
    try:
        opened = yield from steps
    except BaseException as exc:
        trace.failed(exc)
        raise
    finally:
        trace.close()
    return opened
