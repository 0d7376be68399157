"""Checks of values: the field checks of the settings classes (``_settings``) and of the values made on every call.

Each field check takes a value and gives back what to store (converted as pydantic's lax mode does: a
number from a numeric string, an int from an integral float, a bool from ``"yes"``/``"no"``/``0``/``1``, an
enum from its value, a frozenset of names from any collection but a string; NaN and infinities refused),
or raises :class:`InvalidValue` saying what to give. ``Range``, ``MinLength``, ``AtLeast`` and ``AtMost`` are
the constraints the settings classes put in their annotations.

``require``, ``is_number`` and ``in_range`` check the dataclasses made on every call (outcomes, requests),
too hot for anything but a few comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import Any

from .errors import ConfigError

__all__ = [
    "AtLeast",
    "AtMost",
    "InvalidValue",
    "MinLength",
    "Range",
    "Relation",
    "bool_check",
    "enum_check",
    "in_range",
    "is_number",
    "names_check",
    "number_check",
    "require",
    "short",
    "text_check",
]

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


# The constraint markers are plain classes, not dataclasses: a dataclass compiles its methods at import.
class Range:
    """Bounds of a number setting: ``Annotated[float, Range(ge=0, le=1)]``."""

    __slots__ = ("ge", "gt", "le", "lt")

    def __init__(
        self, *, ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None
    ) -> None:
        self.ge, self.gt, self.le, self.lt = ge, gt, le, lt

    def holds(self, v: float) -> bool:
        """Whether ``v`` is within every bound given."""
        return (
            (self.ge is None or v >= self.ge)
            and (self.gt is None or v > self.gt)
            and (self.le is None or v <= self.le)
            and (self.lt is None or v < self.lt)
        )

    def __str__(self) -> str:
        bounds = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
        return " and ".join(f"{op} {getattr(self, name):g}" for name, op in bounds if getattr(self, name) is not None)

    def __repr__(self) -> str:
        given = (f"{name}={getattr(self, name)!r}" for name in self.__slots__ if getattr(self, name) is not None)
        return f"Range({', '.join(given)})"


class MinLength:
    """Shortest accepted string: ``Annotated[str, MinLength(1)]``."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length

    def __repr__(self) -> str:
        return f"MinLength({self.length})"


class Relation:
    """A cross-field constraint: this setting against the earlier setting ``other``."""

    __slots__ = ("other",)

    def __init__(self, other: str) -> None:
        self.other = other

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.other!r})"


class AtLeast(Relation):
    """Cross-field check: this setting must be >= the earlier setting ``other``."""

    __slots__ = ()


class AtMost(Relation):
    """Cross-field check: this setting must be <= the earlier setting ``other``."""

    __slots__ = ()


class InvalidValue(Exception):
    """What is wrong with one field's value (``message``), and where below the field (``path``, nested settings)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message, self.path = message, path


def short(value: object) -> str:
    """``repr(value)`` cut to about 80 characters, for error messages; never raises."""
    try:
        text = repr(value)  # a 400-digit int must not make a 400-character message
    except Exception:  # a broken __repr__ must not turn a ConfigError into another error
        return f"<unprintable {type(value).__name__}>"
    return text if len(text) <= 80 else f"{text[:40]}...{text[-20:]} ({len(text)} characters)"


def _decoded(value: object) -> object:
    """UTF-8 bytes as text (pydantic's lax rule); anything else as given."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return None
    return value


def _text_of(value: object) -> str | None:
    """Text to parse as a number or a boolean, stripped; None for anything else."""
    text = _decoded(value)
    return text.strip() if isinstance(text, str) else None


def _to_float(value: object) -> float | None:
    """The finite float ``value`` stands for (bool, int, float, numeric text), else None."""
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range
            return None
    else:
        text = _text_of(value)
        if text is None:
            return None
        try:
            number = float(text)
        except ValueError:
            return None
    return number if math.isfinite(number) else None


def _to_int(value: object) -> int | None:
    """The int ``value`` stands for (bool, int, integral float, integral numeric text), else None."""
    if isinstance(value, int):
        return int(value)
    if not isinstance(value, float):
        text = _text_of(value)
        if text is None:
            return None
        try:
            return int(text)
        except ValueError:
            pass
    number = _to_float(value)
    return int(number) if number is not None and number.is_integer() else None


def number_check(kind: type, bounds: Range | None) -> Callable[[Any], Any]:
    """The check of an ``int`` or ``float`` setting within ``bounds``."""
    whole = kind is int
    what = "a whole number" if whole else "a finite number"
    expected = f"{what} {bounds}" if bounds is not None and str(bounds) else what

    def check(value: Any) -> Any:
        number = _to_int(value) if whole else _to_float(value)
        if number is None or (bounds is not None and not bounds.holds(number)):
            raise InvalidValue(f"must be {expected} (got {short(value)})")
        return number

    return check


def text_check(min_length: int) -> Callable[[Any], Any]:
    """The check of a ``str`` setting at least ``min_length`` long (UTF-8 bytes are decoded)."""

    def check(value: Any) -> Any:
        text = _decoded(value)
        if not isinstance(text, str) or len(text) < min_length:
            expected = "a non-empty string" if min_length else "a string"
            raise InvalidValue(f"must be {expected} (got {short(value)})")
        return str.__str__(text)  # a str subclass (an enum member) is stored as the plain string

    return check


def bool_check(value: Any) -> Any:
    """A ``bool`` setting: True/False, 0/1, or yes/no, on/off, true/false, t/f, y/n, 1/0 in any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = _text_of(value)
    if text is not None and text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    raise InvalidValue(f"must be True or False (got {short(value)})")


def enum_check(kind: type[Enum]) -> Callable[[Any], Any]:
    """The check of a setting of enum ``kind``: a member or its value."""

    def check(value: Any) -> Any:
        try:
            return kind(value)
        except (ValueError, TypeError):
            choices = ", ".join(str(member.value) for member in kind)
            raise InvalidValue(f"must be one of {choices} (got {short(value)})") from None

    return check


def names_check(value: Any) -> Any:
    """A set-of-names setting: any collection of strings but one string, stored as a frozenset."""
    if isinstance(value, str | bytes):
        raise InvalidValue("give a set of names, e.g. {'tools', 'vision'}, not one string")
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise InvalidValue(f"must be a set of names (got {short(value)})")
    names = tuple(value)
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise InvalidValue(f"names must be strings (got {short(name)})", str(i))
    return frozenset(names)


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
        raise ConfigError(field, f"must be {expected} (got {short(value)})")
