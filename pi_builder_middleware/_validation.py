"""Checks of the core's settings (``@settings`` classes) and of the values made on every call.

The settings classes (``Provider`` and the ``*Config`` / ``*Thresholds`` classes) are frozen, slotted
dataclasses whose constraints sit in their annotations, once per field::

    @settings
    class AlertThresholds:
        high_latency_ms: Annotated[float, Range(gt=0)] = 5000.0

Hand-written rather than pydantic models: importing pydantic and building the schemas of the seven
classes cost ≈ 110 ms on the first use of the core, more than the whole first-use budget (100 ms,
BENCHMARKS.md "Import cost"); these checks cost well under a millisecond at import. They follow
pydantic's lax rules, which these classes used before: a number may be given as a numeric string, an
integral float is an int, ``"yes"``/``"no"``/``0``/``1`` are booleans, an enum is given by its value, a
nested setting by a dict; NaN and infinities are refused, as are unknown keys. Every failure is a
:class:`ConfigError` naming the field (``Owner.field``, ``Owner.nested.field``) and what to give.

``require``, ``is_number`` and ``in_range`` check the dataclasses made on every call (outcomes, requests).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from enum import Enum
from typing import Any, ClassVar, TypeVar, dataclass_transform

from .errors import ConfigError

__all__ = [
    "AtLeast",
    "AtMost",
    "MinLength",
    "Range",
    "SettingsBase",
    "in_range",
    "is_number",
    "require",
    "settings",
]

T = TypeVar("T")

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
_UNKNOWN = "unknown setting; check the spelling against the documented fields"


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


class _Relation:
    __slots__ = ("other",)

    def __init__(self, other: str) -> None:
        self.other = other

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.other!r})"


class AtLeast(_Relation):
    """Cross-field check: this setting must be >= the earlier setting ``other``."""

    __slots__ = ()


class AtMost(_Relation):
    """Cross-field check: this setting must be <= the earlier setting ``other``."""

    __slots__ = ()


class _Invalid(Exception):
    """One field's problem: ``path`` below the field (nested settings), and the message."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message, self.path = message, path


def _short(value: object) -> str:
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


def _number_check(kind: type, bounds: Range | None) -> Callable[[Any], Any]:
    whole = kind is int
    what = "a whole number" if whole else "a finite number"
    expected = f"{what} {bounds}" if bounds is not None and str(bounds) else what

    def check(value: Any) -> Any:
        number = _to_int(value) if whole else _to_float(value)
        if number is None or (bounds is not None and not bounds.holds(number)):
            raise _Invalid(f"must be {expected} (got {_short(value)})")
        return number

    return check


def _text_check(min_length: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        text = _decoded(value)
        if not isinstance(text, str) or len(text) < min_length:
            expected = "a non-empty string" if min_length else "a string"
            raise _Invalid(f"must be {expected} (got {_short(value)})")
        return str.__str__(text)  # a str subclass (an enum member) is stored as the plain string

    return check


def _bool_check(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = _text_of(value)
    if text is not None and text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    raise _Invalid(f"must be True or False (got {_short(value)})")


def _enum_check(kind: type[Enum]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        try:
            return kind(value)
        except (ValueError, TypeError):
            choices = ", ".join(str(member.value) for member in kind)
            raise _Invalid(f"must be one of {choices} (got {_short(value)})") from None

    return check


def _names_check(value: Any) -> Any:
    if isinstance(value, str | bytes):
        raise _Invalid("give a set of names, e.g. {'tools', 'vision'}, not one string")
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise _Invalid(f"must be a set of names (got {_short(value)})")
    names = tuple(value)
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise _Invalid(f"names must be strings (got {_short(name)})", str(i))
    return frozenset(names)


def _nested_check(kind: type[SettingsBase]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, kind):
            return value
        if not isinstance(value, Mapping):
            raise _Invalid(f"must be a {kind.__name__} or a dict of its settings (got {_short(value)})")
        if not all(isinstance(key, str) for key in value):
            raise _Invalid(f"setting names must be strings (got {_short(list(value))})")
        try:
            return kind(**value)
        except ConfigError as exc:  # keep the nested field's path and message
            raise _Invalid(exc.message, exc.field.partition(".")[2]) from None

    return check


def _check_for(annotation: Any) -> Callable[[Any], Any]:
    """The check of one field, from its resolved annotation (``Annotated[type | None, constraints...]``)."""
    extras: tuple[Any, ...] = ()
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *rest = typing.get_args(annotation)
        extras = tuple(rest)
    optional = False
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        optional, annotation = len(members) < len(typing.get_args(annotation)), members[0]
    bounds = next((e for e in extras if isinstance(e, Range)), None)
    length = next((e.length for e in extras if isinstance(e, MinLength)), 0)
    check: Callable[[Any], Any]
    if annotation is bool:
        check = _bool_check
    elif annotation in (int, float):
        check = _number_check(annotation, bounds)
    elif annotation is str:
        check = _text_check(length)
    elif isinstance(annotation, type) and issubclass(annotation, Enum):
        check = _enum_check(annotation)
    elif isinstance(annotation, type) and issubclass(annotation, SettingsBase):
        check = _nested_check(annotation)
    elif typing.get_origin(annotation) is AbstractSet:
        check = _names_check
    else:  # a programming error in this package, met at import
        raise TypeError(f"no check for settings of type {annotation!r}")
    if not optional:
        return check
    return lambda value: None if value is None else check(value)


class SettingsBase:
    """Base of the ``@settings`` classes: construction with checks, ``FIELDS``, ``to_dict()``, and the
    methods a frozen dataclass would generate (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
    ``__setattr__``): written once here instead of compiled for every class at import.
    """

    __slots__ = ()

    #: The names of the settings (what ``__init__`` takes and ``to_dict`` gives).
    FIELDS: ClassVar[frozenset[str]] = frozenset()
    _names: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}
    _checks: ClassVar[tuple[tuple[str, Callable[[Any], Any], tuple[_Relation, ...]], ...]] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls, names = type(self), self._names
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes {len(names)} positional arguments but {len(args)} were given")
        given = dict(zip(names, args, strict=False))
        twice = given.keys() & kwargs.keys()
        if twice:
            raise TypeError(f"{cls.__name__}() got multiple values for argument {min(twice)!r}")
        given.update(kwargs)
        problems = [(name, "required") for name in names if name not in given and name not in self._defaults]
        problems += [(key, _UNKNOWN) for key in given if key not in self.FIELDS]
        if problems:
            _raise(cls.__name__, problems)
        for name, check, relations in self._checks:
            raw = given[name] if name in given else self._defaults[name]
            try:
                value = check(raw)
            except _Invalid as exc:
                problems.append((f"{name}.{exc.path}" if exc.path else name, exc.message))
                continue
            object.__setattr__(self, name, value)
            for rel in relations:
                if any(field == rel.other for field, _ in problems):
                    continue  # the other setting failed its own check: nothing to compare with
                bound = getattr(self, rel.other)
                if bound is None or value is None:
                    continue
                if isinstance(rel, AtLeast) and value < bound:
                    problems.append((name, f"must be >= {rel.other} ({bound}), got {value}"))
                elif isinstance(rel, AtMost) and value > bound:
                    problems.append((name, f"must be <= {rel.other} ({bound}), got {value}"))
        if problems:
            _raise(cls.__name__, problems)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._names)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._names)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def __getstate__(self) -> tuple[Any, ...]:
        return self._values()

    def __setstate__(self, state: tuple[Any, ...]) -> None:  # pickle and copy: the values were checked
        for name, value in zip(self._names, state, strict=True):
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: enums by value, nested settings as dicts, sets as sorted lists.

        ``type(x)(**x.to_dict()) == x`` for every instance.
        """
        out: dict[str, Any] = {}
        for name in self._names:
            value = getattr(self, name)
            if isinstance(value, SettingsBase):
                value = value.to_dict()
            elif isinstance(value, Enum):
                value = value.value
            elif isinstance(value, frozenset):
                value = sorted(value)
            out[name] = value
        return out


def _raise(owner: str, problems: list[tuple[str, str]]) -> typing.NoReturn:
    """One ConfigError naming the first failing field (``owner.field``) and listing the rest."""
    (field, message), rest = problems[0], problems[1:]
    if rest:
        message += f" (also invalid: {', '.join(f for f, _ in rest)})"
    raise ConfigError(f"{owner}.{field}", message)


def _annotations(cls: type, names: Iterable[str]) -> dict[str, Any]:
    """The fields' annotations, evaluated: what ``typing.get_type_hints`` gives, with one ``eval`` per class
    instead of one compile per annotation (``from __future__ import annotations`` makes them strings)."""
    raw = {name: cls.__annotations__[name] for name in names}
    text = {name: ann for name, ann in raw.items() if isinstance(ann, str)}
    if text:
        module = vars(sys.modules[cls.__module__])
        values = eval(f"({', '.join(text.values())},)", dict(module))  # the module's own annotations
        raw.update(zip(text, values, strict=True))
    return raw


@dataclass_transform(frozen_default=True)
def settings(cls: type[T]) -> type[T]:
    """Make ``cls`` (a :class:`SettingsBase` subclass) a frozen, slotted dataclass whose fields are checked.

    The checks come from the annotations (see the module docstring). It is a dataclass
    (``dataclasses.fields``, ``replace``, ``asdict`` work); its methods are :class:`SettingsBase`'s.
    Unknown keyword arguments and missing required ones raise :class:`ConfigError` as bad values do.
    """
    made: Any = dataclasses.dataclass(init=False, repr=False, eq=False, slots=True)(cls)
    fields = dataclasses.fields(made)
    hints = _annotations(made, (f.name for f in fields))
    made._names = tuple(f.name for f in fields)
    made.FIELDS = frozenset(made._names)
    made._defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
    made._checks = tuple(
        (
            f.name,
            _check_for(hints[f.name]),
            tuple(e for e in getattr(hints[f.name], "__metadata__", ()) if isinstance(e, _Relation)),
        )
        for f in fields
    )
    return made  # type: ignore[no-any-return]


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
