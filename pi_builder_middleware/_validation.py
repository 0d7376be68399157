"""Pydantic base model that turns validation failures into :class:`ConfigError`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError

__all__ = ["ConfigModel", "config_error_from"]


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
