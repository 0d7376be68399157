"""Enumerations shared by every engine."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["AlertKind", "CircuitState", "ErrorKind", "EventKind", "FailoverPreset", "HealthStatus"]


class HealthStatus(StrEnum):
    """Health of a provider, worst of what the monitor measures and what its breaker says."""

    UNKNOWN = "unknown"  # fewer outcomes in the window than ``MonitorConfig.min_samples``
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    OFFLINE = "offline"

    @property
    def rank(self) -> int:
        """0 for UNKNOWN/HEALTHY up to 3 for OFFLINE; larger is worse."""
        return _STATUS_RANK[self]


_STATUS_RANK = {
    HealthStatus.UNKNOWN: 0,
    HealthStatus.HEALTHY: 0,
    HealthStatus.DEGRADED: 1,
    HealthStatus.UNHEALTHY: 2,
    HealthStatus.OFFLINE: 3,
}


class CircuitState(StrEnum):
    """State of a provider's circuit breaker."""

    CLOSED = "closed"  # traffic flows
    OPEN = "open"  # ejected until its ejection time ends
    HALF_OPEN = "half_open"  # a limited number of trial calls decide between CLOSED and OPEN


class ErrorKind(StrEnum):
    """What an error means for routing and health."""

    RATE_LIMITED = "rate_limited"  # 429: cool down for Retry-After; not a health failure
    SERVER_ERROR = "server_error"  # 5xx
    OVERLOADED = "overloaded"  # 529 / 503 "overloaded"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    CONTEXT_WINDOW = "context_window"  # this provider cannot take this request; skip it this time only
    CONTENT_POLICY = "content_policy"  # idem
    AUTH = "auth"  # 401/403: configuration problem of this provider, reported, not a flap
    BAD_REQUEST = "bad_request"  # 400: the request itself is wrong; retrying elsewhere will not help
    UNKNOWN = "unknown"

    @property
    def is_health_failure(self) -> bool:
        """Whether the error counts against the provider's health and breaker."""
        return self in _HEALTH_FAILURES

    @property
    def fails_over(self) -> bool:
        """Whether another provider should be tried for the same request."""
        return self is not ErrorKind.BAD_REQUEST

    @property
    def is_config_problem(self) -> bool:
        """Whether the error points at configuration (keys, request shape) rather than an outage."""
        return self in (ErrorKind.AUTH, ErrorKind.BAD_REQUEST)

    @property
    def is_request_specific(self) -> bool:
        """Whether the provider should be skipped for this request only."""
        return self in (ErrorKind.CONTEXT_WINDOW, ErrorKind.CONTENT_POLICY)


_HEALTH_FAILURES = frozenset(
    {ErrorKind.SERVER_ERROR, ErrorKind.OVERLOADED, ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.UNKNOWN}
)


class FailoverPreset(StrEnum):
    """Named breaker configurations; see :class:`~pi_builder_middleware.FailoverConfig.preset`."""

    AGGRESSIVE = "aggressive"
    BALANCED = "balanced"
    CONSERVATIVE = "conservative"


class AllOutMode(StrEnum):
    """What ``select`` does when every candidate is ejected or cooling down."""

    SOONEST = "soonest"  # send the request to the provider whose re-admission is soonest (panic routing)
    FAIL = "fail"  # raise NoProviderAvailableError (fail fast)


class AlertKind(StrEnum):
    """Alerts the monitor emits, once per transition."""

    HIGH_LATENCY = "high_latency"
    HIGH_ERROR_RATE = "high_error_rate"
    UNAVAILABLE = "unavailable"
    RECOVERED = "recovered"


class EventKind(StrEnum):
    """Entries of the failover event log."""

    FAILURE = "failure"
    RECOVERY = "recovery"
    SWITCH = "switch"
    BLACKLIST = "blacklist"
    HALF_OPEN = "half_open"
    PROBE = "probe"
    RATE_LIMITED = "rate_limited"
    CONFIG_ERROR = "config_error"
    RESET = "reset"
    EJECTION_CAPPED = "ejection_capped"  # a trip not made: max_ejection_percent of the group is out already
