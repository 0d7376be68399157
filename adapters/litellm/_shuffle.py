"""``health-shuffle``: LiteLLM's ``simple-shuffle`` with health in it (what ``simple-shuffle`` maps to)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pi_builder_middleware import Candidate, RouteRequest, Strategy, StrategyContext

__all__ = ["HealthShuffle", "shuffle_weight"]

#: Deployment fields LiteLLM's simple-shuffle weighs by, in its order of precedence.
_WEIGHT_FIELDS = ("weight", "rpm", "tpm")


def _shed(c: Candidate) -> float:
    """How much of its share a candidate gives up now: recent failures (decayed) or its share of 429s."""
    failures = c.recent_failures
    return max(failures / (1.0 + failures), c.rate_limited)


def shuffle_weight(deployment: Mapping[str, Any]) -> float | None:
    """The weight LiteLLM's simple-shuffle gives a deployment (``weight``, else ``rpm``, else ``tpm``)."""
    sources = [deployment.get("litellm_params"), deployment.get("model_info"), deployment]
    for field in _WEIGHT_FIELDS:
        for source in sources:
            value = source.get(field) if isinstance(source, Mapping) else None
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                return float(value)
    return None


class HealthShuffle(Strategy):
    """A random pick among the healthy candidates, weighted as LiteLLM's ``simple-shuffle`` weighs them.

    Weights are the deployments' ``weight`` (else ``rpm``, else ``tpm``; equal when none sets one) times
    (1 − the candidate's shed probability), so a deployment that just failed or is answering 429s gets
    less traffic until that fades. Suspect candidates are passed over except for their probes; open
    breakers are already left out by the router.
    """

    name = "health-shuffle"

    def __init__(self, weight_of: Callable[[str], float | None] | None = None) -> None:
        self._weight_of = weight_of

    def _weights(self, candidates: Sequence[Candidate]) -> list[float]:
        lookup = self._weight_of
        raw = [lookup(c.provider.id) if lookup is not None else None for c in candidates]
        if all(w is None for w in raw):
            base = [1.0] * len(candidates)
        else:  # LiteLLM weighs only when deployments set one; unset ones count as the smallest set weight
            floor = min(w for w in raw if w is not None)
            base = [w if w is not None else floor for w in raw]
        return [b * (1.0 - _shed(c)) for b, c in zip(base, candidates, strict=True)]

    def rank(self, candidates: Sequence[Candidate], request: RouteRequest, ctx: StrategyContext) -> list[float]:
        weights = self._weights(candidates)
        top = max(weights, default=0.0)
        return [w / top if top > 0 else 1.0 for w in weights]

    def pick(self, ranked: Sequence[Candidate], request: RouteRequest, ctx: StrategyContext) -> int:
        usable = [i for i, c in enumerate(ranked) if not c.suspect]
        now = ctx.clock()
        for index, c in enumerate(ranked):
            if c.suspect and c.probe_due(now):
                return index  # one probe at a time tells when a suspect is back
        if not usable:
            return 0  # every candidate is suspect: the best-ranked one
        weights = self._weights([ranked[i] for i in usable])
        total = sum(weights)
        if total <= 0:
            return usable[int(float(ctx.rng.random()) * len(usable)) % len(usable)]
        point = float(ctx.rng.random()) * total
        for index, weight in zip(usable, weights, strict=True):
            point -= weight
            if point < 0:
                return index
        return usable[-1]
