"""Turning the entry points' constructor arguments into checked models, middleware and settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from langchain_core.runnables import Runnable

from pi_builder_middleware import (
    ConfigError,
    FailoverConfig,
    FailoverPreset,
    HedgePolicy,
    Middleware,
    Provider,
    RouteRequest,
    Strategy,
)

__all__ = [
    "DEFAULT_STRATEGY",
    "ProvidersArg",
    "Routing",
    "build_middleware",
    "check_max_wait",
    "check_models",
    "check_routing",
    "check_timeout",
    "derive",
    "hedges",
    "provider_tag",
    "runnable",
]

M = TypeVar("M", bound=Runnable[Any, Any])

#: Default order: the keys' order (the ``failover`` strategy: priority order gated by the breakers; every
#: provider has the same default priority, ties keep insertion order), so the first key is the primary and
#: the rest are backups, like ``with_fallbacks``; providers whose breaker is open are skipped, and a
#: recovered primary gets its half-open trial call and takes traffic back as soon as its breaker closes.
DEFAULT_STRATEGY = "failover"

#: Per-key provider settings: Provider objects (ids = model keys), or a mapping key -> Provider or
#: key -> dict of Provider fields (``cost_per_1k_input``, ``quality``, ``capabilities``, ...).
ProvidersArg = Iterable[Provider] | Mapping[str, Provider | Mapping[str, Any]]


def runnable(where: str, model: object) -> Runnable[Any, Any]:
    """``model`` if it is a LangChain Runnable; else ConfigError at ``where`` (e.g. ``"X.models['a']"``)."""
    if not isinstance(model, Runnable):
        raise ConfigError(where, f"expected a LangChain Runnable (e.g. a chat model), got {type(model).__name__}")
    return model


def check_models(
    models: Mapping[str, Any], owner: str, accept: Callable[[str, Any], M], kind: str = "Runnable"
) -> dict[str, M]:
    """A plain dict of the models, each through ``accept(where, model)`` (``runnable`` or a stricter check);
    ConfigError if ``models`` is no dict or empty, or a key no string (``kind``: what the values should be)."""
    if not isinstance(models, Mapping):
        raise ConfigError(f"{owner}.models", f"expected a dict of key -> {kind}, got {type(models).__name__}")
    if not models:
        raise ConfigError(f"{owner}.models", "give at least one model, e.g. {'openai/gpt-4o': ChatOpenAI(...)}")
    out: dict[str, M] = {}
    for key, model in models.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{owner}.models", f"keys must be non-empty strings (got {key!r})")
        out[key] = accept(f"{owner}.models[{key!r}]", model)
    return out


def _providers_by_key(keys: Iterable[str], providers: ProvidersArg | None, owner: str) -> list[Provider]:
    given: dict[str, Provider] = {}
    if isinstance(providers, Mapping):
        for key, value in providers.items():
            if isinstance(value, Provider):
                if value.id != key:
                    raise ConfigError(
                        f"{owner}.providers[{key!r}]", f"Provider id {value.id!r} must equal its key {key!r}"
                    )
                given[key] = value
            elif isinstance(value, Mapping):
                given[key] = Provider(id=key, **dict(value))
            else:
                raise ConfigError(
                    f"{owner}.providers[{key!r}]",
                    f"expected a Provider or a dict of its fields, got {type(value).__name__}",
                )
    elif providers is not None:
        for provider in providers:
            if not isinstance(provider, Provider):
                raise ConfigError(f"{owner}.providers", f"expected Provider objects, got {type(provider).__name__}")
            if provider.id in given:
                raise ConfigError(f"{owner}.providers", f"duplicate provider id {provider.id!r}")
            given[provider.id] = provider
    keys = list(keys)
    unknown = sorted(set(given) - set(keys))
    if unknown:
        raise ConfigError(
            f"{owner}.providers",
            f"no model for provider id(s) {', '.join(map(repr, unknown))}; ids must be keys of models "
            f"({', '.join(map(repr, keys))})",
        )
    return [given.get(key) or Provider(id=key) for key in keys]


def build_middleware(
    models: Mapping[str, Runnable[Any, Any]],
    *,
    middleware: Middleware | None,
    strategy: str | Strategy | None,
    failover: FailoverConfig | FailoverPreset | str | None,
    providers: ProvidersArg | None,
    owner: str,
    hedge: HedgePolicy | bool | None = None,
) -> Middleware:
    """The middleware to route with: ``middleware`` checked against the keys, or a new one built from them.

    A given middleware must know every key as a provider id (it may know more providers, e.g. when
    several wrappers share one view of provider health); ``strategy``/``failover``/``providers`` are
    then not allowed, because the middleware already has its own.
    """
    if hedge is not None and not isinstance(hedge, HedgePolicy | bool):
        raise ConfigError(f"{owner}.hedge", f"expected a HedgePolicy, True, False or None, got {type(hedge).__name__}")
    if middleware is None:
        policy = HedgePolicy() if hedge is True else hedge if isinstance(hedge, HedgePolicy) else None
        return Middleware(
            _providers_by_key(models, providers, owner),
            strategy=strategy or DEFAULT_STRATEGY,
            failover=failover,
            hedge=policy,
        )
    if not isinstance(middleware, Middleware):
        raise ConfigError(f"{owner}.middleware", f"expected a Middleware, got {type(middleware).__name__}")
    if isinstance(hedge, HedgePolicy):
        raise ConfigError(
            f"{owner}.hedge",
            "the Middleware you passed (middleware=...) decides hedging; set it "
            "there: Middleware(..., hedge=HedgePolicy(...)); here only False "
            "turns it off",
        )
    if hedge is True and middleware.hedger is None:
        raise ConfigError(
            f"{owner}.hedge",
            "the Middleware you passed has no HedgePolicy; build it with Middleware(..., hedge=HedgePolicy(...))",
        )
    for name, value in (("providers", providers), ("strategy", strategy), ("failover", failover)):
        if value is not None:
            raise ConfigError(
                f"{owner}.{name}", f"the Middleware you passed (middleware=...) has its own {name}; set it there"
            )
    missing = [key for key in models if key not in middleware.providers]
    if missing:
        known = ", ".join(map(repr, middleware.providers)) or "none"
        raise ConfigError(
            f"{owner}.middleware",
            f"no provider for model key(s) {', '.join(map(repr, missing))} in the middleware "
            f"(its providers: {known}); provider ids must equal the keys of models",
        )
    return middleware


def check_timeout(value: float | None, owner: str) -> float | None:
    """``first_chunk_timeout_s`` checked: None or a number > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{owner}.first_chunk_timeout_s", f"must be a number of seconds > 0 or None (got {value!r})")
    return float(value)


def check_max_wait(value: float, owner: str) -> float:
    """``max_wait_s`` checked: a finite number of seconds >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        raise ConfigError(
            f"{owner}.max_wait_s",
            f"must be a number of seconds >= 0 (0: fail at once when no provider can answer; "
            f"e.g. the caller's timeout to wait out an outage of every provider), got {value!r}",
        )
    return float(value)


def hedges(middleware: Middleware, hedge: HedgePolicy | bool | None) -> bool:
    """Whether a wrapper's async calls hedge: its middleware has a HedgePolicy and ``hedge`` is not False."""
    return middleware.hedger is not None and hedge is not False


def provider_tag(provider_id: str) -> str:
    """Tag on the child run of each attempt, so traces show which provider a call went to."""
    return f"pbm:provider={provider_id}"


def derive(
    models: Mapping[str, Runnable[Any, Any]], method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Runnable[Any, Any]]:
    """``{key: model.<method>(*args, **kwargs)}``, e.g. for ``bind_tools``; names the model that cannot."""
    out: dict[str, Runnable[Any, Any]] = {}
    for key, model in models.items():
        fn = getattr(model, method, None)
        if not callable(fn):
            raise NotImplementedError(
                f"model {key!r} ({type(model).__name__}) has no {method}(); wrap only models that support it"
            )
        try:
            out[key] = fn(*args, **kwargs)
        except NotImplementedError as exc:
            raise NotImplementedError(
                f"model {key!r} ({type(model).__name__}) does not implement {method}(); "
                f"wrap only models that support it"
            ) from exc
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class Routing(Generic[M]):
    """An entry point's checked routing arguments (what each of them keeps)."""

    models: dict[str, M]
    middleware: Middleware
    route: RouteRequest | None
    hedge: bool
    first_chunk_timeout_s: float | None
    max_wait_s: float

    def fields(self) -> dict[str, Any]:
        """The pydantic fields of the runnable wrappers (a shallow dict: the middleware is shared, not copied)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


def check_routing(
    owner: str,
    models: dict[str, M],
    *,
    middleware: Middleware | None,
    strategy: str | Strategy | None,
    failover: FailoverConfig | FailoverPreset | str | None,
    providers: ProvidersArg | None,
    first_chunk_timeout_s: float | None,
    max_wait_s: float,
    route: RouteRequest | None,
    hedge: HedgePolicy | bool | None,
) -> Routing[M]:
    """The constructor checks of every entry point (wrappers and agent middleware), over checked ``models``."""
    mw = build_middleware(
        models,
        middleware=middleware,
        strategy=strategy,
        failover=failover,
        providers=providers,
        owner=owner,
        hedge=hedge,
    )
    if route is not None and not isinstance(route, RouteRequest):
        raise ConfigError(f"{owner}.route", f"expected a RouteRequest or None, got {type(route).__name__}")
    return Routing(
        models=models,
        middleware=mw,
        route=route,
        hedge=hedges(mw, hedge),
        first_chunk_timeout_s=check_timeout(first_chunk_timeout_s, owner),
        max_wait_s=check_max_wait(max_wait_s, owner),
    )
