"""The samples and running totals of one provider's window (the monitor's bookkeeping)."""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

from .enums import AlertKind, HealthStatus
from .interfaces import Candidate, Verdict

__all__ = ["Sample", "Window"]


class Sample(NamedTuple):
    """One recorded outcome in a provider's window."""

    at: float  # the monitor's clock
    verdict: Verdict
    latency_s: float
    ttft_s: float | None
    input_tokens: int
    output_tokens: int
    cost: float


# Module constants: compared by identity on the hot path (no enum attribute lookup per sample).
OK, FAIL, RATE = Verdict.OK, Verdict.FAILED, Verdict.RATE_LIMITED


class Window:
    """Samples and running totals for one provider.

    Removing a value that made up most of a float total leaves its rounding error behind (1e9 + 0.1 -
    1e9 is not 0.1): :meth:`remove` then recounts the float totals exactly (``math.fsum``) from what is
    left, so an outlier that left the window leaves no residue. Integer totals are exact anyway.
    """

    __slots__ = (
        "active_alerts",
        "calls",
        "candidate",
        "cost",
        "errors",
        "failures",
        "latency_ok_sum",
        "lifetime_calls",
        "ok_latency_n",
        "rate_limited",
        "samples",
        "status",
        "successes",
        "tokens_in",
        "tokens_out",
        "ttft_n",
        "ttft_sum",
    )

    def __init__(self, candidate: Candidate) -> None:
        self.samples: deque[Sample] = deque()
        self.candidate = candidate
        self.calls = self.successes = self.failures = self.errors = self.rate_limited = 0
        self.tokens_in = self.tokens_out = self.ok_latency_n = self.ttft_n = self.lifetime_calls = 0
        self.cost = self.latency_ok_sum = self.ttft_sum = 0.0
        self.status = HealthStatus.UNKNOWN
        self.active_alerts: set[AlertKind] = set()

    def add(self, sample: Sample) -> None:
        """Count a new sample."""
        _, verdict, latency, ttft, t_in, t_out, cost = sample
        self.calls += 1
        if verdict is OK:
            self.successes += 1
            self.ok_latency_n += 1
            self.latency_ok_sum += latency
        else:
            self.errors += 1
            if verdict is FAIL:
                self.failures += 1
            elif verdict is RATE:
                self.rate_limited += 1
        if ttft is not None:
            self.ttft_n += 1
            self.ttft_sum += ttft
        self.tokens_in += t_in
        self.tokens_out += t_out
        self.cost += cost

    def remove(self, sample: Sample) -> None:
        """Uncount a sample that left the window (already taken out of ``samples``)."""
        _, verdict, latency, ttft, t_in, t_out, cost = sample
        # residue: the value made up most of a float total (see the class docstring); outliers only
        total = self.cost - cost
        self.cost = total
        residue = cost > total
        self.calls -= 1
        if verdict is OK:
            self.successes -= 1
            self.ok_latency_n -= 1
            total = self.latency_ok_sum - latency
            self.latency_ok_sum = total
            residue = residue or latency > total
        else:
            self.errors -= 1
            if verdict is FAIL:
                self.failures -= 1
            elif verdict is RATE:
                self.rate_limited -= 1
        if ttft is not None:
            self.ttft_n -= 1
            total = self.ttft_sum - ttft
            self.ttft_sum = total
            residue = residue or ttft > total
        self.tokens_in -= t_in
        self.tokens_out -= t_out
        if residue:
            self.recount()

    def recount(self) -> None:
        """Float totals recomputed exactly (``math.fsum``) from the samples in the window."""
        samples = self.samples
        self.cost = math.fsum(s.cost for s in samples)
        self.latency_ok_sum = math.fsum(s.latency_s for s in samples if s.verdict is OK)
        self.ttft_sum = math.fsum(s.ttft_s for s in samples if s.ttft_s is not None)

    @property
    def availability(self) -> float:
        verdicts = self.successes + self.failures
        return self.successes / verdicts if verdicts else 1.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0
