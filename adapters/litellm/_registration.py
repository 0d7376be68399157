"""What :func:`install` puts on a router and into LiteLLM's callback lists, and how it is taken out again.

The routing strategy lives in a router's ``__dict__`` slots (on LiteLLM 1.110 partly on its Rust core):
install snapshots them, uninstall restores them. The middleware's logger goes into ``litellm.callbacks``
and, where LiteLLM would refuse it because a list is full, straight into the lists it is promoted to.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import litellm

from ._candidates import CALLBACK_LISTS

__all__ = [
    "MISSING",
    "PROMOTED_LISTS",
    "STRATEGY_SLOTS",
    "Snapshot",
    "callback_limit",
    "current_strategy",
    "promote_if_full",
    "remove_callback",
    "restore",
    "snapshot",
]

log = logging.getLogger("pi_builder_middleware.adapters.litellm")

MISSING = object()
#: Each holder of the router's strategy slots, with the value of each slot (``MISSING`` if unset).
Snapshot = list[tuple[Any, dict[str, object]]]
# Where a custom routing strategy lives on a router: the Rust core (1.110: ``_custom_strategy`` plus an
# instance-level sync pick) and the older Python Router (instance-level picks set by
# ``set_custom_routing_strategy``). Install snapshots these and uninstall puts them back.
STRATEGY_SLOTS = (
    "_custom_strategy",
    "_custom_discovery",
    "get_available_deployment",
    "_core_async_get_available_deployment",
    "async_get_available_deployment",
)


def _holders(router: Any) -> list[Any]:
    """The objects whose ``__dict__`` can hold the router's custom strategy (facade, and its core if any)."""
    holders = [router]
    core = vars(router).get("_core")
    if core is not None:
        holders.append(core)
    return holders


def snapshot(router: Any) -> Snapshot:
    """The router's strategy slots as they are now, for :func:`restore`."""
    return [(h, {slot: vars(h).get(slot, MISSING) for slot in STRATEGY_SLOTS}) for h in _holders(router)]


def restore(saved: Snapshot) -> None:
    """Put back the strategy slots :func:`snapshot` saved (a slot that was unset is unset again)."""
    for holder, slots in saved:
        state: dict[str, Any] = holder.__dict__
        for slot, value in slots.items():
            if value is MISSING:
                state.pop(slot, None)
            else:
                state[slot] = value


def current_strategy(router: Any) -> object:
    """The custom routing strategy registered on the router now (None if none is)."""
    for holder in reversed(_holders(router)):
        value = vars(holder).get("_custom_strategy", MISSING)
        if value is not MISSING:
            return value
        pick = vars(holder).get("get_available_deployment")
        if pick is not None:
            return getattr(pick, "__self__", pick)
    return None


def remove_callback(callback: object) -> None:
    """Take ``callback`` out of every LiteLLM callback list."""
    lock = getattr(getattr(litellm, "logging_callback_manager", None), "callback_lists_lock", None) or threading.Lock()
    with lock:
        for name in CALLBACK_LISTS:
            entries = getattr(litellm, name, None)
            if isinstance(entries, list):
                entries[:] = [c for c in entries if c is not callback]


# The lists LiteLLM copies a logger into from ``litellm.callbacks`` on its next call, each through
# ``logging_callback_manager``, which refuses (a warning only) once a list holds ``MAX_CALLBACKS`` entries.
PROMOTED_LISTS = ("success_callback", "failure_callback", "_async_success_callback", "_async_failure_callback")


def callback_limit() -> int | None:
    """LiteLLM's cap per callback list (1.80: ``LoggingCallbackManager.MAX_CALLBACKS``, 30; later
    ``litellm.constants.MAX_CALLBACKS``, 100), None if this LiteLLM has none."""
    limit = getattr(getattr(litellm, "constants", None), "MAX_CALLBACKS", None)
    if limit is None:
        limit = getattr(getattr(litellm, "logging_callback_manager", None), "MAX_CALLBACKS", None)
    return limit if isinstance(limit, int) and not isinstance(limit, bool) else None


def promote_if_full(callback: object) -> None:
    """Put the logger into the lists LiteLLM would refuse it on the next call because they are full.

    LiteLLM before 1.110 keeps every Router's own callbacks in these lists for good, so a process that built
    about ``MAX_CALLBACKS`` Routers would drop the logger and the middleware would see no outcome.
    """
    limit = callback_limit()
    if limit is None:
        return
    full = [
        name
        for name in PROMOTED_LISTS
        if isinstance(entries := getattr(litellm, name, None), list) and len(entries) >= limit
    ]
    for name in full:
        entries = getattr(litellm, name)
        if callback not in entries:
            entries.append(callback)
    if full:
        log.warning(
            "pi-builder-middleware: LiteLLM's callback lists %s hold %d entries (its MAX_CALLBACKS): LiteLLM "
            "adds no more callbacks there; the middleware's logger was added directly. Many Routers built in "
            "one process fill them (each leaves its own callbacks): build Routers once and reuse them",
            ", ".join(full),
            limit,
        )
