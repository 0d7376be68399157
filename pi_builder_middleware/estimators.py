"""Per-provider estimates that learn fast and forget: what routing reads instead of window averages.

- :class:`PeakEwma` (latency, TTFT): a sample above the estimate counts at once; lower samples pull it
  down with a time-based half-life (Finagle/Linkerd's peak-EWMA), and at least 10 % of the way each, so
  under heavy traffic one outlier fades within a few calls rather than a few half-lives. During a provider's first
  ``warmup`` samples the estimate is the *best* of them, so a connection-setup outlier on the first
  calls does not brand a fast provider as slow.
- :class:`DecayedBeta` (availability): a Beta posterior whose pseudo-counts decay with a half-life
  toward the prior, so it never reads 0 % or 100 % from a handful of calls and drifts back to the
  prior when a provider gets no traffic.
- :class:`DecayedCount` (recent failures, 429 pressure): a count that halves every half-life.
- :class:`Slowdown` (brownouts): how much slower than its usual self a provider answers now — a
  fast-moving average of the last few calls over a slow-moving baseline, so a provider that turns
  ten times slower reads ~5× after one call, while its usual speed is kept for minutes.

All take ``now`` from the caller's clock (no clock of their own) and are updated under the
monitor's lock; reads are cheap enough for the hot path (one ``exp`` at most).
"""

from __future__ import annotations

import math

__all__ = ["DecayedBeta", "DecayedCount", "PeakEwma", "Slowdown", "decay_factor"]

_LN2 = math.log(2.0)
_MIN_STEP = 0.1  # PeakEwma: the least a faster sample moves the estimate toward itself
_BOUND_STEP = 0.1  # PeakEwma: how far a lower bound (a cancelled call's elapsed time) pulls the estimate up
_FAST_WEIGHT = 0.5  # Slowdown: the weight of each new call in the "now" average (two calls move it most of the way)
_MAX_BASE_STEP = 0.05  # Slowdown: the most one call moves the baseline (a burst of slow calls cannot drag it up)
_MIN_BASE_STEP = 0.01  # Slowdown: the least one call moves it while the provider is not suspect
_BASE_MEAN_CALLS = 20  # Slowdown: the baseline starts as the plain mean of this many calls


def decay_factor(elapsed_s: float, half_life_s: float) -> float:
    """The weight left after ``elapsed_s`` seconds with the given half-life (1.0 for no time)."""
    if elapsed_s <= 0.0:
        return 1.0
    return math.exp(-_LN2 * elapsed_s / half_life_s)


class PeakEwma:
    """Peak-sensitive, time-decayed moving average of a duration (seconds)."""

    __slots__ = ("at", "count", "half_life_s", "value", "warmup")

    def __init__(self, half_life_s: float, warmup: int) -> None:
        self.half_life_s = half_life_s
        self.warmup = warmup
        self.value: float | None = None
        self.at = 0.0
        self.count = 0

    def observe(self, sample: float, now: float) -> float:
        """Add one sample taken at ``now``; returns the new estimate."""
        value = self.value
        self.count += 1
        if value is None or (self.count <= self.warmup and sample < value):
            value = sample  # warming up: keep the best sample (cold connections pay setup once)
        elif self.count > self.warmup:
            if sample >= value:
                value = sample  # slow news counts at once
            else:
                # the weight left to the old estimate: time-based, but each faster call moves it at
                # least _MIN_STEP of the way, so under heavy traffic one outlier fades within calls
                w = min(decay_factor(now - self.at, self.half_life_s), 1.0 - _MIN_STEP)
                value = value * w + sample * (1.0 - w)
        self.value = value
        self.at = max(self.at, now)
        return value

    def at_least(self, bound: float, now: float) -> bool:
        """A call known to take at least ``bound`` seconds (cancelled before it ended); whether the estimate rose.

        A bound above the estimate pulls it a tenth of the way up (``_BOUND_STEP``), never at once as a slow
        sample does: the call was at least that slow, but it was cut short because another answered first
        (a hedge took care of its tail), so one such call must not steer traffic away; a provider that
        keeps losing races still climbs (half the gap after seven losses), and its calls that are not hedged
        count in full.
        A bound below the estimate says nothing (the call might have been slower still). It does not count
        as a sample: an estimate still warming up, or with no samples, is left alone.
        """
        value = self.value
        if value is not None and self.count >= self.warmup and bound > value:
            self.value = value + (bound - value) * _BOUND_STEP
            self.at = max(self.at, now)
            return True
        return False

    def reset(self) -> None:
        """Forget every sample."""
        self.value = None
        self.at = 0.0
        self.count = 0


class DecayedCount:
    """A count of events that halves every ``half_life_s`` seconds."""

    __slots__ = ("at", "half_life_s", "value")

    def __init__(self, half_life_s: float) -> None:
        self.half_life_s = half_life_s
        self.value = 0.0
        self.at = 0.0

    def read(self, now: float) -> float:
        """The decayed count at ``now``."""
        if self.value == 0.0:
            return 0.0
        return self.value * decay_factor(now - self.at, self.half_life_s)

    def add(self, now: float, amount: float = 1.0) -> float:
        """Add ``amount`` at ``now``; returns the new count."""
        self.value = self.read(now) + amount
        self.at = max(self.at, now)
        return self.value

    def scale(self, factor: float, now: float) -> float:
        """Multiply the count (decayed to ``now``) by ``factor``; returns the new count."""
        if self.value:
            self.value = self.read(now) * factor
            self.at = max(self.at, now)
        return self.value

    def reset(self) -> None:
        """Back to zero."""
        self.value = 0.0
        self.at = 0.0


class DecayedBeta:
    """Probability of success as a Beta(prior + decayed successes, prior + decayed failures) mean."""

    __slots__ = ("at", "failures", "half_life_s", "prior_failures", "prior_successes", "successes")

    def __init__(self, half_life_s: float, prior_mean: float, prior_weight: float) -> None:
        self.half_life_s = half_life_s
        self.prior_successes = prior_mean * prior_weight
        self.prior_failures = (1.0 - prior_mean) * prior_weight
        self.successes = 0.0
        self.failures = 0.0
        self.at = 0.0

    def mean(self, now: float) -> float:
        """The posterior mean at ``now`` (the prior's mean with no data)."""
        w = decay_factor(now - self.at, self.half_life_s)
        s = self.prior_successes + self.successes * w
        return s / (s + self.prior_failures + self.failures * w)

    def observe(self, ok: bool, now: float) -> None:
        """Add one success or failure at ``now`` (read the mean with :meth:`mean`)."""
        w = decay_factor(now - self.at, self.half_life_s)
        self.successes *= w
        self.failures *= w
        if ok:
            self.successes += 1.0
        else:
            self.failures += 1.0
        self.at = max(self.at, now)

    def reset(self) -> None:
        """Forget every observation (back to the prior)."""
        self.successes = self.failures = 0.0
        self.at = 0.0


class Slowdown:
    """Current latency against the provider's usual latency (a ratio; 1.0 = as usual).

    ``now`` is an average giving each call half the weight (it follows a brownout in one or two calls
    and its end in two or three). ``base``, the usual latency, is the plain mean of the first 20
    calls, then a moving average giving each call 1 % of the weight, or more when calls are rare
    (time-based, ``half_life_s``), never more than 5 %. While the provider is suspect (``learn``
    False) calls teach the baseline only by time: a slowdown that lasts several half-lives becomes
    the new usual, a brownout of a few minutes does not.
    """

    __slots__ = ("at", "base", "calls", "half_life_s", "now")

    def __init__(self, half_life_s: float) -> None:
        self.half_life_s = half_life_s
        self.base: float | None = None
        self.now = 0.0
        self.at = 0.0
        self.calls = 0

    def observe(self, sample: float, now: float, learn: bool = True) -> float:
        """Add one successful call's duration; returns the ratio."""
        base = self.base
        if base is None:
            base = self.now = sample
            self.calls = 1
        else:
            self.now = self.now * (1.0 - _FAST_WEIGHT) + sample * _FAST_WEIGHT
            w = 1.0 - decay_factor(now - self.at, self.half_life_s)
            if learn:
                self.calls += 1
                if self.calls <= _BASE_MEAN_CALLS:
                    w = 1.0 / self.calls
                elif w < _MIN_BASE_STEP:
                    w = _MIN_BASE_STEP
            if w > _MAX_BASE_STEP and self.calls > _BASE_MEAN_CALLS:
                w = _MAX_BASE_STEP
            base += (sample - base) * w
        self.base = base
        self.at = max(self.at, now)
        return self.ratio()

    def ratio(self) -> float:
        """``now / base`` (1.0 before any call)."""
        base = self.base
        return self.now / base if base else 1.0

    def reset(self) -> None:
        """Forget every call."""
        self.base = None
        self.now = 0.0
        self.at = 0.0
        self.calls = 0
