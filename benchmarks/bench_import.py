"""Import cost of the package, and of its first use, against LiteLLM's and LangChain's, in one run.

Run: python benchmarks/bench_import.py [--runs N]

Every figure is the median over ``N`` fresh interpreters (default 15), the statements run in turn so that
a busy moment on a shared machine hits all of them alike. Two columns per statement:

- ``importtime ms``: the sum of ``python -X importtime``'s cumulative times for the modules the statement
  imports (the interpreter's own start-up imports, printed before the statement runs, are left out);
- ``wall ms``: the statement's wall-clock time measured inside the fresh interpreter with
  :func:`time.perf_counter` (imports plus whatever else the statement does);
- ``cpu ms``: the same span in CPU time (:func:`time.process_time`), which moves far less than the other
  two when other programs share the machine's cores.

The third statement is a first use: import ``Middleware`` and ``RouteRequest``, build one Middleware over
two providers (entry points loaded, as by default) and call ``select()`` once.

Imports are measured as an installed program meets them, from bytecode: the subprocesses run without
``PYTHONDONTWRITEBYTECODE`` and one unmeasured round first writes the ``__pycache__`` files (an editable
install compiles nothing at install time; with that variable set, every import would compile the source).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

MARK = "-- statement starts --"

STATEMENTS: dict[str, str] = {
    "import pi_builder_middleware": "import pi_builder_middleware",
    "from pi_builder_middleware import Middleware": "from pi_builder_middleware import Middleware",
    "first use (Middleware + one select)": (
        "from pi_builder_middleware import Middleware, Provider, RouteRequest\n"
        "mw = Middleware([Provider(id='a'), Provider(id='b')])\n"
        "mw.select(RouteRequest())"
    ),
    "import litellm": "import litellm",
    "import langchain_core": "import langchain_core",
    "from langchain_core.language_models import BaseChatModel": (
        "from langchain_core.language_models import BaseChatModel"
    ),
}

RUNNER = """\
import sys, time
print({mark!r}, file=sys.stderr, flush=True)
start, cpu = time.perf_counter(), time.process_time()
exec(compile({code!r}, "<statement>", "exec"))
print(time.perf_counter() - start, time.process_time() - cpu)
"""


def measure(code: str) -> tuple[float, float, float]:
    """(importtime ms, wall ms, cpu ms) of ``code`` in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", RUNNER.format(mark=MARK, code=code)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    _, _, after = out.stderr.partition(MARK)
    total_us = 0
    for line in after.splitlines():
        if not line.startswith("import time:"):
            continue
        _, cumulative_us, name = line.split(":", 1)[1].split("|")
        if not name.startswith("  ") and cumulative_us.strip().isdigit():  # top level: nested ones are inside
            total_us += int(cumulative_us)
    wall_s, cpu_s = (float(x) for x in out.stdout.strip().splitlines()[-1].split())
    return total_us / 1000, wall_s * 1000, cpu_s * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters per statement (default 15)")
    args = parser.parse_args()
    samples: dict[str, list[tuple[float, float, float]]] = {label: [] for label in STATEMENTS}
    for code in STATEMENTS.values():  # writes the bytecode caches; not measured
        measure(code)
    for _ in range(args.runs):
        for label, code in STATEMENTS.items():
            samples[label].append(measure(code))
    print(f"Python {sys.version.split()[0]}, median of {args.runs} fresh interpreters per statement")
    print(f"{'statement':58} {'importtime ms':>14} {'wall ms':>9} {'cpu ms':>8}")
    for label, rows in samples.items():
        importtime, wall, cpu = (statistics.median(r[i] for r in rows) for i in range(3))
        print(f"{label:58} {importtime:14.1f} {wall:9.1f} {cpu:8.1f}")


if __name__ == "__main__":
    main()
