"""The project's own wheel (a normal, non-editable build), unpacked, for the packaging tests.

``pip wheel`` builds in the source tree (setuptools writes ``build/`` and the ``*.egg-info`` there), so two builds at
once (``pytest -n``, or two test runs in one checkout) trip over each other ("File exists: build/bdist..."): a build
holds an exclusive lock on ``build/.wheel.lock``. The ``project_wheel`` fixture (tests/conftest.py) builds once per
test process. (An ``xdist_group`` would not do: pytest-xdist's loadgroup does not group on pytest 9.2,
pytest-dev/pytest-xdist#1386.)
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ROOT", "BuiltWheel", "build_wheel"]

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BuiltWheel:
    path: Path
    names: frozenset[str]
    site: Path  # the wheel unpacked, as an installer would lay it out

    def read(self, name: str) -> str:
        with zipfile.ZipFile(self.path) as zf:
            return zf.read(name).decode()

    def run(self, code: str) -> str:
        """Run ``code`` in a fresh isolated interpreter (``-I``) that imports from the unpacked wheel only, with
        ``sys.argv[1]`` = that folder; its stdout, stripped (the test fails with its stderr if it exits non-zero)."""
        prelude = "import sys; sys.path.insert(0, sys.argv[1]); "
        out = subprocess.run(
            [sys.executable, "-I", "-c", prelude + code, str(self.site)], capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()


def build_wheel(directory: Path) -> BuiltWheel:
    """``pip wheel`` the project into ``directory`` (no dependencies, no build isolation: no network) and unpack it."""
    lock = ROOT / "build" / ".wheel.lock"
    lock.parent.mkdir(exist_ok=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # released when the file closes
        built = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                str(directory),
                str(ROOT),
            ],
            capture_output=True,
            text=True,
        )
    assert built.returncode == 0, f"pip wheel failed:\n{built.stdout}\n{built.stderr}"
    wheel = next(directory.glob("pi_builder_middleware-*.whl"))
    site = directory / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = frozenset(zf.namelist())
        zf.extractall(site)
    return BuiltWheel(wheel, names, site)
