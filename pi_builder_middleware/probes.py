"""Active health checks for a :class:`~pi_builder_middleware.FailoverManager`: each provider probed on its own.

Every ``interval_s`` a round starts one probe task per provider whose previous probe has ended; a
provider whose probe is still running (it ignores its cancellation, or has no time limit) is skipped
and counted as a ``probe_overruns``. So a probe that hangs holds back its own provider only, never the
checks of the others. Every probe is bounded by a time limit (``FailoverConfig.health_check_timeout_s``
unless given); running out of it is a timeout failure of that provider. Nothing a probe does (raising,
answering for a provider removed meanwhile) can end the checks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .enums import ErrorKind
from .errorinfo import error_text
from .errors import ConfigError

if TYPE_CHECKING:
    from .failover import FailoverManager

__all__ = ["ProbeFn", "check_loop", "probe_all", "probe_one"]

#: A health probe: awaits a check of one provider id; returning False or raising is a failure.
ProbeFn = Callable[[str], Awaitable[object]]

log = logging.getLogger("pi_builder_middleware.probes")


async def probe_all(manager: FailoverManager, probe: ProbeFn, timeout_s: float) -> None:
    """Probe every provider once, concurrently, each within ``timeout_s``."""
    await asyncio.gather(*(probe_one(manager, probe, pid, timeout_s) for pid in manager.provider_ids()))


async def check_loop(manager: FailoverManager, probe: ProbeFn, interval_s: float, timeout_s: float) -> None:
    """Start a round every ``interval_s`` until cancelled (see the module docstring); cancels its probes on exit."""
    running: dict[str, asyncio.Task[None]] = {}
    try:
        while True:
            ids = manager.provider_ids()
            for pid in ids:
                task = running.get(pid)
                if task is not None and not task.done():
                    manager.count(pid, "probe_overruns")
                    continue
                running[pid] = asyncio.create_task(probe_one(manager, probe, pid, timeout_s),
                                                   name=f"pbm-probe-{pid}")
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
    except ConfigError:
        pass  # the provider was removed while its probe ran
    except Exception as exc:  # must not end the checks; the manager's own parts are guarded, so a bug
        log.error("recording the health probe of %r failed: %s: %s", provider_id, type(exc).__name__,
                  error_text(exc))
