"""``RoutingWrapper``: the fields, constructor and routing loop both runnable wrappers are built from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import Runnable
from pydantic import BaseModel, ConfigDict, PrivateAttr, SkipValidation
from typing_extensions import override

from pi_builder_middleware import Middleware, RouteRequest

from ._loop import RoutingLoop

__all__ = ["RoutingWrapper"]


class RoutingWrapper(BaseModel):
    """Base of :class:`HealthAwareFallbacks` and :class:`HealthAwareChatModel` (listed first among their bases).

    Each subclass's constructor checks its arguments with ``_setup.check_routing`` (as the agent
    middleware does); this base builds the :class:`RoutingLoop` over ``models`` once the fields are set.
    """

    models: dict[str, Runnable[Any, Any]]
    """The wrapped runnables by provider id."""
    middleware: SkipValidation[Middleware]
    """Routing, health monitoring and breakers (shared by copies made with ``bind_tools`` & co)."""
    first_chunk_timeout_s: float | None = None
    """Fail a stream over when its first chunk takes longer than this (None: wait)."""
    max_wait_s: float = 0.0
    """When no provider can answer, wait for one to recover until this long after the call started (0: fail at once)."""
    route: SkipValidation[RouteRequest | None] = None
    """Request template for every call."""
    hedge: bool = False
    """Whether async calls (``ainvoke``, ``abatch``, ``astream``) are hedged (the middleware's HedgePolicy)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _loop: RoutingLoop = PrivateAttr()

    @override
    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        self._loop = self._new_loop(self.models)

    def _new_loop(self, models: Mapping[str, Runnable[Any, Any]]) -> RoutingLoop:
        return RoutingLoop(
            self.middleware,
            models,
            route=self.route,
            first_chunk_timeout_s=self.first_chunk_timeout_s,
            max_wait_s=self.max_wait_s,
            hedge=self.hedge,
        )

    def _shared(self) -> dict[str, Any]:
        """The settings a wrapper derived from this one keeps (same middleware, timeouts, route, hedging)."""
        return {
            "middleware": self.middleware,
            "first_chunk_timeout_s": self.first_chunk_timeout_s,
            "max_wait_s": self.max_wait_s,
            "route": self.route,
            "hedge": self.hedge,
        }
