"""Command line: ``python -m pi_builder_middleware.testing``.

Starts simulated providers from a TOML scenario (``--config``) and/or quick flags
(``--provider name:latency_ms:error_rate[:kind+kind[:port]]``), prints ``NAME BASE_URL`` per provider on
stdout, serves until Ctrl-C or ``--duration`` seconds, then prints per-provider request counts on stderr.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence

from pydantic import ValidationError

from .errors import SimulatorConfigError, config_error_from_validation
from .models import Scenario, SimOutcome, SimProvider
from .scenario import load_scenario_file
from .simulator import Simulator

__all__ = ["build_parser", "main", "parse_provider_flag"]

_FLAG_FORMAT = "NAME[:LATENCY_MS[:ERROR_RATE[:KIND+KIND...[:PORT]]]]"


def parse_provider_flag(text: str) -> SimProvider:
    """Parse ``name:latency_ms:error_rate[:kinds[:port]]``; e.g. ``a:50:0.1:server_error+rate_limit``."""
    parts = text.split(":")
    path = f"--provider {text!r}"
    if not parts[0] or len(parts) > 5:
        raise SimulatorConfigError.single(path, f"expected {_FLAG_FORMAT}")
    data: dict[str, object] = {"name": parts[0]}
    behaviour: dict[str, object] = {}
    try:
        if len(parts) > 1 and parts[1]:
            behaviour["latency"] = float(parts[1])
        if len(parts) > 2 and parts[2]:
            behaviour["error_rate"] = float(parts[2])
        if len(parts) > 4 and parts[4]:
            data["port"] = int(parts[4])
    except ValueError:
        message = f"latency, error rate and port must be numbers; expected {_FLAG_FORMAT}"
        raise SimulatorConfigError.single(path, message) from None
    if len(parts) > 3 and parts[3]:
        behaviour["errors"] = dict.fromkeys(parts[3].split("+"), 1.0)
    data["behaviour"] = behaviour
    try:
        return SimProvider.model_validate(data)
    except ValidationError as exc:
        problems = config_error_from_validation(exc).problems
        raise SimulatorConfigError([(f"{path} {field}", message) for field, message in problems]) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    kinds = ", ".join(o.value for o in SimOutcome if o.is_error)
    parser = argparse.ArgumentParser(
        prog="python -m pi_builder_middleware.testing",
        description="Run simulated OpenAI-compatible LLM providers on 127.0.0.1 with scripted faults.",
        epilog=f"Error kinds: {kinds}.",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML scenario file (seed, [[providers]], faults)")
    parser.add_argument(
        "--provider",
        action="append",
        default=[],
        metavar=_FLAG_FORMAT,
        help="add a provider (repeatable), e.g. a:50:0.1 or b:200:0.3:rate_limit+timeout",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible decisions (default 0)")
    parser.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    return parser


def _scenario(args: argparse.Namespace) -> Scenario:
    providers: list[SimProvider] = []
    seed = 0
    if args.config:
        loaded = load_scenario_file(args.config)
        providers.extend(loaded.providers)
        seed = loaded.seed
    providers.extend(parse_provider_flag(text) for text in args.provider)
    if args.seed is not None:
        seed = args.seed
    if not providers:
        raise SimulatorConfigError.single("", "no providers: pass --config FILE or at least one --provider")
    try:
        return Scenario(seed=seed, providers=tuple(providers))
    except ValidationError as exc:
        raise config_error_from_validation(exc) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator CLI; returns the process exit code (0 ok, 2 bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration < 0:
        parser.error("--duration must be >= 0")
    try:
        scenario = _scenario(args)
    except SimulatorConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sim = Simulator.from_scenario(scenario, host=args.host)
    try:
        sim.start()
    except OSError as exc:
        print(f"error: cannot listen: {exc}", file=sys.stderr)
        return 1
    try:
        for name, url in sim.urls().items():
            print(f"{name} {url}", flush=True)
        print(f"simulating {len(sim.names)} provider(s), seed={sim.seed}; Ctrl-C to stop", file=sys.stderr)
        _wait(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    for name, stats in sim.all_stats().items():
        counts = ", ".join(f"{o.value}={c}" for o, c in sorted(stats.by_outcome.items()))
        print(f"{name}: {stats.total} request(s){' (' + counts + ')' if counts else ''}", file=sys.stderr)
    return 0


def _wait(duration: float | None) -> None:
    stop = threading.Event()
    if duration is not None:
        stop.wait(duration)
        return
    while not stop.wait(3600):
        pass
