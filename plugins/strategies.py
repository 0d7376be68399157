"""Built-in routing strategies: cost-optimal, latency-optimal, quality-optimal, failover.

Scores rank the candidates (the order of the backup chain); :meth:`Strategy.pick` chooses the one a
request goes to. latency-optimal spreads load by power of two choices over a load-aware peak-EWMA
cost; cost- and quality-optimal keep a strict preference and overflow to the next provider only
while the preferred one sheds load (recent failures, 429s); failover is priority order gated by
the breakers (the router already leaves out providers whose breaker is open). The three priority
strategies pass over a suspect provider (failures close together, a brownout) except for probes.
"""

from __future__ import annotations

from collections.abc import Sequence

from pi_builder_middleware import Candidate, RouteRequest, Strategy, StrategyContext, StrategyRegistry, hookimpl

__all__ = ["CostOptimal", "FailoverFirst", "LatencyOptimal", "QualityOptimal", "first_unsuspected", "shed_probability"]

_MIN_AVAILABILITY = 0.05  # floor so a dead provider's expected cost/latency stays finite
_UNKNOWN_EDGE = 0.95  # latency-optimal: a provider without data is costed just under the best known, so it is tried


def _normalise_lower_better(values: Sequence[float]) -> list[float]:
    best = min(values)
    if best <= 0:
        return [1.0 if v <= 0 else 0.0 for v in values]
    return [best / v for v in values]


def shed_probability(c: Candidate) -> float:
    """How likely a request should pass this provider over for the next one: 0 when it is healthy.

    Recent health failures (decayed; one failure now reads 1.0) and the share of recent answers that
    were 429s each shed traffic; both fade with their half-lives, so the provider's share comes back
    by itself (and the requests it still gets tell whether it recovered).
    """
    failures = c.recent_failures
    shed = failures / (1.0 + failures)
    return shed if shed > c.rate_limited else c.rate_limited


def first_unsuspected(ranked: Sequence[Candidate], ctx: StrategyContext) -> int:
    """Index of the first candidate that is not suspect, or is a suspect due a probe (0 if none is).

    A suspect (two failures close together, or much slower than usual: ``Candidate.suspect``) is
    passed over for the next provider, except for one probe request at a time every
    ``RoutingConfig.probe_interval_s``, which tells when it is back.
    """
    now = -1.0
    for index, c in enumerate(ranked):
        if not c.suspect:
            return index
        if now < 0.0:
            now = ctx.clock()
        if c.probe_due(now):
            return index
    return 0


class _Preference(Strategy):
    """A fixed preference (the scores) that overflows down the ranking while a provider sheds load,
    and passes over a suspect provider except for its probes."""

    def pick(self, ranked: Sequence[Candidate], request: RouteRequest, ctx: StrategyContext) -> int:
        last = len(ranked) - 1
        rng = ctx.rng
        now = -1.0
        for index, c in enumerate(ranked):
            if index == last:
                break
            if c.suspect:
                if now < 0.0:
                    now = ctx.clock()
                if c.probe_due(now):
                    return index  # the probe goes whatever the shedding says: it is how recovery is seen
                continue
            shed = shed_probability(c)
            if shed <= 0.0 or rng.random() >= shed:
                return index
        if ranked[last].suspect:  # everybody after the preferred ones is suspect too: keep the preference
            return first_unsuspected(ranked, ctx)
        return last


class CostOptimal(_Preference):
    """Cheapest expected cost for the request's token estimate; the cheapest carries the traffic.

    Expected cost divides the price by availability: a provider that fails half the time costs
    about twice as much per answer once retries elsewhere are counted.
    """

    name = "cost-optimal"

    def rank(self, candidates: Sequence[Candidate], request: RouteRequest, ctx: StrategyContext) -> list[float]:
        per_in, per_out = request.input_tokens / 1000.0, request.output_tokens / 1000.0  # Provider.cost_of, inlined
        costs = [
            (c.price_in * per_in + c.price_out * per_out)
            / (c.availability if c.availability > _MIN_AVAILABILITY else _MIN_AVAILABILITY)
            for c in candidates
        ]
        return _normalise_lower_better(costs)


class QualityOptimal(_Preference):
    """Most capable provider (``Provider.quality``) among those that pass the filters."""

    name = "quality-optimal"

    def rank(self, candidates: Sequence[Candidate], request: RouteRequest, ctx: StrategyContext) -> list[float]:
        return [c.provider.quality for c in candidates]


class LatencyOptimal(Strategy):
    """Lowest expected latency under load, chosen by power of two choices.

    Cost = peak-EWMA latency (TTFT for streaming requests when known) × (in-flight + 1) × the
    candidate's ``penalty`` ((1 + recent failures) / (availability × share of calls accepted)): a fast
    failure does not look fast, a loaded provider looks slower, and a provider that just failed
    steps back until its failure fades. A provider without data is costed just under the best known
    latency, so it is tried (its first calls are its warm-up). Each request compares two random
    candidates and takes the cheaper (Finagle/Linkerd's P2C): load spreads, and a stale estimate
    cannot herd every request onto one provider. The two are drawn from the candidates whose cost is within
    ``RoutingConfig.spread_within`` (1.5) of the cheapest: a provider much slower than the best
    gets no share while the best is idle, and a share as soon as the best's load makes it costlier.
    The router adds bounded exploration probes (``explores``).
    """

    name = "latency-optimal"
    explores = True

    def rank(self, candidates: Sequence[Candidate], request: RouteRequest, ctx: StrategyContext) -> list[float]:
        if request.stream:
            known = [c.latency_s if c.ttft_s is None else c.ttft_s for c in candidates]
        else:
            known = [c.latency_s for c in candidates]
        if None in known:
            measured = [v for v in known if v is not None]
            fallback = min(measured) * _UNKNOWN_EDGE if measured else 1.0
            known = [fallback if v is None else v for v in known]
        costs = [
            v * (c.inflight + 1) * c.penalty  # type: ignore[operator]  # None replaced above
            for v, c in zip(known, candidates, strict=True)
        ]
        return _normalise_lower_better(costs)

    def pick(self, ranked: Sequence[Candidate], request: RouteRequest, ctx: StrategyContext) -> int:
        n = _near_best(ranked, request.stream, ctx.spread_within)
        if n < 2:
            return 0
        first = ctx.rng.randrange(n)
        second = ctx.rng.randrange(n - 1)
        if second >= first:
            second += 1
        return first if first < second else second  # ranked best first: the lower index is the cheaper


def _near_best(ranked: Sequence[Candidate], stream: bool, within: float) -> int:
    """How many of ``ranked`` (cheapest first) cost at most ``within`` times the cheapest: the field
    power of two choices draws from. Found by bisection (the ranking is by cost), so it costs a few
    cost evaluations, not one per candidate. Providers without data count as near (they are costed
    just under the best known latency)."""
    limit = 0.0
    for c in ranked:
        value = c.ttft_s if stream and c.ttft_s is not None else c.latency_s
        if value is not None:
            limit = value * (c.inflight + 1) * c.penalty * within
            break
    else:
        return len(ranked)
    lo, hi = 1, len(ranked)  # ranked[:lo] is near; find the first index that is not
    while lo < hi:
        mid = (lo + hi) // 2
        c = ranked[mid]
        value = c.ttft_s if stream and c.ttft_s is not None else c.latency_s
        if value is None or value * (c.inflight + 1) * c.penalty <= limit:
            lo = mid + 1
        else:
            hi = mid
    return lo


class FailoverFirst(Strategy):
    """Priority order gated by health: the first provider (``priority``, then the order given) whose
    breaker lets calls through takes the traffic, and gets it back as soon as its breaker closes.

    The health scorer is the gate: a provider it scores 0 goes behind the others (the built-in
    scorer gives 0 only to an open breaker); any other score keeps the priority order, so one
    failed call does not move traffic away; the breaker policy decides when a provider is out.
    Short of that, a *suspect* provider (two failures close together, or answering several times
    slower than usual) passes its traffic to the next one and gets one probe request at a time,
    and takes its traffic back with the first probe that shows it well again.
    """

    name = "failover"

    def rank(self, candidates: Sequence[Candidate], request: RouteRequest, ctx: StrategyContext) -> list[float]:
        score = ctx.health_scorer.score
        return [1.0 if score(c) > 0.0 else 0.0 for c in candidates]

    def pick(self, ranked: Sequence[Candidate], request: RouteRequest, ctx: StrategyContext) -> int:
        return first_unsuspected(ranked, ctx)


@hookimpl(trylast=True)
def pbm_register_strategies(registry: StrategyRegistry) -> None:
    """Register the built-in strategies (a plugin registering the same name wins)."""
    for strategy in (CostOptimal(), LatencyOptimal(), QualityOptimal(), FailoverFirst()):
        registry.add_default(strategy)
