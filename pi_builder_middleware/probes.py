"""Active health checks for a :class:`~pi_builder_middleware.FailoverManager`: each provider probed on its own.

:class:`HealthChecks` is the scheduler (one asyncio task; the manager's ``start_health_checks`` & co
call it); the functions below are what it runs.

Every ``interval_s`` a round starts one probe task per provider whose previous probe has ended; a
provider whose probe is still running (it ignores its cancellation, or has no time limit) is skipped
and counted as a ``probe_overruns``. So a probe that hangs holds back its own provider only, never the
checks of the others. Every probe is bounded by a time limit (``FailoverConfig.health_check_timeout_s``
unless given); running out of it is a timeout failure of that provider. Nothing a probe does (raising,
answering for a provider removed meanwhile) can end the checks.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ._validation import is_number, require
from .enums import ErrorKind
from .errorinfo import error_text
from .errors import ConfigError, UnknownProviderError

if TYPE_CHECKING:
    import asyncio
    import threading

    from ._breaker import Breaker
    from .failover import FailoverManager

__all__ = ["HealthCheckMethods", "HealthChecks", "ProbeFn", "check_loop", "probe_all", "probe_one"]

#: A health probe: awaits a check of one provider id; returning False or raising is a failure.
ProbeFn = Callable[[str], Awaitable[object]]

log = logging.getLogger("pi_builder_middleware.probes")


class HealthCheckMethods:
    """The :class:`FailoverManager` methods for health checks (a mixin; the scheduler is :class:`HealthChecks`)."""

    health_checks: HealthChecks
    _breakers: dict[str, Breaker]
    _classify: Callable[[BaseException, str], ErrorKind]
    _lock: threading.Lock

    def start_health_checks(self, probe: ProbeFn, interval_s: float, timeout_s: float | None = None) -> None:
        """Start an asyncio task that probes every provider each ``interval_s`` seconds.

        Must be called from a running event loop. Each provider's probe runs in its own task, so one that
        hangs holds back no other provider (see :mod:`pi_builder_middleware.probes`). A probe that returns
        False, raises or exceeds ``timeout_s`` (default: ``FailoverConfig.health_check_timeout_s``) counts
        as a failure of that provider; a successful probe of an OPEN provider moves it to HALF_OPEN early.
        """
        self.health_checks.start(probe, interval_s, timeout_s)

    async def stop_health_checks(self) -> None:
        """Stop the health-check task (and the probes it is running) and wait for it to end."""
        await self.health_checks.stop()

    async def run_health_checks_once(self, probe: ProbeFn, timeout_s: float | None = None) -> None:
        """Probe every provider once, concurrently, each within ``timeout_s`` (default: the config's)."""
        await self.health_checks.run_once(probe, timeout_s)

    def provider_ids(self) -> list[str]:
        """Providers with a breaker, in the order they were added."""
        return list(self._breakers)

    def classify(self, error: BaseException, provider_id: str) -> ErrorKind:
        """What ``error`` from ``provider_id`` means, by the classifier given at construction."""
        return self._classify(error, provider_id)

    def count(self, provider_id: str, counter: str) -> None:
        """Add one to a per-provider counter shown in :meth:`stats` (e.g. ``probe_overruns``); unknown ids: none."""
        with self._lock:
            b = self._breakers.get(provider_id)
            if b is not None:
                b.counts[counter] += 1


class HealthChecks:
    """The health-check task of one manager: started, stopped, or run once."""

    __slots__ = ("_task", "manager")

    def __init__(self, manager: FailoverManager) -> None:
        self.manager = manager
        self._task: asyncio.Task[None] | None = None

    def start(self, probe: ProbeFn, interval_s: float, timeout_s: float | None = None) -> None:
        """Start the task (from a running event loop); see :meth:`FailoverManager.start_health_checks`."""
        require("interval_s", is_number(interval_s) and interval_s > 0, "a finite number of seconds > 0", interval_s)
        require(
            "timeout_s",
            timeout_s is None or (is_number(timeout_s) and timeout_s > 0),
            "a finite number of seconds > 0, or None",
            timeout_s,
        )
        import asyncio  # here and below: only health checks load asyncio, in the loop that runs them

        timeout = self.timeout(timeout_s)
        if self._task is not None and not self._task.done():
            raise ConfigError("health_checks", "already running; call stop_health_checks() first")
        self._task = asyncio.get_running_loop().create_task(check_loop(self.manager, probe, interval_s, timeout))

    async def stop(self) -> None:
        """Stop the task (and the probes it is running) and wait for it to end."""
        import asyncio

        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self, probe: ProbeFn, timeout_s: float | None = None) -> None:
        """Probe every provider once, concurrently, each within ``timeout_s`` (default: the config's)."""
        await probe_all(self.manager, probe, self.timeout(timeout_s))

    def timeout(self, timeout_s: float | None) -> float:
        """``timeout_s`` checked, or ``FailoverConfig.health_check_timeout_s`` for None."""
        if timeout_s is None:
            return self.manager.config.health_check_timeout_s
        if not isinstance(timeout_s, int | float) or isinstance(timeout_s, bool) or not 0 < timeout_s < math.inf:
            raise ConfigError(
                "timeout_s",
                f"must be a number of seconds > 0, or None for "
                f"FailoverConfig.health_check_timeout_s (got {timeout_s!r})",
            )
        return float(timeout_s)


async def probe_all(manager: FailoverManager, probe: ProbeFn, timeout_s: float) -> None:
    """Probe every provider once, concurrently, each within ``timeout_s``."""
    import asyncio

    await asyncio.gather(*(probe_one(manager, probe, pid, timeout_s) for pid in manager.provider_ids()))


async def check_loop(manager: FailoverManager, probe: ProbeFn, interval_s: float, timeout_s: float) -> None:
    """Start a round every ``interval_s`` until cancelled (see the module docstring); cancels its probes on exit."""
    import asyncio

    running: dict[str, asyncio.Task[None]] = {}
    try:
        while True:
            ids = manager.provider_ids()
            for pid in ids:
                task = running.get(pid)
                if task is not None and not task.done():
                    manager.count(pid, "probe_overruns")
                    continue
                running[pid] = asyncio.create_task(probe_one(manager, probe, pid, timeout_s), name=f"pbm-probe-{pid}")
            for pid in [pid for pid, task in running.items() if task.done() and pid not in ids]:
                del running[pid]  # its provider was removed
            await asyncio.sleep(interval_s)
    finally:
        pending = [task for task in running.values() if not task.done()]
        for task in pending:
            task.cancel()
        if pending:  # a probe that ignores its cancellation is not waited for longer than its limit
            await asyncio.wait(pending, timeout=timeout_s)


async def probe_one(manager: FailoverManager, probe: ProbeFn, provider_id: str, timeout_s: float) -> None:
    """Probe one provider and record the result as a probe outcome (never raises but cancellation)."""
    import asyncio

    try:
        result = await asyncio.wait_for(probe(provider_id), timeout_s)
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        _record(manager, provider_id, False, ErrorKind.TIMEOUT, f"timed out after {timeout_s:g} s")
        return
    except Exception as exc:
        try:
            kind = manager.classify(exc, provider_id)
        except Exception:  # e.g. the provider was removed meanwhile: nothing left to classify it for
            kind = ErrorKind.UNKNOWN
        _record(manager, provider_id, False, kind, type(exc).__name__)
        return
    if result is False:
        _record(manager, provider_id, False, ErrorKind.UNKNOWN, "probe returned False")
    else:
        _record(manager, provider_id, True, None, "")


def _record(manager: FailoverManager, provider_id: str, ok: bool, kind: ErrorKind | None, detail: str) -> None:
    try:
        manager.record(provider_id, ok, kind, probe=True, detail=detail)
    except UnknownProviderError:
        pass  # the provider was removed while its probe ran
    except Exception as exc:  # must not end the checks; the manager's own parts are guarded, so a bug
        log.error("recording the health probe of %r failed: %s: %s", provider_id, type(exc).__name__, error_text(exc))
