"""Public API surface and import hygiene."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import pi_builder_middleware.testing as sim_package


def test_all_is_sorted_and_complete() -> None:
    names = sim_package.__all__
    assert list(names) == sorted(names, key=lambda n: (not n.isupper(), n))  # constants first, as ruff sorts
    assert len(set(names)) == len(names)
    for name in names:
        assert getattr(sim_package, name) is not None
    public = {n for n, v in vars(sim_package).items() if not n.startswith("_") and not isinstance(v, ModuleType)}
    assert public - {"annotations"} == set(names)


def test_import_hygiene() -> None:
    """The core never loads the simulator; the simulator never loads LLM frameworks."""
    code = (
        "import sys\n"
        "import pi_builder_middleware\n"
        "core = set(sys.modules)\n"
        "import pi_builder_middleware.testing, pi_builder_middleware.testing.cli\n"
        "print(' '.join(core)); print(' '.join(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    core_line, sim_line = out.splitlines()
    core = set(core_line.split())
    assert "pi_builder_middleware.testing" not in core
    assert "aiohttp" not in core
    frameworks = {"litellm", "langchain", "langchain_core", "openai"}
    assert not {m for m in sim_line.split() if m.split(".")[0] in frameworks}
