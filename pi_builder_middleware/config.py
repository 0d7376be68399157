"""Configuration settings. Every invalid value raises :class:`ConfigError` naming the field.

Each class is a frozen, slotted dataclass built by ``_settings.settings``: a field's bounds and cross-field
rules are in its annotation (``Annotated[float, Range(gt=0), AtLeast("base_ejection_s")]``), nested settings
may be given as dicts, ``to_dict()`` gives the JSON-ready form, ``dataclasses.replace`` a checked copy.
"""

from __future__ import annotations

from typing import Annotated, Any

from ._settings import SettingsBase, settings
from ._validation import AtLeast, AtMost, MinLength, Range
from .enums import AllOutMode, FailoverPreset
from .errorinfo import RETRY_AFTER_LIMIT_S
from .errors import ConfigError

__all__ = ["AlertThresholds", "FailoverConfig", "HealthThresholds", "MonitorConfig", "OutlierConfig", "RoutingConfig"]


@settings
class HealthThresholds(SettingsBase):
    """Boundaries between health states (defaults: the seed's 99 % / 95 % / 50 %, 1 % / 5 %)."""

    healthy_availability: Annotated[float, Range(ge=0, le=1)] = 0.99
    healthy_error_rate: Annotated[float, Range(ge=0, le=1)] = 0.01
    degraded_availability: Annotated[float, Range(ge=0, le=1), AtMost("healthy_availability")] = 0.95
    degraded_error_rate: Annotated[float, Range(ge=0, le=1), AtLeast("healthy_error_rate")] = 0.05
    offline_availability: Annotated[float, Range(ge=0, le=1), AtMost("degraded_availability")] = 0.5


@settings
class AlertThresholds(SettingsBase):
    """When alerts fire. Each alert fires once when its condition starts and clears when it ends."""

    high_latency_ms: Annotated[float, Range(gt=0)] = 5000.0
    high_error_rate: Annotated[float, Range(ge=0, le=1)] = 0.05
    min_samples: Annotated[int, Range(ge=1)] = 5


@settings
class MonitorConfig(SettingsBase):
    """Sliding-window monitor settings.

    ``window_s`` is the time window metrics cover; ``max_samples`` bounds memory per provider (oldest
    samples are dropped first); ``min_samples`` is how many outcomes a status needs (fewer: UNKNOWN).
    ``max_clock_skew_s``: how far an ``Outcome.at`` may lie from the monitor's clock; further is refused
    (a timestamp from another clock, e.g. wall time, would hold the window still), a little ahead is
    taken as now. Routing does not read these windows: it reads decayed estimates (:class:`RoutingConfig`).
    """

    window_s: Annotated[float, Range(gt=0)] = 300.0
    max_samples: Annotated[int, Range(ge=8, le=1_000_000)] = 2048
    min_samples: Annotated[int, Range(ge=1)] = 5
    max_clock_skew_s: Annotated[float, Range(gt=0, le=86_400)] = 300.0
    thresholds: HealthThresholds = HealthThresholds()
    alerts: AlertThresholds = AlertThresholds()


_PRESETS: dict[FailoverPreset, dict[str, Any]] = {
    FailoverPreset.AGGRESSIVE: dict(
        consecutive_failures=2,
        failure_rate_threshold=0.25,
        minimum_calls=4,
        window_s=30.0,
        base_ejection_s=10.0,
        ejection_multiplier=2.0,
        max_ejection_s=120.0,
        half_open_max_calls=1,
        recovery_successes=1,
    ),
    FailoverPreset.BALANCED: dict(
        consecutive_failures=5,
        failure_rate_threshold=0.5,
        minimum_calls=10,
        window_s=60.0,
        base_ejection_s=30.0,
        ejection_multiplier=2.0,
        max_ejection_s=300.0,
        half_open_max_calls=1,
        recovery_successes=2,
    ),
    FailoverPreset.CONSERVATIVE: dict(
        consecutive_failures=10,
        failure_rate_threshold=0.6,
        minimum_calls=20,
        window_s=120.0,
        base_ejection_s=60.0,
        ejection_multiplier=1.5,
        max_ejection_s=600.0,
        half_open_max_calls=2,
        recovery_successes=3,
    ),
}


@settings
class OutlierConfig(SettingsBase):
    """Settings of the ``outlier`` failover policy: peer-relative ejection, after Envoy's outlier detection.

    Every ``interval_s`` at most (checked lazily when outcomes are recorded) the policy compares the
    CLOSED providers of a group over their breaker windows (``FailoverConfig.window_s``):

    - *success rate*: when at least ``success_rate_minimum_hosts`` providers have at least
      ``success_rate_request_volume`` calls, a provider whose success rate is below
      ``mean − max(success_rate_stdev_factor × stdev, success_rate_minimum_gap)`` of those providers'
      rates is ejected. The gap keeps near-identical providers in (with a stdev of 0.1 %, a 0.3 % dip
      is not an outlier). Envoy's factor 1.9 cannot fire with fewer than five providers (one outlier
      among ``n`` lies at most ``sqrt(n − 1)`` standard deviations below the mean); LLM groups are
      small, hence 1.0;
    - *failure percentage*: a provider with at least ``failure_percentage_request_volume`` calls
      whose health failures make ``failure_percentage_threshold`` % or more (None: off) is ejected
      whatever its peers do.

    Peer-relative means that a group which is equally bad everywhere keeps serving.
    """

    interval_s: Annotated[float, Range(gt=0)] = 10.0
    success_rate_minimum_hosts: Annotated[int, Range(ge=1)] = 3
    success_rate_request_volume: Annotated[int, Range(ge=1)] = 20
    success_rate_stdev_factor: Annotated[float, Range(ge=0)] = 1.0
    success_rate_minimum_gap: Annotated[float, Range(ge=0, le=1)] = 0.1
    failure_percentage_threshold: Annotated[float | None, Range(gt=0, le=100)] = 85.0
    failure_percentage_request_volume: Annotated[int, Range(ge=1)] = 20


@settings
class FailoverConfig(SettingsBase):
    """Circuit-breaker settings per provider (defaults are the ``balanced`` preset).

    A provider trips OPEN after ``consecutive_failures`` health failures in a row, or when at least
    ``minimum_calls`` calls in the last ``window_s`` seconds failed at ``failure_rate_threshold`` or more.
    It stays out for ``base_ejection_s``, multiplied by ``ejection_multiplier`` on each repeat trip (up
    to ``max_ejection_s``, ±``jitter``); then HALF_OPEN lets ``half_open_max_calls`` trial calls through
    and closes after ``recovery_successes`` successes in a row. Repeat trips are forgotten once the
    breaker has stayed CLOSED for ``trip_memory_s``. ``escalate_when_all_out=False``: a trip while every
    other provider's breaker is out too (OPEN or HALF_OPEN) ejects for the base time instead of a
    multiplied one — with nowhere else to go, the first provider to recover is found at the base
    probing rate (what callers waiting with ``max_wait_s`` need), as LiteLLM's fixed cooldown does.

    ``policy`` names the failover policy: ``default`` (the trips above) or ``outlier`` (consecutive
    failures plus peer-relative ejection, see :class:`OutlierConfig` in ``outlier``).
    ``max_ejection_percent`` caps how much of a provider group may be out (OPEN or HALF_OPEN) at once:
    a trip that would exceed ``floor(group × percent / 100)`` is not made (the event log says so) —
    except that one provider may always be out, as in Envoy. None: the policy's default (no cap for
    ``default``, 50 % for ``outlier``: of 3 providers at most 1 is out, of 4 at most 2).

    Rate limits (429) never count as failures. A 429 with Retry-After cools the provider down for it
    (at most ``max_rate_limit_cooldown_s``). Without one, the cooldown starts at
    ``rate_limit_base_cooldown_s`` and doubles with each further 429 of the same streak, up to
    ``default_rate_limit_cooldown_s`` (setting both equal gives the old fixed cooldown). A 429 extends
    the streak if it arrives after the previous cooldown ended but within ``rate_limit_streak_s`` of
    that end (the provider still refuses when called again); one arriving *during* the cooldown came
    from a call sent with the previous ones and does not grow it, and a later one starts a new streak.
    A success ends the streak and lifts what is left of such a backoff cooldown (a provider that limits
    concurrency just freed a slot); Retry-After cooldowns, local or from other replicas, are kept. So a
    provider that takes 4 concurrent calls and refuses the 5th is never held back while it has a free
    slot. With a state store only Retry-After cooldowns are shared; each replica finds its own backoff
    (one fast 429 each). :meth:`FailoverManager.rate_limit_pressure` gives routing the share of recent
    calls that were 429s, decayed with ``rate_limit_pressure_half_life_s``, to lower the provider's
    share before anything is ejected.

    Active health checks (:meth:`FailoverManager.start_health_checks`) give each probe
    ``health_check_timeout_s`` unless told otherwise; a probe that takes longer is a timeout failure.
    """

    policy: Annotated[str, MinLength(1)] = "default"
    consecutive_failures: Annotated[int, Range(ge=1)] = 5
    failure_rate_threshold: Annotated[float, Range(gt=0, le=1)] = 0.5
    minimum_calls: Annotated[int, Range(ge=1)] = 10
    window_s: Annotated[float, Range(gt=0)] = 60.0
    base_ejection_s: Annotated[float, Range(gt=0)] = 30.0
    ejection_multiplier: Annotated[float, Range(ge=1)] = 2.0
    max_ejection_s: Annotated[float, Range(gt=0), AtLeast("base_ejection_s")] = 300.0
    jitter: Annotated[float, Range(ge=0, lt=1)] = 0.1
    half_open_max_calls: Annotated[int, Range(ge=1)] = 1
    recovery_successes: Annotated[int, Range(ge=1)] = 2
    half_open_permit_timeout_s: Annotated[float, Range(gt=0)] = 60.0
    rate_limit_base_cooldown_s: Annotated[float, Range(ge=0)] = 0.25
    default_rate_limit_cooldown_s: Annotated[float, Range(ge=0)] = 5.0
    max_rate_limit_cooldown_s: Annotated[float, Range(ge=0), AtLeast("default_rate_limit_cooldown_s")] = (
        RETRY_AFTER_LIMIT_S
    )
    rate_limit_streak_s: Annotated[float, Range(ge=0)] = 5.0
    rate_limit_pressure_half_life_s: Annotated[float, Range(gt=0)] = 10.0
    trip_memory_s: Annotated[float, Range(ge=0)] = 900.0
    escalate_when_all_out: bool = True
    max_ejection_percent: Annotated[float | None, Range(gt=0, le=100)] = None
    outlier: OutlierConfig = OutlierConfig()
    max_events: Annotated[int, Range(ge=1, le=1_000_000)] = 1000
    health_check_timeout_s: Annotated[float, Range(gt=0)] = 10.0

    @classmethod
    def preset(cls, name: FailoverPreset | str, **overrides: Any) -> FailoverConfig:
        """The named preset (aggressive, balanced, conservative), with optional overrides."""
        try:
            key = FailoverPreset(name)
        except ValueError:
            choices = ", ".join(p.value for p in FailoverPreset)
            raise ConfigError("failover", f"unknown preset {name!r}; use one of {choices}") from None
        return cls(**{**_PRESETS[key], **overrides})

    @classmethod
    def coerce(cls, value: FailoverConfig | FailoverPreset | str | None) -> FailoverConfig:
        """Accept a config, a preset name or None (balanced)."""
        if value is None:
            return cls.preset(FailoverPreset.BALANCED)
        if isinstance(value, FailoverConfig):
            return value
        if isinstance(value, str):
            return cls.preset(value)
        raise ConfigError("failover", f"expected a preset name or FailoverConfig, got {type(value).__name__}")


@settings
class RoutingConfig(SettingsBase):
    """How routing estimates providers and spreads traffic (see README "Strategies").

    Estimates: latency and TTFT are peak-EWMAs with ``latency_half_life_s`` (a slow call counts at
    once, then fades); during a provider's first ``latency_warmup`` successful calls the estimate is
    the best of them (connection setup on first calls must not exile a fast provider). Availability
    is a Beta posterior with mean ``availability_prior`` worth ``availability_prior_weight`` calls,
    its counts halving every ``availability_half_life_s`` (back toward the prior without traffic).
    Recent health failures and 429s are decayed counts with ``failure_half_life_s`` /
    ``rate_limit_half_life_s``: they shift traffic away at once and let it come back as they fade.

    Load spreading (latency-optimal): power of two choices among the candidates whose load-adjusted
    cost is within ``spread_within`` times the cheapest's.

    Trouble short of an ejection: a provider is *suspect* while its recent failures read at least
    ``suspect_failures`` (two failures close together; one never does) or it answers
    ``slow_factor`` times slower than usual (its recent calls against a baseline kept with
    ``baseline_half_life_s``). The priority strategies (failover, cost-, quality-optimal) pass a
    suspect over for the next provider and send it one probe request at a time, at most every
    ``probe_interval_s``, so its return is seen at once; latency-optimal needs no gate (its costs
    carry the same signals). ``slow_factor=None`` turns the latency part off.

    Exploration: a usable provider that no request was sent to for ``explore_after_s`` gets one
    probe request, with probes limited to ``explore_share`` of decisions. ``when_all_out``: with every
    candidate ejected or cooling down, ``soonest`` sends the request to the one whose re-admission is
    soonest (as a trial call), ``fail`` raises :class:`NoProviderAvailableError`.
    """

    latency_half_life_s: Annotated[float, Range(gt=0, le=86_400)] = 5.0
    latency_warmup: Annotated[int, Range(ge=1, le=1000)] = 3
    availability_half_life_s: Annotated[float, Range(gt=0, le=86_400)] = 60.0
    availability_prior: Annotated[float, Range(gt=0, lt=1)] = 0.95
    availability_prior_weight: Annotated[float, Range(gt=0, le=1e6)] = 4.0
    failure_half_life_s: Annotated[float, Range(gt=0, le=86_400)] = 5.0
    rate_limit_half_life_s: Annotated[float, Range(gt=0, le=86_400)] = 10.0
    concurrency_memory_s: Annotated[float, Range(gt=0, le=86_400)] = 30.0
    spread_within: Annotated[float, Range(ge=1, le=1e6)] = 1.5
    suspect_failures: Annotated[float, Range(gt=0, le=1e6)] = 1.5
    slow_factor: Annotated[float | None, Range(gt=1, le=1e6)] = 3.0
    baseline_half_life_s: Annotated[float, Range(gt=0, le=86_400)] = 600.0
    probe_interval_s: Annotated[float, Range(ge=0, le=86_400)] = 0.5
    explore_after_s: Annotated[float, Range(gt=0, le=86_400)] = 15.0
    explore_share: Annotated[float, Range(ge=0, le=1)] = 0.02
    when_all_out: AllOutMode = AllOutMode.SOONEST
