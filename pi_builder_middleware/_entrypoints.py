"""Whether any installed distribution may declare an entry point in a group, without importing importlib.metadata.

``importlib.metadata`` takes ≈ 30 ms to import (email, zipfile, csv, ...), about a third of the first use of
the core (BENCHMARKS.md "Import cost"), and most programs have no third-party plugin installed. This scan
answers "no" only where ``importlib.metadata.entry_points(group=...)`` would find nothing: it looks where that
function looks when the standard path finder is the only distribution finder (the ``*.dist-info`` and
``*.egg-info`` directories of each directory on ``sys.path``) and reads ``entry_points.txt`` section headers as
it does. Anything it cannot read the same way (a zip or an egg on the path, an undecodable file, another
distribution finder such as the importlib_metadata backport's, which importing LiteLLM installs) answers
"maybe". On "maybe" the caller asks importlib.metadata, which decides as before.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import PathFinder

__all__ = ["may_declare"]


def may_declare(group: str) -> bool:
    """False only if no distribution importlib.metadata would find declares an entry point in ``group``."""
    if any(finder is not PathFinder for finder in sys.meta_path if hasattr(finder, "find_distributions")):
        return True
    for entry in sys.path:
        if not isinstance(entry, str) or entry.lower().endswith(".egg"):
            return True
        root = entry or "."
        try:
            with os.scandir(root) as children:
                infos = [
                    child.path
                    for child in children
                    if child.name.lower().endswith((".dist-info", ".egg-info")) and child.is_dir()
                ]
        except NotADirectoryError:  # a zip file: importlib.metadata looks inside
            return True
        except OSError:  # missing or unreadable: importlib.metadata finds nothing there either
            continue
        for info in infos:
            try:
                with open(os.path.join(info, "entry_points.txt"), encoding="utf-8") as file:
                    text = file.read()
            except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError):
                continue  # what importlib.metadata's read_text passes over too
            except (OSError, ValueError):
                return True
            if group in text and any(_section(line) == group for line in text.splitlines()):
                return True
    return False


def _section(line: str) -> str | None:
    """The section a line of ``entry_points.txt`` opens, read as importlib.metadata's ``Sectioned`` does."""
    value = line.strip()
    return value.strip("[]") if value.startswith("[") and value.endswith("]") else None
