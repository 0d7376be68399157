"""The demo's embedded scenario: three simulated providers and the trouble they get into."""

from __future__ import annotations

from dataclasses import dataclass

from pi_builder_middleware.testing import Behaviour, FaultWindow, Latency, Scenario, SimOutcome, SimProvider

__all__ = ["DemoProvider", "DemoScenario", "default_scenario", "from_chaos"]


@dataclass(frozen=True, slots=True)
class DemoProvider:
    """A simulated provider plus the price and quality the middleware is told about."""

    sim: SimProvider
    cost_per_1k_input: float
    cost_per_1k_output: float
    quality: float


@dataclass(frozen=True, slots=True)
class DemoScenario:
    """Providers, load and length of one demo run."""

    providers: tuple[DemoProvider, ...]
    duration_s: float
    rate_per_s: float
    concurrency: int
    stream_share: float
    seed: int

    def sim_scenario(self) -> Scenario:
        """The simulator's view of the providers."""
        return Scenario(seed=self.seed, providers=tuple(p.sim for p in self.providers))

    def fault_label(self, name: str, t: float) -> str:
        """What trouble provider ``name`` is in at time ``t`` (seconds since start), for the view."""
        for p in self.providers:
            if p.sim.name != name:
                continue
            active = [w for w in p.sim.faults if w.active_at(t)]
            if not active:
                return "ok"
            w = active[-1]
            parts = []
            if w.error_rate:
                kinds = "/".join(k.value for k in (w.errors or {}))
                parts.append(f"{w.error_rate:.0%} {kinds}".strip())
            if w.latency_multiplier != 1.0:
                parts.append(f"latency x{w.latency_multiplier:g}")
            return ", ".join(parts) or "ok"
        return "?"


def default_scenario(duration_s: float = 60.0) -> DemoScenario:
    """An outage, a rate-limit burst and a brown-out, scaled to ``duration_s``."""
    d = duration_s
    outage = FaultWindow(start_s=0.15 * d, end_s=0.45 * d, error_rate=1.0, errors={SimOutcome.SERVICE_UNAVAILABLE: 1.0})
    rate_limited = FaultWindow(
        start_s=0.55 * d,
        end_s=0.65 * d,
        error_rate=0.8,
        errors={SimOutcome.RATE_LIMIT: 1.0},
        retry_after_s=max(1.0, 0.05 * d),
    )
    brown_out = FaultWindow(
        start_s=0.7 * d,
        end_s=0.85 * d,
        error_rate=0.3,
        latency_multiplier=5.0,
        errors={SimOutcome.SERVER_ERROR: 1.0},
    )
    return DemoScenario(
        providers=(
            _provider("openai-fast", (120, 0.25), 60, 400, outage, prices=(0.0025, 0.01, 0.9)),
            _provider("anthropic-solid", (260, 0.2), 120, 300, rate_limited, prices=(0.003, 0.015, 0.95)),
            _provider("local-cheap", (400, 0.3), 200, 200, brown_out, prices=(0.0002, 0.0006, 0.6)),
        ),
        duration_s=d,
        rate_per_s=10.0,
        concurrency=8,
        stream_share=0.25,
        seed=7,
    )


def _provider(
    name: str,
    latency: tuple[float, float],
    ttft_ms: float,
    tokens_per_second: float,
    fault: FaultWindow,
    *,
    prices: tuple[float, float, float],
) -> DemoProvider:
    """A demo provider: lognormal latency (median ms, spread), first token, stream speed, one fault window;
    ``prices``: cost per 1k input and output tokens, and quality."""
    behaviour = Behaviour(
        latency=Latency.lognormal(*latency),
        ttft=Latency.lognormal(ttft_ms, 0.3),
        tokens_per_second=tokens_per_second,
        response_tokens=24,
    )
    return DemoProvider(SimProvider(name=name, behaviour=behaviour, faults=(fault,)), *prices)


def from_chaos(name_or_path: str, duration_s: float | None = None) -> DemoScenario:
    """A chaos-benchmark scenario (built-in name or TOML path) as a demo; faults keep their times.

    Raises the chaos loader's ``ChaosConfigError`` (a ValueError naming the field) for a bad one.
    """
    from pi_builder_middleware.tools.chaos.scenario import resolve_scenario

    chaos = resolve_scenario(name_or_path)
    providers = tuple(
        DemoProvider(p.to_sim(chaos.load.output_tokens), p.cost_per_1k_input, p.cost_per_1k_output, p.quality)
        for p in chaos.providers
    )
    return DemoScenario(
        providers=providers,
        duration_s=duration_s or chaos.load.duration_s,
        rate_per_s=chaos.load.rate_rps,
        concurrency=chaos.load.concurrency,
        stream_share=chaos.load.stream_share,
        seed=chaos.seed,
    )
