"""Chaos scenarios: simulated providers with prices and a fault schedule, the request load, bench settings.

A scenario extends the simulator's own format (:mod:`pi_builder_middleware.testing.scenario`): every
``[[providers]]`` table is a :class:`~pi_builder_middleware.testing.SimProvider` plus its prices and quality,
and ``[load]`` / ``[bench]`` describe the traffic and how the bench configures and scores contenders::

    name = "outage"
    seed = 11

    [load]
    duration_s = 14        # seconds of traffic per contender
    rate_rps = 12          # mean arrivals per second (Poisson)
    stream_share = 0.25    # fraction of requests that stream
    output_tokens = 24     # max_tokens of every request (and providers' default reply size)

    [bench]
    cooldown_s = 5         # LiteLLM cooldown_time and this project's breaker ejection, the same for both

    [[providers]]          # listed in preference order: the first is with_fallbacks' primary
    name = "alpha"
    cost_per_1k_input = 0.0025
    cost_per_1k_output = 0.01
    behaviour = { latency = 120 }

    [[providers.faults]]   # the simulator's fault windows, seconds since the load started
    start_s = 4
    end_s = 10
    error_rate = 1.0
    errors = { service_unavailable = 1 }

Loading raises :class:`ChaosConfigError` naming every bad field, e.g. ``load.rate_rps: must be a finite
number > 0``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pi_builder_middleware.testing import FaultWindow, SimProvider, SimulatorConfigError
from pi_builder_middleware.testing.errors import config_error_from_validation
from pi_builder_middleware.testing.models import NonNegative, Positive, Rate, check_provider_names
from pi_builder_middleware.testing.scenario import read_toml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, field_validator, model_validator

__all__ = [
    "BUILTIN_ORDER",
    "BenchSettings",
    "ChaosConfigError",
    "ChaosProvider",
    "ChaosScenario",
    "LoadSpec",
    "Objective",
    "builtin_scenarios",
    "load_chaos_scenario",
    "load_chaos_scenario_file",
    "resolve_scenario",
]

_SCENARIO_PACKAGE = "pi_builder_middleware.tools.chaos"


class ChaosConfigError(SimulatorConfigError):
    """An invalid chaos scenario; ``problems`` holds ``(field_path, message)`` pairs like the simulator's."""


def _at_least_one(value: int) -> int:
    if value < 1:
        raise ValueError("must be >= 1")
    return value


Count = Annotated[int, AfterValidator(_at_least_one)]


def _fraction(value: float) -> float:
    if not 0.0 < value <= 1.0:
        raise ValueError("must be > 0 and <= 1")
    return value


Fraction = Annotated[float, AfterValidator(_fraction)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Objective(StrEnum):
    """What the oracle optimises among the providers that are healthy at a moment."""

    LATENCY = "latency"
    COST = "cost"


class LoadSpec(_Frozen):
    """The traffic every contender receives: the same request plan for the same seed."""

    duration_s: Positive
    rate_rps: Positive
    arrival: str = "poisson"
    concurrency: Count = 32
    stream_share: Rate = 0.0
    input_tokens: Count = 200
    output_tokens: Count = 24
    timeout_s: Positive = 5.0

    @field_validator("arrival")
    @classmethod
    def _check_arrival(cls, value: str) -> str:
        if value not in ("poisson", "uniform"):
            raise ValueError("must be 'poisson' (random gaps, mean 1/rate_rps) or 'uniform' (fixed gaps)")
        return value


class BenchSettings(_Frozen):
    """How the bench configures contenders and scores them.

    ``cooldown_s`` is used for both LiteLLM's ``cooldown_time`` and this project's breaker
    ``base_ejection_s`` so neither side gets a longer or shorter memory of failures. ``quiet_s`` is the
    gap without attempts that counts as "stopped sending" when measuring time to detect; ``bucket_s``
    is the width of the time buckets in traffic and latency series; ``oracle_lookahead_s`` is how early
    the oracle avoids a provider whose fault window is about to start. ``share_lookback_s`` and
    ``share_fraction`` define "back to its share" after a trouble window (see
    :mod:`pi_builder_middleware.tools.chaos.metrics`).
    """

    cooldown_s: Positive = 5.0
    objective: Objective = Objective.LATENCY
    quiet_s: Positive = 1.5
    bucket_s: Positive = 1.0
    oracle_lookahead_s: NonNegative = 0.3
    share_lookback_s: Positive = 2.0
    share_fraction: Fraction = 0.8


class ChaosProvider(SimProvider):
    """A simulated provider (name, behaviour, fault windows) with its prices and quality."""

    cost_per_1k_input: NonNegative = 0.0
    cost_per_1k_output: NonNegative = 0.0
    quality: Rate = 0.5

    @field_validator("port")
    @classmethod
    def _ephemeral_port(cls, value: int) -> int:
        if value != 0:
            raise ValueError("must be 0 (each contender gets a fresh simulator on free ports)")
        return value

    def cost_of(self, input_tokens: int, output_tokens: int) -> float:
        """Price of one answer with these token counts."""
        return (input_tokens * self.cost_per_1k_input + output_tokens * self.cost_per_1k_output) / 1000.0

    def to_sim(self, default_response_tokens: int) -> SimProvider:
        """The plain simulator provider; replies default to ``default_response_tokens`` tokens."""
        behaviour = self.behaviour
        if "response_tokens" not in behaviour.model_fields_set:
            behaviour = behaviour.model_copy(update={"response_tokens": default_response_tokens})
        return SimProvider(name=self.name, behaviour=behaviour, faults=self.faults, models=self.models)


class ChaosScenario(_Frozen):
    """One chaos scenario: providers (preference order), load, bench settings and the seed."""

    name: str
    description: str = ""
    seed: int = 0
    load: LoadSpec
    bench: BenchSettings = BenchSettings()
    providers: tuple[ChaosProvider, ...]

    @field_validator("providers")
    @classmethod
    def _check_providers(cls, value: tuple[ChaosProvider, ...]) -> tuple[ChaosProvider, ...]:
        return check_provider_names(value)

    @model_validator(mode="after")
    def _check_windows(self) -> ChaosScenario:
        problems: list[tuple[str, str]] = []
        for i, provider in enumerate(self.providers):
            for j, window in enumerate(provider.faults):
                if window.start_s >= self.load.duration_s:
                    problems.append(
                        (
                            f"providers[{i}].faults[{j}].start_s",
                            f"starts at {window.start_s:g} s, after the load ends "
                            f"(load.duration_s = {self.load.duration_s:g})",
                        )
                    )
        if problems:
            raise _WindowProblems(problems)
        return self

    @property
    def provider_names(self) -> tuple[str, ...]:
        """Provider names in preference order."""
        return tuple(p.name for p in self.providers)

    def provider(self, name: str) -> ChaosProvider:
        """The provider called ``name``."""
        for provider in self.providers:
            if provider.name == name:
                return provider
        raise KeyError(name)

    def sim_providers(self) -> tuple[SimProvider, ...]:
        """The providers as the simulator takes them."""
        return tuple(p.to_sim(self.load.output_tokens) for p in self.providers)

    def scaled(self, duration_s: float) -> ChaosScenario:
        """This scenario compressed (or stretched) in time to ``duration_s`` seconds of traffic.

        Fault windows, cooldowns and measurement gaps scale with it; latencies, Retry-After, cold
        starts, concurrency limits and the request rate do not.
        """
        f = duration_s / self.load.duration_s

        def window(w: FaultWindow) -> FaultWindow:
            end = None if w.end_s is None else w.end_s * f
            return w.model_copy(update={"start_s": w.start_s * f, "end_s": end})

        providers = tuple(p.model_copy(update={"faults": tuple(window(w) for w in p.faults)}) for p in self.providers)
        b = self.bench
        bench = b.model_copy(
            update={
                "cooldown_s": b.cooldown_s * f,
                "quiet_s": b.quiet_s * f,
                "bucket_s": b.bucket_s * f,
                "share_lookback_s": b.share_lookback_s * f,
            }
        )
        load = self.load.model_copy(update={"duration_s": duration_s})
        return self.model_copy(update={"load": load, "bench": bench, "providers": providers})


class _WindowProblems(ValueError):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))
        self.problems = problems


def load_chaos_scenario(data: Mapping[str, Any], *, source: str = "") -> ChaosScenario:
    """Validate ``data`` into a :class:`ChaosScenario`; :class:`ChaosConfigError` names each bad field."""
    if not isinstance(data, Mapping):
        raise ChaosConfigError([(source, f"a scenario must be a table, got {type(data).__name__}")])
    try:
        return ChaosScenario.model_validate(dict(data))
    except ValidationError as exc:
        problems: list[tuple[str, str]] = []
        for error in exc.errors(include_url=False):
            cause = error.get("ctx", {}).get("error")
            if isinstance(cause, _WindowProblems):
                problems.extend(cause.problems)
        if not problems:
            problems = list(config_error_from_validation(exc).problems)
        raise ChaosConfigError([(_prefixed(source, path), message) for path, message in problems]) from None


def _prefixed(source: str, path: str) -> str:
    if not source:
        return path
    return f"{source}: {path}" if path else source


def load_chaos_scenario_file(path: str | Path) -> ChaosScenario:
    """Read a TOML scenario; the scenario's ``name`` defaults to the file's stem."""
    file = Path(path)
    data = read_toml(file, ChaosConfigError)
    data.setdefault("name", file.stem)
    return load_chaos_scenario(data, source=file.name)


#: Report order of the built-in scenarios (others follow alphabetically).
BUILTIN_ORDER = (
    "outage",
    "long-outage",
    "brownout",
    "rate-limit",
    "flapping",
    "slow-ttft",
    "cost-vs-reliability",
    "all-down",
    "outage-return",
    "single-blip",
    "capacity",
    "cold-start",
    "heavy-tail",
)


def builtin_scenarios() -> dict[str, Path]:
    """The scenarios shipped with the package, by name, in report order."""
    folder = resources.files(_SCENARIO_PACKAGE) / "scenarios"
    found: dict[str, Path] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".toml"):
            found[entry.name.removesuffix(".toml")] = Path(str(entry))

    def rank(name: str) -> tuple[int, str]:
        return (BUILTIN_ORDER.index(name) if name in BUILTIN_ORDER else len(BUILTIN_ORDER), name)

    return {name: found[name] for name in sorted(found, key=rank)}


def resolve_scenario(name_or_path: str) -> ChaosScenario:
    """A built-in scenario by name (``outage``), or a TOML file by path."""
    builtin = builtin_scenarios()
    if name_or_path in builtin:
        return load_chaos_scenario_file(builtin[name_or_path])
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        return load_chaos_scenario_file(candidate)
    raise ChaosConfigError(
        [("--scenario", f"no built-in scenario {name_or_path!r} and no such file; built-in: {', '.join(builtin)}")]
    )
