"""Cost of telemetry per call: select+record and execute, with telemetry off, OpenTelemetry on, Prometheus on.

Run: python benchmarks/bench_telemetry.py [--quick] [--base REV] [--modes off otel-sdk ...]

Modes: ``off`` (nothing configured: ``Middleware.telemetry`` is None), ``otel-noop`` (OpenTelemetry forced on
with no SDK: the API's no-op tracer and meter), ``otel-sdk`` (SDK TracerProvider, every span sampled but not
exported, and a MeterProvider with an in-memory reader), ``prometheus`` (the ``pi_builder_*`` series), ``both``.
``--base REV`` also runs ``off`` on the code of git revision REV (exported to a temporary directory) in a
subprocess, for the cost of the off path itself. The last column puts the added cost next to one
``litellm.Router.completion`` with ``mock_response`` (no network) measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import per_op_us

MODES = ("off", "otel-noop", "otel-sdk", "prometheus", "both")


def build(mode: str) -> Any:
    from pi_builder_middleware import Middleware, Outcome, Provider

    telemetry: Any = False if mode in ("off", "prometheus") else None
    if mode in ("otel-sdk", "both"):
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider

        from pi_builder_middleware.telemetry.otel import OtelTelemetry

        telemetry = OtelTelemetry(
            tracer_provider=TracerProvider(), meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()])
        )
    elif mode == "otel-noop":
        telemetry = True
    providers = [Provider(id=f"p{i}", model=f"openai/m{i}", group="g") for i in range(3)]
    kwargs: dict[str, Any] = {} if mode == "off" else {"telemetry": telemetry}  # "off" runs on older code too
    mw = Middleware(
        providers=providers, strategy="latency-optimal", failover="balanced", load_entrypoints=False, seed=1, **kwargs
    )
    if mode in ("prometheus", "both"):
        from prometheus_client import CollectorRegistry

        from pi_builder_middleware.telemetry._hub import _hub
        from pi_builder_middleware.telemetry.prometheus import PrometheusMetrics

        _hub(mw).add_sink(PrometheusMetrics(CollectorRegistry()))
    if mode == "off":
        assert getattr(mw, "telemetry", None) is None
    for p in providers:
        for _ in range(20):
            mw.record(Outcome(p.id, True, 0.2, ttft_s=0.05, input_tokens=100, output_tokens=50))
    return mw


def measure(mode: str, n: int, repeats: int) -> dict[str, float]:
    from pi_builder_middleware import Outcome, Provider

    mw = build(mode)
    ok = Outcome("p0", True, 0.2, input_tokens=100, output_tokens=50)

    def select_record() -> None:
        decision = mw.select(reserve=False)
        mw.record(ok if decision.provider.id == "p0" else Outcome(decision.provider.id, True, 0.2))

    def fail_first(p: Provider) -> str:
        if p.id == first:
            raise ConnectionError("down")
        return p.id

    first = mw.select(reserve=False).provider.id
    return {
        "select+record": per_op_us(select_record, n, repeats),
        "execute": per_op_us(lambda: mw.execute(lambda p: p.id), n // 2, repeats),
        "execute failover": per_op_us(lambda: _reset_then(mw, fail_first), n // 4, repeats),
    }


def _reset_then(mw: Any, fn: Callable[[Any], str]) -> None:
    mw.execute(fn)
    mw.failover.reset()  # the failing provider must stay first: its breaker would open otherwise


def litellm_completion_us(n: int) -> float:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    router = litellm.Router(
        model_list=[
            {
                "model_name": "g",
                "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-fake", "mock_response": "ok"},
            }
        ]
    )
    messages = [{"role": "user", "content": "hi"}]
    for _ in range(20):
        router.completion(model="g", messages=messages)
    return per_op_us(lambda: router.completion(model="g", messages=messages), n, 3)


def run_base(rev: str, n: int, repeats: int) -> dict[str, float]:
    """``off`` on the code of ``rev``, in a subprocess importing that code."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "base.tar"
        subprocess.run(
            ["git", "-C", str(root), "archive", "-o", str(archive), rev, "pi_builder_middleware"], check=True
        )
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        env = {**os.environ, "PYTHONPATH": tmp}
        out = subprocess.run(
            [sys.executable, __file__, "--json-off", str(n), str(repeats)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            cwd=tmp,
        )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--base", default=None, help="git revision to measure 'off' on, for comparison")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="modes to run (off always)")
    parser.add_argument("--json-off", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.getLogger("pi_builder_middleware").setLevel(logging.ERROR)
    if args.json_off:
        print(json.dumps(measure("off", *args.json_off)))
        return
    n, repeats = (2_000, 3) if args.quick else (20_000, 5)
    rows: dict[str, dict[str, float]] = {}
    if args.base:
        rows[f"base {args.base[:10]}"] = run_base(args.base, n, repeats)
    for mode in dict.fromkeys(["off", *args.modes]):
        rows[mode] = measure(mode, n, repeats)
    litellm_us = litellm_completion_us(max(n // 20, 200))
    off = rows["off"]
    cells = list(off)
    print(
        f"{'mode':>18} " + " ".join(f"{c + ' µs':>20}" for c in cells) + f" {'+execute µs':>12} "
        f"{'+execute / LiteLLM call':>24}"
    )
    for mode, row in rows.items():
        added = row["execute"] - off["execute"]
        print(
            f"{mode:>18} " + " ".join(f"{row[c]:>20.2f}" for c in cells) + f" {added:>12.2f} "
            f"{added / litellm_us:>24.4f}"
        )
    print(f"LiteLLM Router.completion (mock_response, same run): {litellm_us:.1f} µs/op")


if __name__ == "__main__":
    main()
