"""Build a :class:`Scenario` from plain data (a dict, a TOML file) with field-path errors.

Example TOML::

    seed = 7

    [[providers]]
    name = "primary"
    behaviour = { latency = { distribution = "lognormal", median_ms = 80, spread = 0.3 }, error_rate = 0.01 }

    [[providers.faults]]          # outage from t=10s to t=25s
    start_s = 10
    end_s = 25
    error_rate = 1.0
    errors = { service_unavailable = 1 }

    [[providers]]
    name = "backup"
    behaviour = { latency = 120 }  # a bare number is a fixed latency in ms
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import SimulatorConfigError, config_error_from_validation
from .models import Scenario

__all__ = ["load_scenario", "load_scenario_file", "read_toml"]


def load_scenario(data: Mapping[str, Any]) -> Scenario:
    """Validate ``data`` into a :class:`Scenario`.

    Raises :class:`SimulatorConfigError` listing every problem with its path, e.g.
    ``providers[1].faults[0].error_rate: must be between 0 and 1``.
    """
    if not isinstance(data, Mapping):
        raise SimulatorConfigError.single("", f"a scenario must be a mapping, got {type(data).__name__}")
    try:
        return Scenario.model_validate(dict(data))
    except ValidationError as exc:
        raise config_error_from_validation(exc) from None


def load_scenario_file(path: str | Path) -> Scenario:
    """Read a TOML scenario file (see the module docstring for the format)."""
    return load_scenario(read_toml(path))


def read_toml(path: str | Path, error: type[SimulatorConfigError] = SimulatorConfigError) -> dict[str, Any]:
    """The data in a TOML file; ``error`` (a :class:`SimulatorConfigError`) naming the file if it cannot be
    read or parsed."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise error.single(str(file), f"cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error.single(str(file), f"invalid TOML: {exc}") from None
