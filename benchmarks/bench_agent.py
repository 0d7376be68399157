"""Agent benchmark: a provider outage inside ``create_agent`` through LangChain's model middleware and ours.

Run: ``python benchmarks/bench_agent.py`` (about 40 s; ``--quick`` for about 20 s).

Agents with one tool run one after another for a fixed time: a healthy phase, an outage of the primary
``a`` (503 on every request), a recovered phase. Every run is a real tool loop over HTTP: real
``ChatOpenAI`` clients (``max_retries=0``) against the provider simulator (30 ms lognormal latency),
which answers a request offering tools with a call of the first tool and with text once the tool's
result is in. Contenders, measured in the same run against the same simulator:

- ``ModelFallbackMiddleware(b)`` (LangChain's own fallback; every model call starts at ``a``);
- ``ModelFallbackMiddleware(b)`` + ``ModelRetryMiddleware(max_retries=2)`` inside it (retry the primary,
  then fall back: the usual stack; delays shortened to 50 ms, doubling);
- ``HealthAwareModelMiddleware`` (``FailoverConfig.preset("balanced", base_ejection_s=1.0)``).

It reports the HTTP requests sent to the dead provider, agent runs and errors, run latency (p50/p99,
overall and during the outage) and the share of recovered runs answered by ``a``; then the
middleware's own cost per agent run over an instant in-process tool-calling model.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

from _common import Phases, Result, cpu_us, outage_table, run_phases, simulated_chats, with_outage
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelFallbackMiddleware, ModelRetryMiddleware
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pi_builder_middleware.adapters.langchain import HealthAwareModelMiddleware

from pi_builder_middleware import FailoverConfig

FAILOVER = FailoverConfig.preset("balanced", base_ejection_s=1.0)  # ejections double on repeat trips: 1, 2, 4 s


def get_weather(city: str) -> str:
    """Look up the weather in a city."""
    return f"sunny in {city}"


QUESTION = {"messages": [HumanMessage("weather?")]}


def http_scenario(phases: Phases) -> list[Result]:
    results = []
    with simulated_chats() as (sim, chat):

        def contenders() -> Iterator[tuple[str, BaseChatModel, list[AgentMiddleware[Any, Any, Any]]]]:
            a = chat("a")
            yield "`ModelFallbackMiddleware(b)`", a, [ModelFallbackMiddleware(chat("b"))]
            a = chat("a")
            yield (
                "`ModelFallbackMiddleware(b)` + `ModelRetryMiddleware(2)`",
                a,
                [
                    ModelFallbackMiddleware(chat("b")),
                    ModelRetryMiddleware(
                        max_retries=2, initial_delay=0.05, backoff_factor=2.0, jitter=False, on_failure="error"
                    ),
                ],
            )
            a = chat("a")
            yield (
                "`HealthAwareModelMiddleware`",
                a,
                [HealthAwareModelMiddleware({"a": a, "b": chat("b")}, failover=FAILOVER)],
            )

        def ask(agent: Any) -> str:
            answer = agent.invoke(QUESTION)["messages"][-1]
            return str(answer.content).split()[0] if isinstance(answer, AIMessage) else "?"

        for name, primary, middleware in contenders():
            agent = create_agent(primary, tools=[get_weather], middleware=middleware)
            sim.reset_stats()
            sim.up("a")
            result = run_phases(name, with_outage(sim, "a", lambda agent=agent: ask(agent)), phases)
            sim.up("a")
            result.dead_attempts = sim.stats("a").errors
            results.append(result)
    return results


def table(title: str, results: list[Result]) -> str:
    def cells(r: Result) -> list[object]:
        runs, outage = sum(map(len, r.latencies.values())), len(r.latencies["outage"])
        per_run = r.dead_attempts / outage if outage else float("nan")
        return [r.name, f"{runs} ({outage})", r.dead_attempts, f"{per_run:.2f}", r.errors]

    columns = ["agent middleware", "runs (outage)", "requests to dead `a`", "per outage run", "caller errors"]
    return outage_table(title, columns, results, cells, "runs", "answered")


class InstantToolChat(BaseChatModel):
    """Calls the first bound tool, then answers with its result; no latency (for the overhead measurement)."""

    key: str = "a"

    @property
    def _llm_type(self) -> str:
        return "instant-tool-chat"

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        if isinstance(messages[-1], ToolMessage):
            message = AIMessage(content=f"{self.key}: {messages[-1].content}")
        else:
            name = kwargs["tools"][0]["function"]["name"]
            message = AIMessage(content="", tool_calls=[{"name": name, "args": {"city": "Oslo"}, "id": "call_1"}])
        return ChatResult(generations=[ChatGeneration(message=message)])


def overhead(runs: int) -> str:
    a, b = InstantToolChat(key="a"), InstantToolChat(key="b")
    rows: list[tuple[str, list[AgentMiddleware[Any, Any, Any]]]] = [
        ("no model middleware", []),
        ("`ModelFallbackMiddleware(b)` (primary healthy)", [ModelFallbackMiddleware(b)]),
        ("`HealthAwareModelMiddleware`", [HealthAwareModelMiddleware({"a": a, "b": b})]),
    ]
    measured = []
    for name, middleware in rows:
        agent = create_agent(a, tools=[get_weather], middleware=middleware)
        measured.append((name, cpu_us(lambda agent=agent: agent.invoke(QUESTION), runs // 5, 5, warmup=50)))
    base = measured[0][1]
    lines = [
        "### Overhead per agent run (instant model, 2 model calls + 1 tool call, sync invoke, CPU time, "
        "best of 5 rounds)",
        "",
        "| agent | µs per run | added µs | added µs per model call | ratio to no middleware |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {us:.0f} | {us - base:+.0f} | {(us - base) / 2:+.0f} | {us / base:.3f} |" for name, us in measured
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases (about 20 s in all)")
    args = parser.parse_args(argv)
    scale = 0.5 if args.quick else 1.0
    phases = Phases(healthy_s=1.0 * scale, outage_s=4.0 * scale, recovered_s=3.0 * scale)
    print(
        f"phases: healthy {phases.healthy_s:.1f} s, outage of `a` {phases.outage_s:.1f} s (503), "
        f"recovered {phases.recovered_s:.1f} s; agent runs one after another, each a tool loop of 2 model "
        f"calls; HealthAwareModelMiddleware uses FailoverConfig.preset('balanced', base_ejection_s=1.0)\n"
    )
    print(
        table(
            "create_agent with ChatOpenAI over HTTP to the simulator (30 ms lognormal), outage = 503",
            http_scenario(phases),
        ),
        "\n",
        flush=True,
    )
    print(overhead(200 if args.quick else 500))
    return 0


if __name__ == "__main__":
    sys.exit(main())
