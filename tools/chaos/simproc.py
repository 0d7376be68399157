"""The simulator in its own process, so the contenders' CPU use cannot stretch the simulated latencies.

In one process the simulator's event loop shares the GIL with the clients under test: a CPU-hungry
client (LiteLLM parses every stream chunk in Python) would slow the *providers* too and be blamed
twice. The worker process is spawned once per bench and builds a fresh :class:`Simulator` for every
run; its fault-schedule clock and the load clock share one origin on the system-wide monotonic clock,
so "seconds since the load started" means the same instant on both sides.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from types import TracebackType
from typing import IO, Any, Self

from pi_builder_middleware.testing import RequestRecord, SimProvider, Simulator

__all__ = ["SimulatorProcess"]

_REPLY_TIMEOUT_S = 60.0


class _OriginClock:
    """Seconds since ``origin`` on ``time.monotonic`` (system-wide, so equal across processes)."""

    def __init__(self) -> None:
        self.origin = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.origin


def _serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    sim: Simulator | None = None
    clock = _OriginClock()

    def reply(status: str, value: Any) -> None:
        pickle.dump((status, value), replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()

    while True:
        try:
            command, arg = pickle.load(requests)
        except EOFError:
            break
        try:
            if command == "start":
                providers, seed = arg
                clock = _OriginClock()
                sim = Simulator(providers, seed=seed, clock=clock).start()
                reply("ok", sim.urls())
            elif command == "go":
                assert sim is not None
                sim.reset_stats()
                clock.origin = float(arg)
                reply("ok", None)
            elif command == "records":
                assert sim is not None
                reply("ok", {name: stats.records for name, stats in sim.all_stats().items()})
            elif command == "stop":
                if sim is not None:
                    sim.stop()
                sim = None
                reply("ok", None)
            elif command == "exit":
                reply("ok", None)
                break
            else:
                reply("error", f"unknown command {command!r}")
        except Exception as exc:  # report to the parent instead of dying silently
            reply("error", f"{type(exc).__name__}: {exc}")
    if sim is not None:
        sim.stop()


class SimulatorProcess:
    """A worker process hosting one simulator at a time (``with SimulatorProcess() as sims: ...``).

    Started as ``python -m pi_builder_middleware.tools.chaos.simproc`` (not ``multiprocessing``, which would
    re-run the caller's main script); commands and replies are pickles over its stdin and stdout.
    """

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._requests: IO[bytes] = self._process.stdin
        self._replies: IO[bytes] = self._process.stdout

    def _ask(self, command: str, arg: Any = None) -> Any:
        pickle.dump((command, arg), self._requests, protocol=pickle.HIGHEST_PROTOCOL)
        self._requests.flush()
        ready, _, _ = select.select([self._replies], [], [], _REPLY_TIMEOUT_S)
        if not ready:
            raise RuntimeError(f"the simulator process did not answer {command!r} within {_REPLY_TIMEOUT_S:g} s")
        try:
            status, value = pickle.load(self._replies)
        except EOFError:
            raise RuntimeError(f"the simulator process exited (code {self._process.poll()})") from None
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
        if self._process.poll() is None:
            with contextlib.suppress(OSError, RuntimeError, EOFError):
                self._ask("exit")
            with contextlib.suppress(OSError):
                self._requests.close()
            try:
                self._process.wait(5.0)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5.0)
        with contextlib.suppress(OSError):
            self._replies.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _main() -> None:
    # Replies go over the real stdout; anything else that prints lands on stderr instead.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    _main()
