"""The :class:`Simulator`: several simulated providers, each on its own 127.0.0.1 port.

Servers run on an asyncio event loop in a background thread, so the simulator works the same from
synchronous tests, async tests and scripts. Runtime control (behaviour changes, outages) and stats are
thread-safe.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from pydantic import ValidationError

from .clock import MonotonicClock, SimClock
from .errors import SimulatorConfigError, SimulatorStateError, config_error_from_validation
from .models import Behaviour, FaultWindow, Scenario, SimOutcome, SimProvider
from .server import ProviderServer
from .state import ProviderState, ProviderStats

__all__ = ["ProviderHandle", "Simulator"]

_START_TIMEOUT_S = 10.0


class ProviderHandle:
    """Control and inspect one simulated provider (obtained from :meth:`Simulator.provider`)."""

    def __init__(self, state: ProviderState, server: _ServerSlot) -> None:
        self._state = state
        self._slot = server

    def __repr__(self) -> str:
        port = self._slot.port
        return f"<ProviderHandle {self.name!r} port={port if port is not None else 'stopped'}>"

    @property
    def name(self) -> str:
        """The provider's name."""
        return self._state.name

    @property
    def port(self) -> int:
        """The TCP port it listens on (only while the simulator runs)."""
        if self._slot.port is None:
            raise SimulatorStateError(f"provider {self.name!r} is not listening; start the Simulator first")
        return self._slot.port

    @property
    def base_url(self) -> str:
        """OpenAI-style API base, ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self._slot.host}:{self.port}/v1"

    @property
    def behaviour(self) -> Behaviour:
        """The base behaviour (fault windows and outages are applied on top)."""
        return self._state.behaviour

    @property
    def is_down(self) -> bool:
        """Whether :meth:`down` is in force."""
        return self._state.forced is not None

    @property
    def in_flight(self) -> int:
        """Requests being answered now that count against ``max_concurrent``."""
        return self._state.in_flight

    def current_behaviour(self) -> Behaviour:
        """The behaviour in force now, with active fault windows applied."""
        return self._state.current_behaviour()

    def set_behaviour(self, behaviour: Behaviour) -> None:
        """Replace the base behaviour; applies to requests that arrive from now on."""
        self._state.set_behaviour(behaviour)

    def update_behaviour(self, **changes: Any) -> Behaviour:
        """Change some behaviour fields (validated); returns the new behaviour."""
        data = {**self._state.behaviour.model_dump(), **changes}
        try:
            behaviour = Behaviour.model_validate(data)
        except ValidationError as exc:
            raise config_error_from_validation(exc, "behaviour") from None
        self._state.set_behaviour(behaviour)
        return behaviour

    def set_faults(self, faults: Iterable[FaultWindow]) -> None:
        """Replace the fault schedule (times stay relative to the simulator's start)."""
        self._state.set_faults(tuple(faults))

    def down(self, kind: SimOutcome = SimOutcome.SERVICE_UNAVAILABLE) -> None:
        """Fail every request with ``kind`` until :meth:`up` (overrides behaviour and schedule)."""
        if kind is SimOutcome.SUCCESS:
            raise SimulatorConfigError.single(
                "kind",
                f"down({self.name!r}) needs an error outcome (e.g. SimOutcome.SERVICE_UNAVAILABLE), not SUCCESS; "
                f"call up() to end an outage",
            )
        self._state.set_forced(kind)

    def up(self) -> None:
        """End an outage started by :meth:`down`."""
        self._state.set_forced(None)

    def stats(self) -> ProviderStats:
        """Snapshot of the requests received so far."""
        return self._state.stats()

    def reset_stats(self) -> None:
        """Clear the request log and restart request numbering at 0."""
        self._state.reset()


class _ServerSlot:
    """Where a provider listens; filled while running."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port: int | None = None
        self.server: ProviderServer | None = None


class Simulator:
    """Hosts simulated OpenAI-compatible providers on ephemeral 127.0.0.1 ports.

    ::

        with Simulator(providers=[SimProvider(name="a")], seed=1) as sim:
            client = openai.OpenAI(base_url=sim.base_url("a"), api_key="sk-fake")

    ``clock`` returns seconds since start and drives fault windows and request timestamps; by default
    real monotonic time from :meth:`start`. Decisions for the n-th request to a provider depend only
    on ``seed``, the provider's name and n.
    """

    def __init__(
        self,
        providers: Iterable[SimProvider],
        *,
        seed: int = 0,
        clock: SimClock | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        try:
            scenario = Scenario(seed=seed, providers=tuple(providers))
        except ValidationError as exc:
            raise config_error_from_validation(exc) from None
        self._scenario = scenario
        self._host = host
        own_clock = MonotonicClock() if clock is None else None
        self._own_clock = own_clock  # restarted by start() so t=0 is when serving begins
        self._clock: SimClock = clock if clock is not None else own_clock or MonotonicClock()
        self._states = {p.name: ProviderState(p, scenario.seed, self._clock) for p in scenario.providers}
        self._slots = {name: _ServerSlot(host) for name in self._states}
        self._handles = {name: ProviderHandle(self._states[name], self._slots[name]) for name in self._states}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()

    @classmethod
    def from_scenario(cls, scenario: Scenario, *, clock: SimClock | None = None, host: str = "127.0.0.1") -> Self:
        """Build a simulator from a validated :class:`Scenario`."""
        return cls(scenario.providers, seed=scenario.seed, clock=clock, host=host)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Simulator {state} seed={self.seed} providers={list(self._states)}>"

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the servers are listening."""
        return self._thread is not None

    @property
    def seed(self) -> int:
        """The seed of every provider's decisions."""
        return self._scenario.seed

    def start(self) -> Self:
        """Start every provider's server; returns ``self``. Raises if already running."""
        with self._lifecycle:
            if self._thread is not None:
                raise SimulatorStateError("Simulator is already running")
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=_run_loop, args=(loop,), name="pbm-sim-loop", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
            if self._own_clock is not None:
                self._own_clock.restart()
            try:
                asyncio.run_coroutine_threadsafe(self._start_servers(), loop).result(_START_TIMEOUT_S)
            except BaseException:
                self._shutdown_loop()
                raise
        return self

    def stop(self) -> None:
        """Stop serving: cancel in-flight requests (hangs too), close sockets, end the thread. Idempotent."""
        with self._lifecycle:
            if self._thread is None or self._loop is None:
                return
            try:
                asyncio.run_coroutine_threadsafe(self._stop_servers(), self._loop).result(_START_TIMEOUT_S)
            finally:
                self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_START_TIMEOUT_S)
        for slot in self._slots.values():
            slot.port, slot.server = None, None
        self._loop, self._thread = None, None

    async def _start_servers(self) -> None:
        try:
            for name, state in self._states.items():
                server = ProviderServer(state, seed=self.seed, host=self._host)
                port = await server.start()
                self._slots[name].server, self._slots[name].port = server, port
        except BaseException:
            await self._stop_servers()
            raise

    async def _stop_servers(self) -> None:
        for slot in self._slots.values():
            if slot.server is not None:
                await slot.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- providers ---------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """Provider names in configuration order."""
        return tuple(self._states)

    def provider(self, name: str) -> ProviderHandle:
        """The handle for provider ``name``."""
        try:
            return self._handles[name]
        except KeyError:
            known = ", ".join(self._states)
            raise SimulatorStateError(f"no simulated provider named {name!r}; known: {known}") from None

    def base_url(self, name: str) -> str:
        """``http://127.0.0.1:PORT/v1`` for provider ``name`` (use as ``api_base`` / ``base_url``)."""
        return self.provider(name).base_url

    def port(self, name: str) -> int:
        """The port provider ``name`` listens on."""
        return self.provider(name).port

    def urls(self) -> dict[str, str]:
        """Every provider's base URL, by name."""
        return {name: handle.base_url for name, handle in self._handles.items()}

    def elapsed(self) -> float:
        """The simulator clock: seconds since start (or whatever the injected clock says)."""
        return self._clock()

    def set_behaviour(self, name: str, behaviour: Behaviour) -> None:
        """Replace provider ``name``'s base behaviour."""
        self.provider(name).set_behaviour(behaviour)

    def update_behaviour(self, name: str, **changes: Any) -> Behaviour:
        """Change some of provider ``name``'s behaviour fields."""
        return self.provider(name).update_behaviour(**changes)

    def set_faults(self, name: str, faults: Iterable[FaultWindow]) -> None:
        """Replace provider ``name``'s fault schedule."""
        self.provider(name).set_faults(faults)

    def down(self, name: str, kind: SimOutcome = SimOutcome.SERVICE_UNAVAILABLE) -> None:
        """Make provider ``name`` fail every request with ``kind`` until :meth:`up`."""
        self.provider(name).down(kind)

    def up(self, name: str) -> None:
        """End provider ``name``'s outage."""
        self.provider(name).up()

    def stats(self, name: str) -> ProviderStats:
        """Requests received by provider ``name``."""
        return self.provider(name).stats()

    def all_stats(self) -> dict[str, ProviderStats]:
        """Stats of every provider, by name."""
        return {name: handle.stats() for name, handle in self._handles.items()}

    def reset_stats(self, name: str | None = None) -> None:
        """Clear request logs (one provider, or all) and restart request numbering."""
        for handle in [self.provider(name)] if name is not None else self._handles.values():
            handle.reset_stats()


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
