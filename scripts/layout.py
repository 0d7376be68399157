"""Build ``build/layout/pi_builder_middleware``: the installed package as one tree of symlinks.

The source tree maps several top-level directories into one package (pyproject ``[tool.setuptools]
package-dir``: ``plugins/`` → ``pi_builder_middleware.plugins``, ``adapters/``, ``testing/``, ``tools/``).
An editable install resolves that with an import hook, which static tools do not run; mypy and
import-linter (grimp) read this tree instead, so ``from pi_builder_middleware.testing import ...`` is
checked like any import. Rebuilt from scratch on each run (new or removed files are picked up);
scripts/test.sh runs it before ``lint-imports`` and ``mypy``.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "layout"
PACKAGE = "pi_builder_middleware"
SUFFIXES = {".py", ".pyi", ".typed", ".toml"}


def main() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dir: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    if OUT.exists():
        shutil.rmtree(OUT)
    # Longest names last, so a mapped subpackage is laid over its parent's directory.
    for name, source in sorted(package_dir.items(), key=lambda item: item[0].count(".")):
        if not (name == PACKAGE or name.startswith(PACKAGE + ".")):
            continue
        src = ROOT / source
        dest = OUT.joinpath(*name.split("."))
        for path in src.rglob("*"):
            if path.is_file() and path.suffix in SUFFIXES and "__pycache__" not in path.parts:
                rel = path.relative_to(src)
                # a mapped subpackage owns its directory: skip the parent's copy of it, if any
                if name == PACKAGE and rel.parts[0] in {k.split(".")[1] for k in package_dir if k.count(".") == 1}:
                    continue
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(path)
    print(f"layout: {OUT.relative_to(ROOT)}/{PACKAGE}")


if __name__ == "__main__":
    main()
