"""Typed configuration of simulated providers: outcomes, latency, behaviour, fault windows, scenarios.

All models are frozen pydantic models that reject unknown fields. Building them from plain data goes
through :func:`pi_builder_middleware.testing.scenario.load_scenario`, which turns validation failures into a
:class:`~pi_builder_middleware.testing.errors.SimulatorConfigError` naming each bad field.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Behaviour",
    "ColdStart",
    "FaultWindow",
    "Latency",
    "LatencyDistribution",
    "Scenario",
    "SimOutcome",
    "SimProvider",
    "check_provider_names",
]


class SimOutcome(StrEnum):
    """What the simulator does with one request: succeed, or one kind of failure."""

    SUCCESS = "success"
    SERVER_ERROR = "server_error"  # 500
    SERVICE_UNAVAILABLE = "service_unavailable"  # 503
    OVERLOADED = "overloaded"  # 529, as Anthropic sends when overloaded
    RATE_LIMIT = "rate_limit"  # 429 with Retry-After
    TIMEOUT = "timeout"  # hold the connection open, then close it without a response
    CONNECTION_RESET = "connection_reset"  # RST the socket without a response
    MALFORMED_BODY = "malformed_body"  # 200 with a body that is not valid JSON
    STREAM_CUT = "stream_cut"  # send part of the body, then close without [DONE]
    BAD_REQUEST = "bad_request"  # 400 invalid_request_error
    AUTHENTICATION = "authentication"  # 401 invalid_api_key
    CONTEXT_LENGTH = "context_length"  # 400 context_length_exceeded
    CONTENT_POLICY = "content_policy"  # 400 content_policy_violation

    @property
    def is_error(self) -> bool:
        """True for every outcome except SUCCESS."""
        return self is not SimOutcome.SUCCESS


class LatencyDistribution(StrEnum):
    """Shape of a latency distribution."""

    FIXED = "fixed"
    NORMAL = "normal"
    LOGNORMAL = "lognormal"


def _non_negative(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError("must be a finite number >= 0")
    return value


def _positive(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a finite number > 0")
    return value


def _rate(value: float) -> float:
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


def _at_least_one(value: int) -> int:
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def _count(value: int) -> int:
    if value < 0:
        raise ValueError("must be >= 0")
    return value


NonNegative = Annotated[float, AfterValidator(_non_negative)]
Positive = Annotated[float, AfterValidator(_positive)]
Rate = Annotated[float, AfterValidator(_rate)]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Latency(_Frozen):
    """A latency distribution in milliseconds.

    ``spread`` is relative: for ``normal`` the standard deviation is ``spread * median_ms``; for
    ``lognormal`` it is the sigma of the underlying normal (0.25 ≈ ±25 %). A bare number in input data
    means a fixed latency of that many milliseconds.
    """

    distribution: LatencyDistribution = LatencyDistribution.FIXED
    median_ms: NonNegative = 0.0
    spread: NonNegative = 0.0
    max_ms: Positive | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_number(cls, data: Any) -> Any:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"distribution": LatencyDistribution.FIXED, "median_ms": data}
        if not isinstance(data, dict | Latency):
            raise ValueError("must be a number of milliseconds or a table with distribution, median_ms, spread")
        return data

    @model_validator(mode="after")
    def _check_spread(self) -> Latency:
        if self.distribution is LatencyDistribution.FIXED and self.spread > 0:
            raise ValueError("spread has no effect with distribution 'fixed'; use 'normal' or 'lognormal'")
        return self

    @classmethod
    def fixed(cls, ms: float) -> Latency:
        """Always ``ms`` milliseconds."""
        return cls(distribution=LatencyDistribution.FIXED, median_ms=ms)

    @classmethod
    def normal(cls, median_ms: float, spread: float, max_ms: float | None = None) -> Latency:
        """Normal around ``median_ms`` with standard deviation ``spread * median_ms`` (clipped at 0)."""
        return cls(distribution=LatencyDistribution.NORMAL, median_ms=median_ms, spread=spread, max_ms=max_ms)

    @classmethod
    def lognormal(cls, median_ms: float, spread: float, max_ms: float | None = None) -> Latency:
        """Log-normal with the given median and log-sigma ``spread`` (long right tail, like real APIs)."""
        return cls(distribution=LatencyDistribution.LOGNORMAL, median_ms=median_ms, spread=spread, max_ms=max_ms)

    def sample_ms(self, z: float) -> float:
        """Map a standard-normal draw ``z`` to a latency in milliseconds."""
        if self.distribution is LatencyDistribution.NORMAL:
            value = self.median_ms * (1.0 + self.spread * z)
        elif self.distribution is LatencyDistribution.LOGNORMAL:
            value = self.median_ms * math.exp(self.spread * z)
        else:
            value = self.median_ms
        value = max(0.0, value)
        return min(value, self.max_ms) if self.max_ms is not None else value


def _check_error_mix(value: dict[SimOutcome, float] | None) -> dict[SimOutcome, float] | None:
    if value is None:
        return None
    if SimOutcome.SUCCESS in value:
        raise ValueError("'success' is not an error kind; lower error_rate instead")
    for kind, weight in value.items():
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight of {kind.value!r} must be a finite number >= 0")
    if not value or sum(value.values()) <= 0:
        raise ValueError("needs at least one error kind with a weight > 0")
    return value


ErrorMix = Annotated[dict[SimOutcome, float], AfterValidator(_check_error_mix)]
Capacity = Annotated[int, AfterValidator(_at_least_one)]


class ColdStart(_Frozen):
    """Set-up cost of a fresh provider: its first ``requests`` requests wait ``extra_ms`` longer.

    Models client, connection and TLS set-up (or a model being loaded): counted by request number, so
    :meth:`~pi_builder_middleware.testing.ProviderHandle.reset_stats` makes the provider cold again. The
    extra wait is added before the first byte (latency and TTFT alike) and is not scaled by
    ``latency_multiplier``.
    """

    requests: Capacity = 1
    extra_ms: NonNegative = 0.0


class SlowTail(_Frozen):
    """A heavy tail: a ``share`` of requests (drawn per request) take ``multiplier`` times longer.

    Models queueing at the provider or a slow replica: latency and TTFT of those requests are both
    multiplied, with no error. Drawn after every other random number of the request, so adding it
    leaves the other draws of a scenario unchanged.
    """

    share: Rate = 0.05
    multiplier: Positive = 10.0


class Behaviour(_Frozen):
    """How one provider answers: latency, stream pacing, response size and its error mix.

    ``errors`` maps error kinds to relative weights; a failing request picks one in proportion.
    Non-streaming requests wait ``latency``; streams wait ``ttft`` (``latency`` when unset) before
    the first chunk and then emit one token per chunk at ``tokens_per_second`` (``None``: no delay).
    Errors are sent after the sampled latency. ``latency_multiplier`` scales latency and TTFT.

    ``max_concurrent`` caps the requests in flight at this provider: one arriving while that many are
    being answered gets 429 at once (``rate_limit`` in the request log, but no Retry-After header, as
    providers answer a concurrency limit) and takes no slot. ``None`` means unlimited. ``cold_start``
    makes the first requests slower (see :class:`ColdStart`); ``slow_tail`` makes a share of them
    many times slower (see :class:`SlowTail`).
    """

    latency: Latency = Latency()
    ttft: Latency | None = None
    tokens_per_second: Positive | None = None
    response_tokens: Annotated[int, AfterValidator(_at_least_one)] = 16
    error_rate: Rate = 0.0
    errors: ErrorMix = Field(default_factory=lambda: {SimOutcome.SERVER_ERROR: 1.0})
    retry_after_s: NonNegative = 1.0
    hang_s: Positive = 30.0
    stream_cut_after_chunks: Annotated[int, AfterValidator(_count)] = 2
    latency_multiplier: Positive = 1.0
    max_concurrent: Capacity | None = None
    cold_start: ColdStart | None = None
    slow_tail: SlowTail | None = None

    @classmethod
    def failing(cls, kind: SimOutcome = SimOutcome.SERVICE_UNAVAILABLE, **changes: Any) -> Behaviour:
        """A behaviour in which every request fails with ``kind``."""
        return cls.model_validate({"error_rate": 1.0, "errors": {kind: 1.0}, **changes})


class FaultWindow(_Frozen):
    """A phase of the fault schedule, active for ``start_s <= t < end_s`` (seconds since start).

    Set fields override the provider's behaviour while the window is active (``None`` keeps the
    base value); ``latency_multiplier`` multiplies. Later windows win over earlier overlapping ones.
    ``max_concurrent`` sets a concurrency limit while the window is active (a reduced capacity).
    """

    start_s: NonNegative = 0.0
    end_s: NonNegative | None = None
    error_rate: Rate | None = None
    errors: ErrorMix | None = None
    latency_multiplier: Positive = 1.0
    retry_after_s: NonNegative | None = None
    max_concurrent: Capacity | None = None

    @model_validator(mode="after")
    def _check_order(self) -> FaultWindow:
        if self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be greater than start_s ({self.start_s})")
        return self

    def active_at(self, t: float) -> bool:
        """Whether the window covers time ``t`` (seconds since start)."""
        return self.start_s <= t and (self.end_s is None or t < self.end_s)


class SimProvider(_Frozen):
    """One simulated provider: a name, its behaviour, its fault schedule and where it listens.

    ``port=0`` picks a free port. When ``api_key`` is set, requests with another bearer token get 401.
    """

    name: str
    behaviour: Behaviour = Behaviour()
    faults: tuple[FaultWindow, ...] = ()
    port: int = 0
    models: tuple[str, ...] = ("sim-model",)
    api_key: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError("must start with a letter or digit and use only letters, digits, '_', '.', '-'")
        return value

    @field_validator("port")
    @classmethod
    def _check_port(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError("must be between 0 and 65535 (0 picks a free port)")
        return value

    @field_validator("models")
    @classmethod
    def _check_models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(not m for m in value):
            raise ValueError("needs at least one non-empty model name")
        return value


class Scenario(_Frozen):
    """A set of providers and the seed that makes their decisions reproducible."""

    seed: int = 0
    providers: tuple[SimProvider, ...]

    @field_validator("providers")
    @classmethod
    def _check_providers(cls, value: tuple[SimProvider, ...]) -> tuple[SimProvider, ...]:
        return check_provider_names(value)


P = TypeVar("P", bound=SimProvider)


def check_provider_names(providers: tuple[P, ...]) -> tuple[P, ...]:
    """``providers`` if there is at least one and no two share a name (a ``providers`` field validator)."""
    if not providers:
        raise ValueError("needs at least one provider")
    names = [p.name for p in providers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate provider names: {', '.join(duplicates)}")
    return providers
