"""Provider simulator: real OpenAI-compatible HTTP servers on 127.0.0.1 with scripted faults.

For your own tests (and this project's tests, benchmarks and demo) instead of real LLM providers::

    from pi_builder_middleware.testing import Behaviour, SimOutcome, SimProvider, Simulator

    with Simulator([SimProvider(name="a"), SimProvider(name="b")], seed=1) as sim:
        sim.base_url("a")          # http://127.0.0.1:PORT/v1
        sim.down("a", SimOutcome.RATE_LIMIT)
        ...
        sim.stats("a").total

A successful answer is text that starts with the provider's name; a request that offers tools gets a
call of the first tool instead (arguments made from its schema) until the conversation holds a tool
result, so agents run real tool loops against it.

``SimOutcome`` is what the simulator does with a request, not the core's ``Outcome`` (what a caller
reports); ``SimClock`` is any callable giving seconds since the simulator started. From a shell:
``python -m pi_builder_middleware.testing --help``.

Needs the ``sim`` extra (aiohttp). Imports the core only; the core never imports it.
"""

from __future__ import annotations

from .clock import ManualClock, MonotonicClock, SimClock
from .errors import SimulatorConfigError, SimulatorStateError
from .models import (
    Behaviour,
    ColdStart,
    FaultWindow,
    Latency,
    LatencyDistribution,
    Scenario,
    SimOutcome,
    SimProvider,
    SlowTail,
)
from .scenario import load_scenario, load_scenario_file
from .server import OUTCOME_HEADER
from .simulator import ProviderHandle, Simulator
from .state import ProviderStats, RequestRecord

__all__ = [
    "OUTCOME_HEADER",
    "Behaviour",
    "ColdStart",
    "FaultWindow",
    "Latency",
    "LatencyDistribution",
    "ManualClock",
    "MonotonicClock",
    "ProviderHandle",
    "ProviderStats",
    "RequestRecord",
    "Scenario",
    "SimClock",
    "SimOutcome",
    "SimProvider",
    "Simulator",
    "SimulatorConfigError",
    "SimulatorStateError",
    "SlowTail",
    "load_scenario",
    "load_scenario_file",
]
