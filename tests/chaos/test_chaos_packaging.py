"""A normal (non-editable) wheel ships the simulator, the chaos engine, its scenarios and the pi-builder command."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_has_the_chaos_package_scenarios_and_console_script(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    wheel = next(tmp_path.glob("pi_builder_middleware-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "pi_builder_middleware/tools/cli.py" in names
    assert "pi_builder_middleware/tools/chaos/runner.py" in names
    assert "pi_builder_middleware/testing/simulator.py" in names
    for scenario in ("outage", "brownout", "rate-limit", "flapping", "slow-ttft", "cost-vs-reliability", "all-down"):
        assert f"pi_builder_middleware/tools/chaos/scenarios/{scenario}.toml" in names
    assert "pi-builder = pi_builder_middleware.tools.cli:main" in entry_points

    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from pi_builder_middleware.tools.chaos import builtin_scenarios, resolve_scenario; "
        "assert str(next(iter(builtin_scenarios().values()))).startswith(sys.argv[1]); "
        "print(resolve_scenario('outage').name)"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code, str(target)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "outage"
