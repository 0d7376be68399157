"""The simulator in its own process, so the contenders' CPU use cannot stretch the simulated latencies.

In one process the simulator's event loop shares the GIL with the clients under test: a CPU-hungry
client (LiteLLM parses every stream chunk in Python) would slow the *providers* too and be blamed
twice. The worker process is spawned once per bench and builds a fresh :class:`Simulator` for every
run; its fault-schedule clock and the load clock share one origin on the system-wide monotonic clock,
so "seconds since the load started" means the same instant on both sides.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any, Self

from pi_builder_middleware.sim import RequestRecord, SimProvider, Simulator

__all__ = ["SimulatorProcess"]

_REPLY_TIMEOUT_S = 60.0


class _OriginClock:
    """Seconds since ``origin`` on ``time.monotonic`` (system-wide, so equal across processes)."""

    def __init__(self) -> None:
        self.origin = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.origin


def _serve(conn: Connection) -> None:
    sim: Simulator | None = None
    clock = _OriginClock()
    while True:
        try:
            command, arg = conn.recv()
        except EOFError:
            break
        try:
            if command == "start":
                providers, seed = arg
                clock = _OriginClock()
                sim = Simulator(providers, seed=seed, clock=clock).start()
                conn.send(("ok", sim.urls()))
            elif command == "go":
                assert sim is not None
                sim.reset_stats()
                clock.origin = float(arg)
                conn.send(("ok", None))
            elif command == "records":
                assert sim is not None
                conn.send(("ok", {name: stats.records for name, stats in sim.all_stats().items()}))
            elif command == "stop":
                if sim is not None:
                    sim.stop()
                sim = None
                conn.send(("ok", None))
            elif command == "exit":
                conn.send(("ok", None))
                break
            else:
                conn.send(("error", f"unknown command {command!r}"))
        except Exception as exc:  # report to the parent instead of dying silently
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    if sim is not None:
        sim.stop()


class SimulatorProcess:
    """A worker process hosting one simulator at a time (``with SimulatorProcess() as sims: ...``)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child,), name="pbm-chaos-sim", daemon=True)
        self._process.start()
        child.close()

    def _ask(self, command: str, arg: Any = None) -> Any:
        self._conn.send((command, arg))
        if not self._conn.poll(_REPLY_TIMEOUT_S):
            raise RuntimeError(f"the simulator process did not answer {command!r} within {_REPLY_TIMEOUT_S:g} s")
        status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"simulator process: {value}")
        return value

    def start(self, providers: Sequence[SimProvider], seed: int) -> dict[str, str]:
        """Start a fresh simulator with these providers; returns base URLs by provider name."""
        urls: dict[str, str] = self._ask("start", (tuple(providers), seed))
        return urls

    def go(self, origin: float) -> None:
        """Clear the request log and make ``origin`` (a ``time.monotonic()`` value) t = 0 of the schedule."""
        self._ask("go", origin)

    def records(self) -> dict[str, tuple[RequestRecord, ...]]:
        """Every provider's request log since :meth:`go`."""
        records: dict[str, tuple[RequestRecord, ...]] = self._ask("records")
        return records

    def stop(self) -> None:
        """Stop the current simulator (the process stays for the next run)."""
        self._ask("stop")

    def close(self) -> None:
        """End the worker process."""
        if self._process.is_alive():
            with contextlib.suppress(OSError, RuntimeError, EOFError):
                self._ask("exit")
            self._process.join(5.0)
            if self._process.is_alive():
                self._process.terminate()
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
