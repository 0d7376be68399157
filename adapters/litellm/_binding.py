"""State shared by one installation's routing strategy and callback: the router, the middleware, the
provider sync, the router token that tells this router's events from others', and counters."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
import weakref
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pi_builder_middleware import ConfigError, Middleware

from ._providers import deployment_id, provider_from_deployment

__all__ = [
    "COUNTERS",
    "METADATA_KEY",
    "ROUTE_OPTIONS_KEY",
    "TRACE_KEY",
    "Binding",
    "metadata_field",
    "request_token",
    "stamped_trace",
]

log = logging.getLogger("pi_builder_middleware.adapters.litellm")

#: Key in a request's ``metadata`` under which the routing strategy stamps its router token; LiteLLM
#: carries it into every logging event of that request, which is how events find their router.
METADATA_KEY = "pi_builder_middleware_router"
#: Key beside it holding the request's ``litellm_trace_id`` when stamped: LiteLLM writes into the caller's
#: own metadata dict, so a dict reused for another request carries an old stamp; the trace id exposes it.
TRACE_KEY = "pi_builder_middleware_trace"
#: Every adapter counter (``handle.stats()``): picks (``picks_fast`` from the group, ``picks_healthy`` from
#: LiteLLM's healthy list, ``panic_picks`` the middleware's all-out decisions, ``waits`` for a re-admission
#: (``max_wait_s``), ``fallback_picks`` drawn from LiteLLM's list), ``auto_checks`` / ``auto_mismatches``
#: (candidates="auto" comparisons), recording, in-flight attempts (``attempts_begun`` = ended + cancelled +
#: expired + those still in flight), filtering and errors.
COUNTERS = (
    "picks",
    "picks_fast",
    "picks_healthy",
    "panic_picks",
    "retries_declined",
    "waits",
    "fallback_picks",
    "auto_checks",
    "auto_mismatches",
    "recorded_ok",
    "recorded_failure",
    "duplicate_events",
    "cache_hits_ignored",
    "unknown_deployment",
    "filtered_out",
    "filter_kept_all",
    "trials_released",
    "attempts_begun",
    "attempts_ended",
    "attempts_cancelled",
    "attempts_expired",
    "provider_syncs",
    "hook_errors",
)
#: Key in a request's ``metadata`` for per-request routing options (see ``route_request``).
ROUTE_OPTIONS_KEY = "pi_builder_middleware"


def metadata_field(request_kwargs: Mapping[str, Any]) -> str:
    """Where LiteLLM keeps its own metadata for this request: ``litellm_metadata`` when present (Responses,
    Anthropic messages, ...: there ``metadata`` is the caller's and goes to the provider), else ``metadata``."""
    return "litellm_metadata" if "litellm_metadata" in request_kwargs else "metadata"


def _stamp_value(request_kwargs: Mapping[str, Any] | None, key: str) -> str | None:
    if not request_kwargs:
        return None
    for field in ("litellm_metadata", "metadata"):
        metadata = request_kwargs.get(field)
        if isinstance(metadata, Mapping):
            value = metadata.get(key)
            if isinstance(value, str):
                return value
    return None


def request_token(request_kwargs: Mapping[str, Any] | None) -> str | None:
    """The router token stamped on a request (or an event's ``litellm_params``), if any."""
    return _stamp_value(request_kwargs, METADATA_KEY)


def stamped_trace(request_kwargs: Mapping[str, Any] | None) -> str | None:
    """The ``litellm_trace_id`` recorded with the router token, if any."""
    return _stamp_value(request_kwargs, TRACE_KEY)


class Binding:
    """One router ↔ one middleware. Holds the router weakly so an abandoned router can be collected."""

    #: An attempt whose end was never seen (a stream nobody finished reading, a lost event) stops counting as
    #: in flight after this many seconds (middleware clock). LiteLLM's own calls time out well before.
    attempt_timeout_s: float = 600.0
    #: At most this many attempts are tracked; beyond it the oldest is ended.
    max_attempts: int = 8192
    #: Whether an event's ``litellm_trace_id`` must match the one stamped with the router token (a stale
    #: stamp in a reused metadata dict); the proxy handler turns it off (see ``proxy``).
    check_trace: bool = True

    def __init__(
        self, router: Any, middleware: Middleware, overrides: Mapping[str, Mapping[str, Any]], *, route: bool
    ) -> None:
        self.middleware = middleware
        self.route = route
        self.token = f"pbm-{uuid.uuid4().hex}"
        self.counts: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
        self._router_ref = weakref.ref(router)
        self._overrides = {str(k): dict(v) for k, v in overrides.items()}
        self._owned: set[str] = set()  # provider ids this installation added to the middleware
        self.known: frozenset[str] = frozenset()  # deployment ids of the router at the last sync
        self._version: object = None
        self._lock = threading.Lock()
        self._trials: set[tuple[object, str]] = set()  # half-open trial picks whose call has not ended yet
        #: Attempts in flight, (litellm_call_id, deployment id) → start time (middleware clock), oldest first.
        self._attempts: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._attempts_lock = threading.Lock()
        #: Failure events seen by the callback (any router): a change makes cached LiteLLM cooldowns stale.
        self.failure_events = 0

    # -- router ----------------------------------------------------------------------------------
    def router(self) -> Any:
        """The router, or None once it was garbage-collected."""
        return self._router_ref()

    def _registry_version(self, router: Any) -> object:
        try:
            return router.registry().version
        except Exception:  # older LiteLLM: no versioned registry; the id check in ensure_current remains
            return None

    # -- providers ---------------------------------------------------------------------------------
    def sync(self) -> tuple[list[str], list[str]]:
        """Match the middleware's providers to the router's deployments; returns (added, removed) ids.

        Deployments the middleware already knows (e.g. providers the caller configured on a
        middleware passed to ``install``) are left as they are; providers this installation added
        whose deployment left the router are removed.
        """
        router = self.router()
        if router is None:
            return [], []
        deployments = _all_deployments(router)
        with self._lock:
            version = self._registry_version(router)
            current: dict[str, Mapping[str, Any]] = {}
            for deployment in deployments:
                pid = deployment_id(deployment)
                if pid is not None:
                    current.setdefault(pid, deployment)
            mw = self.middleware
            have = mw.router.providers.keys()
            added = []
            for pid, deployment in current.items():
                if pid in have:
                    continue
                group = deployment.get("model_name")
                overrides = self._overrides.get(pid) or (self._overrides.get(group) if isinstance(group, str) else None)
                mw.add_provider(provider_from_deployment(deployment, overrides))
                self._owned.add(pid)
                added.append(pid)
            removed = sorted(self._owned - current.keys())
            for pid in removed:
                mw.remove_provider(pid)
                self._owned.discard(pid)
            self.known = frozenset(current)
            self._version = version
        if added or removed:
            log.debug("providers synced from router: added %s, removed %s", added, removed)
        return added, removed

    def ensure_current(self, ids: Iterable[str]) -> None:
        """Re-sync when the router's deployments changed (registry version) or an id is unknown."""
        router = self.router()
        if router is None:
            return
        if self._registry_version(router) != self._version or not self.known.issuperset(ids):
            self.sync()
            self.counts["provider_syncs"] += 1

    def check_overrides(self) -> None:
        """Refuse overrides that name neither a deployment id nor a model group of the router."""
        router = self.router()
        names: set[str] = set(self.known)
        for deployment in _all_deployments(router) if router is not None else ():
            group = deployment.get("model_name")
            if isinstance(group, str):
                names.add(group)
        unknown = sorted(set(self._overrides) - names)
        if unknown:
            raise ConfigError("providers", f"no deployment id or model group named {unknown}; known: {sorted(names)}")

    # -- half-open trials ------------------------------------------------------------------------------
    def trial_started(self, call_id: object, provider_id: str) -> None:
        """A pick took a half-open trial permit; give it back if the caller's task is cancelled first.

        LiteLLM reports no outcome for a cancelled call (``asyncio.wait_for`` timeouts, client
        disconnects), so without this the permit would stay taken until the breaker's permit timeout.
        Only async calls: the pick runs in the caller's task, whose end is watched.
        """
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop: a sync call, nothing can cancel it half-way
            return
        if task is None:
            return
        key = (call_id if call_id is not None else id(task), provider_id)
        with self._lock:
            self._trials.add(key)
        task.add_done_callback(lambda done: self._trial_ended(done, key))

    def trial_recorded(self, call_id: object, provider_id: str) -> None:
        """The trial's outcome was recorded: the permit was used up as intended."""
        if self._trials:
            with self._lock:
                self._trials.discard((call_id, provider_id))

    def _trial_ended(self, task: asyncio.Task[Any], key: tuple[object, str]) -> None:
        with self._lock:
            if key not in self._trials:
                return
            self._trials.discard(key)
        if task.cancelled():
            self.middleware.failover.release(key[1])
            self.counts["trials_released"] += 1

    # -- in-flight attempts -----------------------------------------------------------------------------
    def attempt_started(self, call_id: object, provider_id: str) -> None:
        """One LiteLLM attempt (``litellm_call_id``) on deployment ``provider_id`` starts: count it in flight.

        It ends with :meth:`attempt_ended` (after its outcome is recorded), when the caller's task is
        cancelled before any outcome (LiteLLM reports none then), or after :attr:`attempt_timeout_s`.
        A second start of the same attempt is ignored; so are attempts without a call id (no way to match
        their end) and deployments the middleware does not know.
        """
        if not isinstance(call_id, str) or not call_id or provider_id not in self.known:
            return
        key = (call_id, provider_id)
        now = self.middleware.clock()
        with self._attempts_lock:
            if key in self._attempts:
                return
            self._attempts[key] = now
            self.middleware.begin_attempt(provider_id)
        self.counts["attempts_begun"] += 1
        self.expire_attempts(now)
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop: a sync call, nothing can cancel it half-way
            return
        if task is not None:
            task.add_done_callback(lambda done: self._attempt_task_done(done, key))

    def attempt_ended(self, call_id: object, provider_id: str) -> bool:
        """The attempt's outcome was recorded (or ignored): it is no longer in flight. False if not tracked."""
        if not isinstance(call_id, str) or not self._attempts:
            return False
        return self._end_attempt((call_id, provider_id), "attempts_ended")

    def expire_attempts(self, now: float | None = None) -> int:
        """End attempts older than :attr:`attempt_timeout_s` (or beyond :attr:`max_attempts`); how many."""
        if not self._attempts:
            return 0
        now = self.middleware.clock() if now is None else now
        stale: list[tuple[str, str]] = []
        with self._attempts_lock:
            deadline = now - self.attempt_timeout_s
            for key, started in self._attempts.items():  # oldest first: stop at the first one still fresh
                if started > deadline and len(self._attempts) - len(stale) <= self.max_attempts:
                    break
                stale.append(key)
        ended = sum(self._end_attempt(key, "attempts_expired") for key in stale)
        if ended:
            log.debug("pi-builder-middleware: %d attempt(s) without an end stopped counting as in flight", ended)
        return ended

    def attempts_in_flight(self) -> int:
        """Attempts this installation counts as in flight (all deployments)."""
        return len(self._attempts)

    def _end_attempt(self, key: tuple[str, str], counter: str) -> bool:
        with self._attempts_lock:
            if self._attempts.pop(key, None) is None:
                return False  # ended already (or never begun): never decrement twice
            self.middleware.end_attempt(key[1])
        self.counts[counter] += 1
        return True

    def _attempt_task_done(self, task: asyncio.Task[Any], key: tuple[str, str]) -> None:
        # LiteLLM reports nothing for a cancelled call. A task that ended normally may still have its
        # success event coming (LiteLLM logs after returning) or a stream being read: those end by event.
        if task.cancelled():
            self._end_attempt(key, "attempts_cancelled")

    # -- filtering ---------------------------------------------------------------------------------
    def owns_request(self, request_kwargs: Mapping[str, Any] | None) -> bool:
        """Whether a request routed through LiteLLM belongs to this installation's router."""
        token = request_token(request_kwargs)
        if token is not None:
            return token == self.token
        return not self.route  # unstamped: only a monitoring-only installation filters by deployment id

    def filter(self, deployments: Sequence[Any]) -> list[Any]:
        """Drop deployments whose breaker is open or that are cooling down after a 429.

        If that would drop every one, the list is returned unchanged (LiteLLM's healthy list): a
        request is never failed by our filter alone. Counted as ``filter_kept_all``.
        """
        pids = [deployment_id(d) for d in deployments]
        out = self._unavailable([pid for pid in pids if pid is not None], len(pids))
        return [d for d, pid in zip(deployments, pids, strict=True) if pid not in out] if out else list(deployments)

    def filter_by_id(self, by_id: dict[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
        """:meth:`filter` for candidates keyed by deployment id (the same rules; ``by_id`` itself if none drop)."""
        out = self._unavailable(by_id, len(by_id))
        return {pid: d for pid, d in by_id.items() if pid not in out} if out else by_id

    def _unavailable(self, pids: Iterable[str], total: int) -> frozenset[str]:
        """The ids among ``pids`` to drop (open breaker, 429 cooldown); none if that would drop all ``total``."""
        known = self.known
        unavailable = self.middleware.failover.unavailable_reason
        out = frozenset(pid for pid in pids if pid in known and unavailable(pid) is not None)
        if not out:
            return out
        if len(out) == total:
            self.counts["filter_kept_all"] += 1
            return frozenset()
        self.counts["filtered_out"] += len(out)
        return out


def _all_deployments(router: Any) -> list[Mapping[str, Any]]:
    try:
        deployments = router.registry().all()
    except AttributeError:  # LiteLLM before the registry() entry point
        deployments = router.model_list
    return [d for d in deployments if isinstance(d, Mapping) or hasattr(d, "get")]
