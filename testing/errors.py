"""Errors raised by the provider simulator.

Hierarchy::

    PiBuilderError
    ├── ConfigError (a ValueError)
    │   └── SimulatorConfigError   bad behaviour / scenario / CLI input (carries every field path)
    └── SimulatorStateError        (also a RuntimeError) e.g. asking for a URL before start(), or an
                                   unknown provider name
"""

from __future__ import annotations

from pydantic import ValidationError

from pi_builder_middleware.errors import ConfigError, PiBuilderError

__all__ = ["SimulatorConfigError", "SimulatorStateError", "config_error_from_validation"]


class SimulatorConfigError(ConfigError):
    """Invalid simulator configuration.

    ``problems`` holds ``(field_path, message)`` pairs such as
    ``("providers[1].faults[0].error_rate", "must be between 0 and 1")``; ``str(err)`` joins them.
    As a :class:`ConfigError`, ``field`` and ``message`` are the first problem's.
    """

    def __init__(self, problems: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> None:
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        self.field, self.message = self.problems[0] if self.problems else ("", "invalid simulator configuration")
        text = "; ".join(f"{path}: {message}" if path else message for path, message in self.problems)
        PiBuilderError.__init__(self, text or "invalid simulator configuration")

    @classmethod
    def single(cls, path: str, message: str) -> SimulatorConfigError:
        """Build an error with one problem."""
        return cls([(path, message)])


class SimulatorStateError(PiBuilderError, RuntimeError):
    """The simulator is not in a state that allows the requested operation."""


def _format_loc(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def config_error_from_validation(exc: ValidationError, prefix: str = "") -> SimulatorConfigError:
    """Turn a pydantic ``ValidationError`` into a :class:`SimulatorConfigError` with field paths."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        # Drop pydantic's internal location segments (validator names, enum/dict key markers).
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "[key]"))))
        kind = error["type"]
        if kind == "value_error":
            message = str(error.get("ctx", {}).get("error", error["msg"]))
        elif kind == "extra_forbidden":
            message = "unknown field"
        elif kind == "missing":
            message = "is required"
        else:
            message = error["msg"]
        problems.append((_format_loc(prefix, loc), message))
    return SimulatorConfigError(problems)
