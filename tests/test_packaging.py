"""A normal (non-editable) install contains the core, the plugins and the adapters under one namespace."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_maps_plugins_and_adapters_into_the_package(tmp_path):
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
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pi_builder_middleware/__init__.py" in names
    assert "pi_builder_middleware/py.typed" in names
    assert "pi_builder_middleware/plugins/strategies.py" in names
    assert "pi_builder_middleware/adapters/__init__.py" in names
    assert not any(n.startswith(("plugins/", "adapters/", "tests/")) for n in names)

    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import pi_builder_middleware as p; "
        "assert p.__file__.startswith(sys.argv[1]), p.__file__; "
        "mw = p.Middleware(providers=[p.Provider(id='a'), p.Provider(id='b', cost_per_1k_input=1)], "
        "strategy='cost-optimal', load_entrypoints=False); "
        "print(mw.select().provider.id)"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code, str(target)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "a"
