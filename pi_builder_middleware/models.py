"""Typed values passed between the engines, plugins and adapters."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Any

from ._settings import SettingsBase, settings
from ._validation import MinLength, Range, in_range, is_number, require
from .enums import AlertKind, CircuitState, ErrorKind, EventKind, HealthStatus
from .errors import ConfigError
from .interfaces import Strategy

__all__ = [
    "MAX_COST",
    "MAX_LATENCY_S",
    "MAX_TOKENS",
    "Alert",
    "Attempt",
    "FailoverEvent",
    "HealthChange",
    "HealthSnapshot",
    "Outcome",
    "Provider",
    "RouteRequest",
    "RoutingDecision",
    "Usage",
]


#: Largest accepted duration of one call (``Outcome.latency_s``, ``ttft_s``; ``RouteRequest.timeout_s``): a day.
MAX_LATENCY_S = 86_400.0
#: Largest accepted cost of one call (``Outcome.cost``, ``Usage.cost``) and price per 1,000 tokens.
MAX_COST = 1e9
#: Largest accepted token count of one call (``Outcome``, ``Usage`` and ``RouteRequest`` token fields).
MAX_TOKENS = 10**9


@settings
class Provider(SettingsBase):
    """One place a request can be sent: a deployment, a model at a vendor, a local server.

    Costs are in currency units (USD by convention) per 1,000 tokens, at most :data:`MAX_COST`.
    ``quality`` is a 0–1 score the user assigns (higher is more capable). ``priority`` breaks ties,
    lower first. ``capabilities`` is any collection of names but one string, kept as a frozenset.
    Built from keyword arguments (``Provider(**fields)``, unknown keys refused); ``to_dict()`` gives
    them back JSON-ready.
    """

    id: Annotated[str, MinLength(1)]
    cost_per_1k_input: Annotated[float, Range(ge=0, le=MAX_COST)] = 0.0
    cost_per_1k_output: Annotated[float, Range(ge=0, le=MAX_COST)] = 0.0
    quality: Annotated[float, Range(ge=0, le=1)] = 0.5
    capabilities: AbstractSet[str] = frozenset()
    max_context_tokens: Annotated[int | None, Range(gt=0)] = None
    priority: int = 0
    model: str | None = None
    group: str | None = None

    def cost_of(self, input_tokens: int, output_tokens: int) -> float:
        """Cost of a call with these token counts at this provider's prices."""
        return input_tokens * self.cost_per_1k_input / 1000 + output_tokens * self.cost_per_1k_output / 1000


def _frozen_names(value: Iterable[str] | None, name: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        raise ConfigError(f"RouteRequest.{name}", "give a set of names, not one string")
    try:
        names = frozenset(value)
    except TypeError:
        raise ConfigError(f"RouteRequest.{name}", f"give a set of names (got {type(value).__name__})") from None
    if not all(isinstance(n, str) for n in names):
        raise ConfigError(f"RouteRequest.{name}", "names must be strings")
    return names


# Checks for the dataclasses below (pydantic would be too slow for objects made on every call).
_NUM = (float, int)
_FLOAT_MAX = sys.float_info.max  # an int up to this converts to a finite float


def _tokens(owner: object, field: str, value: object) -> None:
    """Token counts: whole numbers 0..MAX_TOKENS (an integral float such as 12.0 is stored as 12)."""
    ok = in_range(value, 0, MAX_TOKENS) and float(value).is_integer()  # type: ignore[arg-type]
    require(f"{type(owner).__name__}.{field}", ok, f"a whole number from 0 to {MAX_TOKENS:,}", value)
    object.__setattr__(owner, field, int(value))  # type: ignore[call-overload]


def _duration(owner: str, field: str, value: object) -> None:
    require(
        f"{owner}.{field}",
        in_range(value, 0, MAX_LATENCY_S),
        f"a number of seconds from 0 to {MAX_LATENCY_S:,.0f} (one day)",
        value,
    )


def _cost(owner: str, value: object) -> None:
    require(f"{owner}.cost", in_range(value, 0, MAX_COST), f"a cost from 0 to {MAX_COST:g}, or None", value)


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What a caller needs from the provider chosen for one request.

    ``candidates`` restricts the choice to these provider ids (e.g. one LiteLLM model group).
    Token estimates feed cost-aware strategies. ``timeout_s`` is the request's deadline: every attempt,
    hedge and wait of the call must end within it (``aexecute`` cuts a running attempt at it; ``execute``
    starts no attempt and no wait after it), then :class:`DeadlineExceededError` is raised.
    ``attempt_timeout_s`` bounds each async attempt on its own (a provider that takes longer fails
    over as a timeout). ``stream`` (True or False) makes latency-aware strategies rank by time to first
    token where it is known. ``hedge`` False turns hedging off for this request when the middleware
    has a :class:`HedgePolicy`. ``strategy`` overrides the router's for this request (a registered
    name or a :class:`Strategy`). Token estimates are whole numbers up to :data:`MAX_TOKENS`, timeouts at
    most :data:`MAX_LATENCY_S`; anything else raises :class:`ConfigError` naming the field.
    """

    required_capabilities: frozenset[str] = frozenset()
    max_latency_ms: float | None = None
    min_availability: float | None = None
    exclude: frozenset[str] = frozenset()
    candidates: frozenset[str] | None = None
    strategy: str | Strategy | None = None
    input_tokens: int = 1000
    output_tokens: int = 250
    timeout_s: float | None = None
    stream: bool = False
    attempt_timeout_s: float | None = None
    hedge: bool = True

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "required_capabilities", _frozen_names(self.required_capabilities, "required_capabilities"))
        set_(self, "exclude", _frozen_names(self.exclude, "exclude"))
        if self.candidates is not None:
            set_(self, "candidates", _frozen_names(self.candidates, "candidates"))
        v: Any = self.max_latency_ms
        if v is not None:
            require("RouteRequest.max_latency_ms", is_number(v) and v > 0, "a number > 0 or None", v)
        v = self.min_availability
        if v is not None:
            require("RouteRequest.min_availability", is_number(v) and 0 <= v <= 1, "between 0 and 1, or None", v)
        v = self.strategy
        require("RouteRequest.strategy", v is None or isinstance(v, str | Strategy), "a strategy name or None", v)
        _tokens(self, "input_tokens", self.input_tokens)
        _tokens(self, "output_tokens", self.output_tokens)
        for name in ("timeout_s", "attempt_timeout_s"):
            v = getattr(self, name)
            if v is not None:
                require(
                    f"RouteRequest.{name}",
                    in_range(v, 0, MAX_LATENCY_S) and v > 0,
                    f"a number of seconds above 0 and up to {MAX_LATENCY_S:,.0f} (one day), or None",
                    v,
                )
        require("RouteRequest.stream", type(self.stream) is bool, "True or False", self.stream)
        require("RouteRequest.hedge", type(self.hedge) is bool, "True or False", self.hedge)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts and cost of one call, when the caller knows them (bounds as in :class:`Outcome`)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None

    def __post_init__(self) -> None:
        _tokens(self, "input_tokens", self.input_tokens)
        _tokens(self, "output_tokens", self.output_tokens)
        if self.cost is not None:
            _cost("Usage", self.cost)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt against one provider, fed to :meth:`Middleware.record`.

    ``cost`` None means "compute from the provider's prices". ``error_kind`` None with an ``error``
    means "classify it" (through the ``pbm_classify_error`` hook). ``at`` None means "now"; otherwise
    it is a reading of the middleware's clock (see :meth:`HealthMonitor.record` for the tolerance).

    Bounds, so that no single outcome can overflow the monitor's totals: ``latency_s`` and ``ttft_s``
    from 0 to :data:`MAX_LATENCY_S` (a day), ``cost`` from 0 to :data:`MAX_COST`, token counts whole
    numbers from 0 to :data:`MAX_TOKENS`; ``retry_after_s`` any finite number >= 0 (the breaker caps
    the wait at ``FailoverConfig.max_rate_limit_cooldown_s``). A value outside raises
    :class:`ConfigError` naming the field.
    """

    provider_id: str
    ok: bool
    latency_s: float = 0.0
    ttft_s: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    error: BaseException | None = None
    error_kind: ErrorKind | None = None
    status_code: int | None = None
    retry_after_s: float | None = None
    probe: bool = False
    at: float | None = None

    def __post_init__(self) -> None:
        # One cheap pass for the well-formed case (this runs on every LLM call); the detailed checks
        # below run only when it fails, to name the offending field.
        lat, ttft, cost, wait, at, status = (
            self.latency_s,
            self.ttft_s,
            self.cost,
            self.retry_after_s,
            self.at,
            self.status_code,
        )
        if (
            type(self.provider_id) is str
            and self.provider_id
            and type(self.ok) is bool
            and type(self.probe) is bool
            and type(lat) in _NUM
            and 0.0 <= lat <= MAX_LATENCY_S
            and (ttft is None or (type(ttft) in _NUM and 0.0 <= ttft <= MAX_LATENCY_S))
            and (cost is None or (type(cost) in _NUM and 0.0 <= cost <= MAX_COST))
            and (wait is None or (type(wait) in _NUM and 0.0 <= wait <= _FLOAT_MAX))
            and (at is None or (type(at) in _NUM and -_FLOAT_MAX <= at <= _FLOAT_MAX))
            and (status is None or (type(status) is int and 100 <= status <= 599))
            and type(self.input_tokens) is int
            and 0 <= self.input_tokens <= MAX_TOKENS
            and type(self.output_tokens) is int
            and 0 <= self.output_tokens <= MAX_TOKENS
            and (self.error is None or isinstance(self.error, BaseException))
            and (self.error_kind is None or type(self.error_kind) is ErrorKind)
        ):
            return
        self._validate()

    def _validate(self) -> None:
        pid: Any = self.provider_id
        require("Outcome.provider_id", isinstance(pid, str) and pid != "", "a non-empty provider id", pid)
        require("Outcome.ok", isinstance(self.ok, bool), "True or False", self.ok)
        require("Outcome.probe", isinstance(self.probe, bool), "True or False", self.probe)
        _duration("Outcome", "latency_s", self.latency_s)
        v: Any = self.ttft_s
        if v is not None:
            _duration("Outcome", "ttft_s", v)
        if self.cost is not None:
            _cost("Outcome", self.cost)
        v = self.retry_after_s
        if v is not None:
            require("Outcome.retry_after_s", is_number(v) and v >= 0, "a finite number >= 0 or None", v)
        _tokens(self, "input_tokens", self.input_tokens)
        _tokens(self, "output_tokens", self.output_tokens)
        v = self.at
        if v is not None:
            require("Outcome.at", is_number(v), "a finite clock reading or None", v)
        v = self.status_code
        if v is not None:
            require(
                "Outcome.status_code",
                isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599,
                "an HTTP status (100-599) or None",
                v,
            )
        require(
            "Outcome.error",
            self.error is None or isinstance(self.error, BaseException),
            "an exception instance or None",
            self.error,
        )
        v = self.error_kind
        if v is not None and not isinstance(v, ErrorKind):
            try:
                object.__setattr__(self, "error_kind", ErrorKind(v))
            except ValueError:
                kinds = ", ".join(k.value for k in ErrorKind)
                raise ConfigError("Outcome.error_kind", f"must be an ErrorKind ({kinds}), got {v!r}") from None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One failed attempt inside :meth:`Middleware.execute`, kept for the final error."""

    provider_id: str
    error: BaseException
    error_kind: ErrorKind
    latency_s: float


class RoutingDecision:
    """The provider chosen for one request, its ordered backups, and why.

    ``scores`` holds each ranked candidate's strategy score (0–1, higher is better); ``excluded``
    maps providers that were filtered out to the reason. ``trial`` marks a decision that sends the
    request to a half-open provider as its trial call; ``panic`` one made while every candidate was
    ejected or cooling down (sent to the soonest re-admission); ``note`` says what else shaped the
    choice (an exploration probe, load spreading). ``reason`` is built on first access.
    """

    __slots__ = (
        "_reason",
        "_scored",
        "_scores",
        "at",
        "chain",
        "excluded",
        "note",
        "panic",
        "provider",
        "strategy",
        "trial",
    )

    def __init__(
        self,
        provider: Provider,
        chain: tuple[Provider, ...],
        scores: dict[str, float] | tuple[Sequence[Any], Sequence[float]],
        strategy: str,
        excluded: dict[str, str],
        at: float,
        trial: bool = False,
        note: str = "",
        panic: bool = False,
    ) -> None:
        self.provider = provider
        self.trial = trial
        self.chain = chain
        # (candidates, scores) side by side are kept as given (anything with ``.provider.id``, e.g. the
        # router's Candidates); the dict is built when someone reads it: most decisions are never read
        if isinstance(scores, dict):
            self._scores: dict[str, float] | None = scores
            self._scored: tuple[Sequence[Any], Sequence[float]] | None = None
        else:
            self._scores, self._scored = None, scores
        self.strategy = strategy
        self.excluded = excluded
        self.at = at
        self.note = note
        self.panic = panic
        self._reason: str | None = None

    @property
    def providers(self) -> tuple[Provider, ...]:
        """The chosen provider followed by its backups, in the order to try them."""
        return (self.provider, *self.chain)

    @property
    def scores(self) -> dict[str, float]:
        """Each ranked candidate's strategy score by provider id."""
        if self._scores is None:
            ranked, values = self._scored or ((), ())
            self._scores = {c.provider.id: v for c, v in zip(ranked, values, strict=True)}
            self._scored = None
        return self._scores

    @property
    def score(self) -> float:
        """The chosen provider's score."""
        return self.scores[self.provider.id]

    @property
    def reason(self) -> str:
        """A human-readable explanation of the choice."""
        if self._reason is None:
            ranked = ", ".join(f"{p.id}={self.scores[p.id]:.3f}" for p in self.providers)
            text = f"{self.strategy}: chose {self.provider.id} (scores {ranked})"
            if self.note:
                text = f"{self.note}; " + text
            elif self.trial:
                text = f"trial call to half-open {self.provider.id}; " + text
            if self.excluded:
                text += "; excluded " + "; ".join(f"{pid}: {why}" for pid, why in self.excluded.items())
            self._reason = text
        return self._reason

    def throttled(self, why: str) -> None:
        """Add ``why`` to the note (e.g. the retry budget stopped a failover or a hedge); the reason shows it."""
        if why not in self.note:
            self.note = f"{self.note}; {why}" if self.note else why
            self._reason = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "provider": self.provider.id,
            "chain": [p.id for p in self.chain],
            "scores": dict(self.scores),
            "strategy": self.strategy,
            "excluded": dict(self.excluded),
            "reason": self.reason,
            "at": self.at,
            "trial": self.trial,
            "panic": self.panic,
            "note": self.note,
        }

    def __repr__(self) -> str:
        return f"RoutingDecision({self.reason!r})"


class _Record:
    """Base of the frozen records below: ``to_dict`` gives the fields in order, enums by their value."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        out = {}
        for name in self.__dataclass_fields__:  # type: ignore[attr-defined]
            value = getattr(self, name)
            out[name] = value.value if isinstance(value, Enum) else value
        return out


@dataclass(frozen=True, slots=True)
class HealthSnapshot(_Record):
    """Everything known about one provider's health at one moment. Latencies in milliseconds."""

    provider_id: str
    status: HealthStatus
    circuit: CircuitState
    calls: int
    successes: int
    failures: int
    errors: int
    rate_limited: int
    availability: float
    success_rate: float
    error_rate: float
    latency_min_ms: float | None
    latency_avg_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    ttft_avg_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    tokens_in: int
    tokens_out: int
    cost_total: float
    cost_per_request: float
    consecutive_failures: int
    trips: int
    open_for_s: float
    cooldown_for_s: float
    at: float
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        out = _Record.to_dict(self)  # not super(): slots=True makes a new class that its cell does not name
        out["extra"] = dict(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class Alert(_Record):
    """An alert raised (or cleared, for RECOVERED) by the monitor."""

    kind: AlertKind
    provider_id: str
    message: str
    value: float
    threshold: float
    at: float


@dataclass(frozen=True, slots=True)
class HealthChange(_Record):
    """A provider's health status changed."""

    provider_id: str
    old: HealthStatus
    new: HealthStatus
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class FailoverEvent(_Record):
    """One entry of the failover event log."""

    kind: EventKind
    provider_id: str
    at: float
    detail: str
    circuit: CircuitState
