"""Import cost of the package, and of its first use, against LiteLLM's and LangChain's, in one run.

Run: python benchmarks/bench_import.py [--runs N] [--checkout DIR ...]

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

``--checkout DIR`` (repeatable) compares other source checkouts of this project (e.g. an older commit,
``git archive <commit> | tar -x -C DIR``) with the installed one: each is laid out by its
``scripts/layout.py`` and put first on ``PYTHONPATH`` (the interpreters run with ``-P``: the working
directory is never on the path); this project's statements then run for every tree in turn, alternating,
so that load on the machine falls on all of them alike.

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
from pathlib import Path

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


def measure(code: str, pythonpath: str | None = None) -> tuple[float, float, float]:
    """(importtime ms, wall ms, cpu ms) of ``code`` in a fresh interpreter (``pythonpath`` first on its path)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run(
        [sys.executable, "-P", "-X", "importtime", "-c", RUNNER.format(mark=MARK, code=code)],
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


def layout(checkout: str) -> str:
    """The checkout's installed layout (its ``scripts/layout.py``), to put on ``PYTHONPATH``."""
    root = Path(checkout).resolve()
    subprocess.run([sys.executable, str(root / "scripts" / "layout.py")], cwd=root, check=True, capture_output=True)
    return str(root / "build" / "layout")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters per statement (default 15)")
    parser.add_argument("--checkout", action="append", default=[], help="another source checkout to compare")
    args = parser.parse_args()
    trees: dict[str, str | None] = {"installed": None, **{c: layout(c) for c in args.checkout}}
    cases = [
        (tree, label)
        for tree in trees
        for label in STATEMENTS
        if tree == "installed" or "pi_builder_middleware" in STATEMENTS[label]
    ]
    samples: dict[tuple[str, str], list[tuple[float, float, float]]] = {case: [] for case in cases}
    for tree, label in cases:  # writes the bytecode caches; not measured
        measure(STATEMENTS[label], trees[tree])
    for _ in range(args.runs):
        for tree, label in cases:
            samples[tree, label].append(measure(STATEMENTS[label], trees[tree]))
    print(f"Python {sys.version.split()[0]}, median of {args.runs} fresh interpreters per statement")
    for tree in trees:
        print(f"\n{tree}" if len(trees) > 1 else "")
        print(f"{'statement':58} {'importtime ms':>14} {'wall ms':>9} {'cpu ms':>8}")
        for (of_tree, label), rows in samples.items():
            if of_tree == tree:
                importtime, wall, cpu = (statistics.median(r[i] for r in rows) for i in range(3))
                print(f"{label:58} {importtime:14.1f} {wall:9.1f} {cpu:8.1f}")


if __name__ == "__main__":
    main()
