"""The request load: a deterministic plan of requests, and the driver that fires it at a contender.

The plan depends only on the scenario (seed, rate, duration, streaming share, token sizes), so every
contender receives exactly the same requests at the same offsets from its own start.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from .scenario import ChaosScenario

__all__ = ["CallResult", "LoadClock", "PlannedRequest", "Reply", "drive", "plan_requests", "provider_of"]

_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One request of the plan."""

    index: int
    at_s: float
    """When to send it, seconds since the load started."""
    stream: bool
    prompt: str
    max_tokens: int

    @property
    def messages(self) -> list[dict[str, str]]:
        """OpenAI-style messages."""
        return [{"role": "user", "content": self.prompt}]


@dataclass(frozen=True, slots=True)
class Reply:
    """What a contender got back for one request."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    first_token_s: float | None = None
    """Load-clock time of the first content chunk of a stream."""


@dataclass(frozen=True, slots=True)
class CallResult:
    """One request as the caller saw it. Times are seconds since the load started."""

    index: int
    scheduled_s: float
    started_s: float
    ended_s: float
    stream: bool
    ok: bool
    provider: str | None = None
    """The provider that answered (from the reply; the simulator names itself in the first token)."""
    ttft_s: float | None = None
    """Time to first token from the scheduled time (successful streams only)."""
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None

    @property
    def latency_s(self) -> float:
        """Caller-visible latency: from the scheduled send time to the complete answer (or the error)."""
        return self.ended_s - self.scheduled_s


def _prompt(rng: random.Random, index: int, tokens: int) -> str:
    # The simulator estimates ~4 characters per token plus 3 per message.
    chars = max(4, (tokens - 3) * 4)
    words = [f"Request {index}:"]
    length = len(words[0])
    while length < chars:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:chars]


def plan_requests(scenario: ChaosScenario) -> tuple[PlannedRequest, ...]:
    """The scenario's requests in send order (seeded: the same plan for every contender)."""
    load = scenario.load
    rng = random.Random(f"chaos-load\x1f{scenario.seed}")
    plan: list[PlannedRequest] = []
    t = 0.0
    while True:
        # Uniform times are computed from the index, so float drift cannot add or drop a request.
        t = t + rng.expovariate(load.rate_rps) if load.arrival == "poisson" else (len(plan) + 1) / load.rate_rps
        if t >= load.duration_s:
            break
        index = len(plan)
        stream = rng.random() < load.stream_share
        plan.append(
            PlannedRequest(
                index=index,
                at_s=t,
                stream=stream,
                prompt=_prompt(rng, index, load.input_tokens),
                max_tokens=load.output_tokens,
            )
        )
    return tuple(plan)


Call = Callable[[PlannedRequest], Awaitable[Reply]]
RunTime = Callable[[], float]
"""Seconds since the run started (a :class:`LoadClock`); what contenders read to time their calls."""


def provider_of(text: str, known: Sequence[str]) -> str | None:
    """The provider named by the first word of a simulator reply, if it is one of ``known``."""
    first = text.split(maxsplit=1)[0] if text.strip() else ""
    return first if first in known else None


async def drive(
    plan: Sequence[PlannedRequest],
    call: Call,
    *,
    clock: RunTime,
    providers: Sequence[str],
    concurrency: int,
    on_result: Callable[[CallResult], None] | None = None,
) -> list[CallResult]:
    """Send every planned request at its time (at most ``concurrency`` in flight); wait for all answers.

    ``clock`` returns seconds since the load started. A request whose call raises is a failure;
    the exception's type name is kept.
    """
    limit = asyncio.Semaphore(concurrency)
    results: list[CallResult] = []
    tasks: set[asyncio.Task[None]] = set()

    async def one(request: PlannedRequest) -> None:
        try:
            started = clock()
            try:
                reply = await call(request)
            except Exception as exc:
                result = CallResult(
                    request.index, request.at_s, started, clock(), request.stream, False, error=type(exc).__name__
                )
            else:
                ended = clock()
                provider = provider_of(reply.text, providers)
                ttft = None
                if request.stream and reply.first_token_s is not None:
                    ttft = reply.first_token_s - request.at_s
                result = CallResult(
                    request.index,
                    request.at_s,
                    started,
                    ended,
                    request.stream,
                    provider is not None,
                    provider,
                    ttft,
                    reply.input_tokens,
                    reply.output_tokens,
                    None if provider is not None else "UnrecognisedReply",
                )
            results.append(result)
            if on_result is not None:
                on_result(result)
        finally:
            limit.release()

    for request in plan:
        delay = request.at_s - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        await limit.acquire()
        task = asyncio.create_task(one(request))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))
    results.sort(key=lambda r: r.index)
    return results


class LoadClock:
    """Seconds since :meth:`restart` on the monotonic clock; shared by the simulator and the driver."""

    def __init__(self) -> None:
        self._origin = time.monotonic()

    def restart(self) -> float:
        """Make now t = 0; returns the origin (a ``time.monotonic()`` value, the same in every process)."""
        self._origin = time.monotonic()
        return self._origin

    def __call__(self) -> float:
        return time.monotonic() - self._origin
