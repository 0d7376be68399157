"""Deterministic per-request decisions: which outcome, how long to wait, how many tokens.

The n-th request to a provider draws from ``random.Random`` seeded by a SHA-256 of
``(seed, provider name, n)``, always in the same order, so the decision depends only on those three
values and the behaviour in force — never on timing, threads or Python's randomised ``hash()``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass

from .models import Behaviour, FaultWindow, SimOutcome

__all__ = ["Decision", "decide", "effective_behaviour", "request_rng"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the simulator will do with one request."""

    n: int
    outcome: SimOutcome
    stream: bool
    latency_s: float
    """Wait before answering a non-streaming request (or before its error)."""
    ttft_s: float
    """Wait before the first chunk of a stream (or before its error)."""
    token_interval_s: float
    completion_tokens: int
    retry_after_s: float
    hang_s: float
    stream_cut_after_chunks: int
    rejected_at: int | None = None
    """The concurrency limit that turned this request away at once (429, no Retry-After); else ``None``."""
    holds_slot: bool = False
    """Whether the request counts as in flight at its provider until it is answered."""

    def wait_s(self) -> float:
        """Delay before the first byte of the response: TTFT for streams, latency otherwise."""
        return self.ttft_s if self.stream else self.latency_s


def request_rng(seed: int, provider: str, n: int) -> random.Random:
    """The random source for request ``n`` to ``provider`` under ``seed`` (stable across runs)."""
    digest = hashlib.sha256(f"{seed}\x1f{provider}\x1f{n}".encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def effective_behaviour(base: Behaviour, faults: Iterable[FaultWindow], t: float) -> Behaviour:
    """The behaviour at time ``t``: ``base`` with every active fault window applied in order."""
    update: dict[str, object] = {}
    multiplier = base.latency_multiplier
    for window in faults:
        if not window.active_at(t):
            continue
        if window.error_rate is not None:
            update["error_rate"] = window.error_rate
        if window.errors is not None:
            update["errors"] = window.errors
        if window.retry_after_s is not None:
            update["retry_after_s"] = window.retry_after_s
        if window.max_concurrent is not None:
            update["max_concurrent"] = window.max_concurrent
        multiplier *= window.latency_multiplier
    if not update and multiplier == base.latency_multiplier:
        return base
    update["latency_multiplier"] = multiplier
    # Values were validated when the windows were built; model_copy skips re-validation.
    return base.model_copy(update=update)


def _pick_error(behaviour: Behaviour, u: float) -> SimOutcome:
    # Enum order, not dict order, so equal mixes written differently pick the same kind.
    kinds = [k for k in SimOutcome if behaviour.errors.get(k, 0.0) > 0]
    total = sum(behaviour.errors[k] for k in kinds)
    threshold = u * total
    running = 0.0
    for kind in kinds:
        running += behaviour.errors[kind]
        if threshold < running:
            return kind
    return kinds[-1]


def decide(
    seed: int,
    provider: str,
    n: int,
    behaviour: Behaviour,
    forced: SimOutcome | None = None,
    *,
    stream: bool = False,
) -> Decision:
    """Decide request ``n``'s fate; ``forced`` overrides the outcome but not the timing draws."""
    rng = request_rng(seed, provider, n)
    u_error = rng.random()
    u_kind = rng.random()
    z_latency = rng.gauss(0.0, 1.0)
    z_ttft = rng.gauss(0.0, 1.0)
    tail = behaviour.slow_tail
    slow = tail is not None and rng.random() < tail.share  # drawn last: other draws stay as they were

    if forced is not None:
        outcome = forced
    elif behaviour.error_rate > 0 and u_error < behaviour.error_rate:
        outcome = _pick_error(behaviour, u_kind)
    else:
        outcome = SimOutcome.SUCCESS

    scale = behaviour.latency_multiplier / 1000.0
    if slow:
        assert tail is not None
        scale *= tail.multiplier
    cold = behaviour.cold_start
    setup_s = cold.extra_ms / 1000.0 if cold is not None and n < cold.requests else 0.0
    latency_s = behaviour.latency.sample_ms(z_latency) * scale + setup_s
    ttft_dist = behaviour.ttft if behaviour.ttft is not None else behaviour.latency
    ttft_s = ttft_dist.sample_ms(z_ttft if behaviour.ttft is not None else z_latency) * scale + setup_s
    tps = behaviour.tokens_per_second
    return Decision(
        n=n,
        outcome=outcome,
        stream=stream,
        latency_s=latency_s,
        ttft_s=ttft_s,
        token_interval_s=0.0 if tps is None else 1.0 / tps,
        completion_tokens=behaviour.response_tokens,
        retry_after_s=behaviour.retry_after_s,
        hang_s=behaviour.hang_s,
        stream_cut_after_chunks=behaviour.stream_cut_after_chunks,
    )
