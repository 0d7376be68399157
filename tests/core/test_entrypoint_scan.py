"""The quick scan that spares importlib.metadata: it says "no" only where importlib.metadata finds nothing.

Each case writes a distribution's ``*.dist-info`` (or ``*.egg-info``) directory into ``tmp_path`` and asks a
fresh interpreter with that directory on its path for both answers: :func:`may_declare` and
``importlib.metadata.entry_points(group=...)``. (Fresh, because this process may have imported LiteLLM,
whose importlib_metadata backport replaces the standard distribution finder: the scan then always answers
"maybe", as test_another_distribution_finder_is_a_maybe shows.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pi_builder_middleware.hookspecs import PROJECT_NAME

GROUP = PROJECT_NAME

PROBE = """
import importlib.metadata, json, sys
from pi_builder_middleware._entrypoints import may_declare
{prelude}
print(json.dumps([may_declare({group!r}), sorted(ep.name for ep in importlib.metadata.entry_points(group={group!r}))]))
"""


def probe(*path: Path, prelude: str = "") -> tuple[bool, list[str]]:
    """(may_declare, entry point names importlib.metadata finds) in a fresh interpreter with ``path`` first."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, path))}
    code = PROBE.format(prelude=prelude, group=GROUP)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    maybe, names = json.loads(out)
    return maybe, names


def write_info(root: Path, entry_points: str | None, suffix: str = ".dist-info") -> Path:
    info = root / f"pbm_scan_test-0.1{suffix}"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pbm-scan-test\nVersion: 0.1\n")
    if entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    return root


def test_this_environment_declares_no_plugin(tmp_path: Path) -> None:
    assert probe(tmp_path) == (False, [])


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
    tmp_path: Path, entry_points: str | None, suffix: str, declares: bool
) -> None:
    write_info(tmp_path, entry_points, suffix)
    assert probe(tmp_path) == (declares, ["scan-test"] if declares else [])


def test_what_it_cannot_read_as_importlib_does_is_a_maybe(tmp_path: Path) -> None:
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pbm_zip-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: pbm-zip\nVersion: 0.1\n")
        zf.writestr("pbm_zip-0.1.dist-info/entry_points.txt", f"[{GROUP}]\nzip-test = json\n")
    assert probe(archive) == (True, ["zip-test"])
    (tmp_path / "old.egg").mkdir()
    assert probe(tmp_path / "old.egg") == (True, [])  # an egg: importlib.metadata reads its EGG-INFO


def test_another_distribution_finder_is_a_maybe(tmp_path: Path) -> None:
    finder = (
        "class Finder:\n"
        "    @staticmethod\n"
        "    def find_distributions(context=None):\n"
        "        return []\n"
        "sys.meta_path.append(Finder)"
    )
    assert probe(tmp_path, prelude=finder) == (True, [])


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
    assert _fresh(None).split() == ["False"]
    (tmp_path / "pbm_scan_plugin.py").write_text("")
    write_info(tmp_path, f"[{GROUP}]\nscan-test = pbm_scan_plugin\n")
    assert _fresh(tmp_path).split() == ["True", "scan-test"]
