"""LangChain adapter benchmark: one provider outage through ``with_fallbacks`` and through ``HealthAwareFallbacks``.

Run: ``python benchmarks/bench_langchain.py`` (about 70 s; ``--quick`` for about 30 s).

Each scenario sends calls one after another for a fixed time: a healthy phase, an outage of the
primary ``a``, and a recovered phase. It reports how many attempts went to the dead provider, how many
calls the caller completed, and the latency per call (p50/p99, overall and during the outage), then
the share of calls the primary served again after it recovered. Scenarios:

- in-process fake chat models (a ``BaseChatModel`` subclass that sleeps 20-50 ms, or fails during
  the outage after 5-15 ms for a 503, or after 250 ms for a connection timeout);
- real ``ChatOpenAI`` clients over HTTP to the provider simulator (30 ms lognormal latency, 503s).

It finishes with the wrapper's own overhead per call over an instant fake model.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

from _common import Phases, Result, cpu_us, outage_table, run_phases, simulated_chats, with_outage
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from pi_builder_middleware.adapters.langchain import HealthAwareChatModel, HealthAwareFallbacks
from pydantic import PrivateAttr

from pi_builder_middleware import FailoverConfig

FAILOVER = FailoverConfig.preset("balanced", base_ejection_s=1.0)  # balanced, with ejections short enough to see
# recovery in a few seconds (ejections double on repeat trips: 1 s, 2 s, 4 s, ...)


class ProviderDown(Exception):
    """What a provider SDK raises for a 503 (the classifier reads ``status_code``)."""

    status_code = 503


class ConnectTimeout(Exception):
    """What an HTTP client raises when a connection attempt times out."""


class DelayedChat(BaseChatModel):
    """A chat model with a realistic latency (20-50 ms) that fails while ``phases`` says the outage is on."""

    key: str
    failure: str = "503"  # or "timeout"
    _phases: Phases | None = PrivateAttr(default=None)
    _rng: random.Random = PrivateAttr(default_factory=lambda: random.Random(1))
    _attempts: dict[str, int] = PrivateAttr(default_factory=dict)

    @property
    def _llm_type(self) -> str:
        return "delayed"

    def start(self, phases: Phases | None) -> None:
        self._phases, self._attempts = phases, {}

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        phase = self._phases.phase(time.perf_counter()) if self._phases else "healthy"
        self._attempts[phase] = self._attempts.get(phase, 0) + 1
        if phase == "outage":
            if self.failure == "timeout":
                time.sleep(0.25)
                raise ConnectTimeout("connect timed out after 250 ms")
            time.sleep(self._rng.uniform(0.005, 0.015))
            raise ProviderDown("503 Service Unavailable")
        time.sleep(self._rng.uniform(0.020, 0.050))
        usage = {"input_tokens": 12, "output_tokens": 20, "total_tokens": 32}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.key, usage_metadata=usage))])


def table(title: str, results: list[Result]) -> str:
    def cells(r: Result) -> list[object]:
        calls, outage = sum(map(len, r.latencies.values())), len(r.latencies["outage"])
        return [r.name, f"{calls} ({outage})", r.dead_attempts, r.errors]

    columns = ["wrapper", "calls (outage)", "attempts to dead `a`", "caller errors"]
    return outage_table(title, columns, results, cells, "calls", "served")


def fake_scenario(failure: str, phases: Phases) -> list[Result]:
    results = []
    a, b = DelayedChat(key="a", failure=failure), DelayedChat(key="b")
    wrappers: list[tuple[str, Runnable[Any, Any]]] = [
        ("`a.with_fallbacks([b])`", a.with_fallbacks([b])),
        ("`HealthAwareFallbacks`", HealthAwareFallbacks({"a": a, "b": b}, failover=FAILOVER)),
        ("`HealthAwareChatModel`", HealthAwareChatModel({"a": a, "b": b}, failover=FAILOVER)),
    ]
    for name, llm in wrappers:
        a.start(phases)
        b.start(None)
        result = run_phases(name, lambda phase, llm=llm: str(llm.invoke("hi").content), phases)
        result.dead_attempts = a._attempts.get("outage", 0)
        results.append(result)
    return results


def http_scenario(phases: Phases) -> list[Result]:
    results = []
    with simulated_chats() as (sim, chat):
        wrappers: list[tuple[str, Runnable[Any, Any]]] = [
            ("`ChatOpenAI.with_fallbacks`", chat("a").with_fallbacks([chat("b")])),
            ("`HealthAwareFallbacks`", HealthAwareFallbacks({"a": chat("a"), "b": chat("b")}, failover=FAILOVER)),
        ]
        for name, llm in wrappers:
            sim.reset_stats()
            sim.up("a")
            ask = with_outage(sim, "a", lambda llm=llm: str(llm.invoke("hi").content).split()[0])
            result = run_phases(name, ask, phases)
            result.dead_attempts = sim.stats("a").errors
            results.append(result)
            sim.up("a")
    return results


def overhead(calls: int) -> str:
    def fake() -> FakeListChatModel:
        return FakeListChatModel(responses=["ok"])

    rows = [
        ("bare `FakeListChatModel`", fake()),
        ("`with_fallbacks` (primary healthy)", fake().with_fallbacks([fake()])),
        ("`HealthAwareFallbacks`", HealthAwareFallbacks({"a": fake(), "b": fake()})),
        ("`HealthAwareChatModel`", HealthAwareChatModel({"a": fake(), "b": fake()})),
    ]
    measured = [(name, cpu_us(lambda llm=llm: llm.invoke("hi"), calls // 5, 5, warmup=200)) for name, llm in rows]
    base = measured[0][1]
    lines = [
        "### Overhead per call (instant fake model, sync invoke, CPU time, best of 5 rounds)",
        "",
        "| runnable | µs per call | added µs |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {us:.0f} | {us - base:+.0f} |" for name, us in measured]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases (about 20 s in all)")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP simulator scenario")
    args = parser.parse_args(argv)
    scale = 0.4 if args.quick else 1.0
    phases = Phases(healthy_s=1.0 * scale, outage_s=4.0 * scale, recovered_s=3.0 * scale)
    print(
        f"phases: healthy {phases.healthy_s:.1f} s, outage of `a` {phases.outage_s:.1f} s, "
        f"recovered {phases.recovered_s:.1f} s; calls sent one after another; "
        f"HealthAware* use FailoverConfig.preset('balanced', base_ejection_s=1.0)\n"
    )
    print(table("Fake chat models, outage = fast 503 (5-15 ms)", fake_scenario("503", phases)), "\n", flush=True)
    print(
        table("Fake chat models, outage = connect timeout (250 ms)", fake_scenario("timeout", phases)), "\n", flush=True
    )
    if not args.no_http:
        print(
            table("ChatOpenAI over HTTP to the simulator (30 ms lognormal), outage = 503", http_scenario(phases)),
            "\n",
            flush=True,
        )
    print(overhead(500 if args.quick else 2000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
