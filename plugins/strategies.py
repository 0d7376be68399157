"""Built-in routing strategies: cost-optimal, latency-optimal, quality-optimal, failover."""

from __future__ import annotations

from collections.abc import Sequence

from pi_builder_middleware import Candidate, RouteRequest, Strategy, StrategyContext, StrategyRegistry, hookimpl

__all__ = ["CostOptimal", "FailoverFirst", "LatencyOptimal", "QualityOptimal"]

_MIN_AVAILABILITY = 0.05  # floor so a dead provider's expected cost/latency stays finite


def _normalise_lower_better(values: Sequence[float]) -> list[float]:
    best = min(values)
    if best <= 0:
        return [1.0 if v <= 0 else 0.0 for v in values]
    return [best / v for v in values]


class CostOptimal(Strategy):
    """Cheapest expected cost for the request's token estimate.

    Expected cost divides the price by availability: a provider that fails half the time costs
    about twice as much per answer once retries elsewhere are counted.
    """

    name = "cost-optimal"

    def rank(self, candidates: Sequence[Candidate], request: RouteRequest, ctx: StrategyContext) -> list[float]:
        costs = [
            c.provider.cost_of(request.input_tokens, request.output_tokens) / max(c.availability, _MIN_AVAILABILITY)
            for c in candidates
        ]
        return _normalise_lower_better(costs)


class LatencyOptimal(Strategy):
    """Fastest expected latency from live measurements.

    Latency is the smoothed latency of successful calls (time to first token for streaming
    requests when known), divided by availability so fast failures do not look fast. A provider
    without data is explored: it is ranked just ahead of the best known provider for its first
    ``min_samples`` picks, then at the median of the known ones until its own data arrives.
    """

    name = "latency-optimal"

    def rank(self, candidates: Sequence[Candidate], request: RouteRequest, ctx: StrategyContext) -> list[float]:
        known: list[float | None] = []
        for c in candidates:
            lat = c.ttft_s if request.stream and c.ttft_s is not None else c.latency_s
            known.append(None if lat is None else lat / max(c.availability, _MIN_AVAILABILITY))
        measured = sorted(v for v in known if v is not None)
        if not measured:
            return [1.0] * len(candidates)
        best, median, worst = measured[0], measured[len(measured) // 2], measured[-1]
        estimates: list[float] = []
        for c, value in zip(candidates, known, strict=True):
            if value is not None:
                estimates.append(value)
            elif c.samples >= ctx.min_samples:
                estimates.append(worst * 2)  # plenty of calls, none succeeded
            elif c.explore_picks < ctx.min_samples:
                estimates.append(best * 0.999)
            else:
                estimates.append(median)
        return _normalise_lower_better(estimates)


class QualityOptimal(Strategy):
    """Most capable provider (``Provider.quality``) among those that pass the filters."""

    name = "quality-optimal"

    def rank(self, candidates: Sequence[Candidate], request: RouteRequest, ctx: StrategyContext) -> list[float]:
        return [c.provider.quality for c in candidates]


class FailoverFirst(Strategy):
    """Most reliable first, by the health scorer (availability and breaker state); ties keep priority order."""

    name = "failover"

    def rank(self, candidates: Sequence[Candidate], request: RouteRequest, ctx: StrategyContext) -> list[float]:
        return [ctx.health_scorer.score(c) for c in candidates]


@hookimpl(trylast=True)
def pbm_register_strategies(registry: StrategyRegistry) -> None:
    """Register the built-in strategies (a plugin registering the same name wins)."""
    for strategy in (CostOptimal(), LatencyOptimal(), QualityOptimal(), FailoverFirst()):
        registry.add_default(strategy)
