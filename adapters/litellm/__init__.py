"""LiteLLM adapter: health-aware routing, monitoring and failover inside your own ``litellm.Router``.

::

    from litellm import Router
    from pi_builder_middleware.adapters.litellm import install

    router = Router(model_list=[...], num_retries=2, retry_after=0, disable_cooldowns=True)
    handle = install(router, strategy="latency-optimal", failover="balanced")  # or middleware=mw
    await router.acompletion(model="gpt-4o", messages=[...])   # unchanged calls
    handle.middleware.health("<deployment id>")               # live health per deployment
    handle.uninstall()                                         # router back to how it was

What ``install`` adds
---------------------
- A routing strategy (``router.register_plugin``; ``set_custom_routing_strategy`` on LiteLLM 1.80–1.108,
  where the candidates come from ``_legacy``: the group minus cooldowns, paused deployments and open
  breakers, without LiteLLM's tag / ``order`` / pre-call filters).
  For every pick, it takes the group's healthy deployments (LiteLLM's cooldowns, ``order`` groups, tags and
  pre-call checks still apply; see *Candidates*) and lets the middleware choose among them:
  ``RouteRequest(candidates=<those ids>, stream=<stream>)``. A retry or fallback attempt avoids
  deployments the same request already tried while another candidate remains.
- A ``CustomLogger`` in ``litellm.callbacks`` that records every attempt (success, failure, each retry
  and fallback; sync and async; streaming and not) with deployment id, latency, time to first token
  (streams), tokens, ``response_cost``, the exception (classified by the middleware), HTTP status and
  Retry-After. Its ``async_filter_deployments`` removes deployments whose breaker is open.
- Providers come from the deployments: provider id = deployment id (``model_info["id"]``); prices
  from ``model_info`` / ``litellm_params`` ``input_cost_per_token``/``output_cost_per_token`` or
  LiteLLM's price map; quality from ``model_info["quality"]``; capabilities from
  ``model_info["capabilities"]`` and LiteLLM's ``supports_*`` flags; ``order`` as priority.
  Deployments added to the router later are picked up on the next pick or event.

When everything is excluded
---------------------------
When every healthy candidate is ruled out by the middleware (all breakers open or rate limited), a request's
first pick goes to the deployment re-admitted soonest (``panic_picks``; with ``max_wait_s`` it may wait for
it first); a retry of a request that already failed in the group gets LiteLLM's ``RouterRateLimitError``
instead of another attempt (``retries_declined``), so ``num_retries`` does not multiply into a dead group.
When the middleware has no answer at all (``when_all_out="fail"``, or the request's own limits), the call is
still not failed by us: it goes to the deployment of LiteLLM's healthy list re-admitted soonest (preferring
ones not yet tried by this request), counted in ``handle.stats()["fallback_picks"]`` with a warning logged.
The filter never returns an empty list. Only explicit per-request options (``metadata={"pi_builder_middleware":
{"exclude": [...], "required_capabilities": [...]}}``) are hard constraints; if nothing meets them the pick
raises ``NoProviderAvailableError``.

How the two layers combine (recommended Router settings)
--------------------------------------------------------
- ``num_retries``: 1–2 (at most the group size − 1) with ``retry_after=0``. Each retry goes to a
  *different* deployment chosen by the middleware, so retries are in-group failover and need no
  backoff. More retries multiply with ``fallbacks`` into retry storms during wide outages. (The Router
  already runs the provider SDKs without their own retries: one HTTP request per attempt.)
- Cooldowns: LiteLLM 1.110 cools a deployment for its Retry-After after a 429 in a multi-deployment
  group, and for a fixed ``cooldown_time`` once it exceeds ``allowed_fails``; it does not extend the
  cooldown on repeat failures, and a cooled deployment is hidden from the middleware's half-open trial.
  The two exclusions do not add up (a deployment is out while either layer excludes it). Recommended:
  ``disable_cooldowns=True`` so the middleware alone decides (growing ejections, half-open probing,
  exact Retry-After); or, to keep LiteLLM's as a backstop, ``allowed_fails`` at least the preset's
  ``consecutive_failures`` and a short ``cooldown_time``.
- ``fallbacks`` / ``context_window_fallbacks`` / ``content_policy_fallbacks`` keep working; the
  fallback group's pick also goes through the middleware. Context-window and content-policy errors are
  not counted against a deployment's health.
- Set ``timeout`` / ``stream_timeout``: a hung deployment then becomes a timeout, recorded as a health
  failure and retried elsewhere.
- Mid-stream failures are recorded (as connection errors) but LiteLLM does not fail over after the
  first chunk was delivered; failures before the first chunk are retried and fall back as usual.

Candidates
----------
``install(candidates="auto")`` (default) picks among the group's deployments minus LiteLLM's cooldowns and
paused deployments wherever that equals LiteLLM's healthy list (no ``order`` groups, tags, pre-call
checks, team/budget/health-check filters or other callbacks' filters in play; verified against LiteLLM's
own answer after every deployment change and every second), and among LiteLLM's healthy list elsewhere
(``handle.strategy.auto_status()``). ``"healthy"`` always asks LiteLLM (one extra selection per pick);
``"group"`` never does. Sync ``router.completion`` picks always use the group minus cooldowns: LiteLLM's
sync path has no selection to ask.

LiteLLM's routing strategy names
--------------------------------
Without ``strategy=`` the router's ``routing_strategy`` decides: ``cost-based-routing`` → cost-optimal,
``latency-based-routing`` → latency-optimal, LiteLLM's default ``simple-shuffle`` → :class:`HealthShuffle`; one
without an equivalent (``usage-based-routing-v2``, ``least-busy``) keeps LiteLLM picking (``route=False``),
logged once. Per request, ``routing_strategy=`` picks the mapped strategy (``simple-shuffle`` →
:class:`HealthShuffle`). See ``_names``.

The LiteLLM proxy
-----------------
``litellm_settings: callbacks: ["pi_builder_middleware.adapters.litellm.proxy.handler"]`` in the proxy's
``config.yaml`` installs the middleware on the proxy's Router (and again on every Router the proxy builds
later); settings from ``litellm_settings.pi_builder_middleware`` or ``PBM_*`` variables (see ``proxy``).

Process-wide callbacks
----------------------
LiteLLM callbacks are global. Each installation's strategy stamps a router token (and the request's
``litellm_trace_id``) into LiteLLM's own request metadata (``metadata["pi_builder_middleware_router"]``,
or ``litellm_metadata`` where LiteLLM keeps its own there, e.g. the Responses API whose ``metadata`` is
sent to the provider). LiteLLM carries it into every event of that request, so two routers with their
own middlewares in one process never see each other's outcomes (even with identical deployment ids),
and a metadata dict reused across requests cannot carry a stale stamp. ``install(..., route=False)``
(keep LiteLLM's strategy) has no token and matches events by deployment id. Installing twice on one
router raises ``ConfigError``; use :func:`installed` to get the existing handle.
"""

from __future__ import annotations

from ._binding import METADATA_KEY, ROUTE_OPTIONS_KEY
from ._events import LiteLLMFailure, MiddlewareCallback
from ._install import LiteLLMHandle, install, installed
from ._names import LITELLM_STRATEGIES
from ._providers import CAPABILITY_FLAGS, deployment_id, provider_from_deployment
from ._shuffle import HealthShuffle
from ._strategy import MiddlewareRoutingStrategy, route_request

__all__ = [
    "CAPABILITY_FLAGS",
    "LITELLM_STRATEGIES",
    "METADATA_KEY",
    "ROUTE_OPTIONS_KEY",
    "HealthShuffle",
    "LiteLLMFailure",
    "LiteLLMHandle",
    "MiddlewareCallback",
    "MiddlewareRoutingStrategy",
    "deployment_id",
    "install",
    "installed",
    "provider_from_deployment",
    "route_request",
]
