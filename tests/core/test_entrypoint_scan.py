"""The quick scan that spares importlib.metadata: it says "no" only where importlib.metadata finds nothing.

Each case writes a distribution's ``*.dist-info`` (or ``*.egg-info``) directory into ``tmp_path``, puts that
first on ``sys.path`` and compares :func:`may_declare` with ``importlib.metadata.entry_points(group=...)`` over
the same path, in this process and in a fresh interpreter (where the scan's "no" must leave
importlib.metadata unimported).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pi_builder_middleware._entrypoints import may_declare
from pi_builder_middleware.hookspecs import PROJECT_NAME

GROUP = PROJECT_NAME


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    monkeypatch.undo()
    importlib.invalidate_caches()


def found_by_importlib() -> set[str]:
    return {ep.name for ep in importlib.metadata.entry_points(group=GROUP)}


def write_info(root: Path, entry_points: str | None, suffix: str = ".dist-info") -> None:
    info = root / f"pbm_scan_test-0.1{suffix}"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pbm-scan-test\nVersion: 0.1\n")
    if entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")


@pytest.mark.parametrize(
    ("entry_points", "suffix", "declares"),
    [
        (f"[{GROUP}]\nscan-test = json\n", ".dist-info", True),
        (f"[{GROUP}]\nscan-test = json\n", ".egg-info", True),
        (f"  [[{GROUP}]]  \nscan-test = json\n", ".DIST-INFO", True),  # importlib strips every bracket, any case
        (f"[console_scripts]\nscan-test = {GROUP}.tools.cli:main\n", ".dist-info", False),  # the name, no group
        (f"[ {GROUP} ]\nscan-test = json\n", ".dist-info", False),  # a section named ' pi_builder_middleware '
        (f"# [{GROUP}]\n", ".dist-info", False),
        ("", ".dist-info", False),
        (None, ".dist-info", False),
    ],
)
def test_the_scan_agrees_with_importlib_metadata(
    on_path: Path, entry_points: str | None, suffix: str, declares: bool
) -> None:
    before = found_by_importlib()
    write_info(on_path, entry_points, suffix)
    importlib.invalidate_caches()
    assert found_by_importlib() - before == ({"scan-test"} if declares else set())
    assert may_declare(GROUP) == (declares or bool(before))


def test_what_it_cannot_read_as_importlib_does_is_a_maybe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pbm_zip-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: pbm-zip\nVersion: 0.1\n")
        zf.writestr("pbm_zip-0.1.dist-info/entry_points.txt", f"[{GROUP}]\nzip-test = json\n")
    monkeypatch.syspath_prepend(str(archive))
    importlib.invalidate_caches()
    assert "zip-test" in found_by_importlib()
    assert may_declare(GROUP)
    monkeypatch.syspath_prepend(str(tmp_path / "old.egg"))
    assert may_declare(GROUP)


def test_another_distribution_finder_is_a_maybe(monkeypatch: pytest.MonkeyPatch) -> None:
    class Finder:
        @staticmethod
        def find_distributions(context: object = None) -> list[object]:
            return []

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Finder])
    assert may_declare(GROUP)


def _fresh(root: Path | None) -> str:
    env = {**os.environ, "PYTHONPATH": str(root)} if root else dict(os.environ)
    code = (
        "import sys\n"
        "from pi_builder_middleware import Middleware, Provider\n"
        "mw = Middleware([Provider(id='a')])\n"
        "names = sorted(name for name, _ in mw.plugins.pm.list_name_plugin() if 'scan' in name)\n"
        "print('importlib.metadata' in sys.modules, *names)"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout


def test_a_program_without_plugins_never_imports_importlib_metadata_and_one_with_a_plugin_loads_it(
    tmp_path: Path,
) -> None:
    if found_by_importlib():
        pytest.fail(f"this environment has {GROUP} entry points installed: {found_by_importlib()}")
    assert _fresh(None).split() == ["False"]
    (tmp_path / "pbm_scan_plugin.py").write_text("")
    write_info(tmp_path, f"[{GROUP}]\nscan-test = pbm_scan_plugin\n")
    assert _fresh(tmp_path).split() == ["True", "scan-test"]
