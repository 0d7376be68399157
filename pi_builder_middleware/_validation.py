"""Pydantic base model that turns validation failures into :class:`ConfigError`, and the checks of
arguments that are too hot for pydantic (outcomes, requests, call arguments)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError

__all__ = ["ConfigModel", "config_error_from", "in_range", "is_number", "require"]


def config_error_from(owner: str, error: ValidationError) -> ConfigError:
    """Build one ConfigError naming the first failing field (``owner.field``) and listing the rest."""
    problems = error.errors(include_url=False)
    first = problems[0]
    field = f"{owner}." + (".".join(str(part) for part in first["loc"]) or "<root>")
    message = str(first["msg"])
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, ConfigError):  # from a nested config model: keep its field path and message
        field, message = f"{field}.{cause.field.partition('.')[2]}", cause.message
    elif isinstance(cause, ValueError):
        message = str(cause)
    if first["type"] == "extra_forbidden":
        message = "unknown setting; check the spelling against the documented fields"
    if len(problems) > 1:
        others = ", ".join(".".join(str(p) for p in prob["loc"]) for prob in problems[1:])
        message += f" (also invalid: {others})"
    return ConfigError(field, message)


class ConfigModel(BaseModel):
    """Frozen, strict-about-unknown-keys model whose validation errors are ConfigErrors.

    NaN and infinities are refused: no setting means anything with them, and they break JSON export.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise config_error_from(type(self).__name__, exc) from None


def is_number(value: object) -> bool:
    """A real number (not a bool) that is finite as a float: an int too large for one is not."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range: any sum it enters would overflow
        return False


def in_range(value: object, low: float, high: float) -> bool:
    """A number (see :func:`is_number`) from ``low`` to ``high``."""
    return is_number(value) and low <= value <= high  # type: ignore[operator]


def require(field: str, ok: bool, expected: str, value: object) -> None:
    """Raise ConfigError(``field``, "must be <expected> (got <value>)") unless ``ok``."""
    if not ok:
        raise ConfigError(field, f"must be {expected} (got {_short(value)})")


def _short(value: object) -> str:
    try:
        text = repr(value)  # a 400-digit int must not make a 400-character message
    except Exception:  # a broken __repr__ must not turn a ConfigError into another error
        return f"<unprintable {type(value).__name__}>"
    return text if len(text) <= 80 else f"{text[:40]}...{text[-20:]} ({len(text)} characters)"
