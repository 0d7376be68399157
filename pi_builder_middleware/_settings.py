"""The settings classes (``Provider`` and the ``*Config`` / ``*Thresholds`` classes): frozen, slotted
dataclasses whose constraints sit in their annotations, once per field::

    @settings
    class AlertThresholds(SettingsBase):
        high_latency_ms: Annotated[float, Range(gt=0)] = 5000.0
        min_samples: Annotated[int, Range(ge=1)] = 5

Hand-written rather than pydantic models: importing pydantic and building the schemas of the seven classes
was ≈ 110 ms of the core's first use, more than the whole first-use budget (100 ms, BENCHMARKS.md "Import
cost"); building these classes takes a few milliseconds. They keep what the pydantic models gave: keyword
construction with pydantic's lax conversions (``_validation``), nested settings from dicts, unknown keys and
NaN refused, one :class:`ConfigError` naming the first bad field (``Owner.field``, ``Owner.nested.field``) and
listing the others, equality, hashing, copies and pickling; ``to_dict()`` replaces ``model_dump(mode="json")``,
``FIELDS`` ``model_fields``, ``dataclasses.replace`` ``model_copy`` (and checks the new values).
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from enum import Enum
from typing import Any, ClassVar, TypeVar, dataclass_transform

from ._validation import (
    AtLeast,
    AtMost,
    InvalidValue,
    MinLength,
    Range,
    Relation,
    bool_check,
    enum_check,
    names_check,
    number_check,
    short,
    text_check,
)
from .errors import ConfigError

__all__ = ["SettingsBase", "settings"]

T = TypeVar("T")

_UNKNOWN = "unknown setting; check the spelling against the documented fields"


def _nested_check(kind: type[SettingsBase]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, kind):
            return value
        if not isinstance(value, Mapping):
            raise InvalidValue(f"must be a {kind.__name__} or a dict of its settings (got {short(value)})")
        if not all(isinstance(key, str) for key in value):
            raise InvalidValue(f"setting names must be strings (got {short(list(value))})")
        try:
            return kind(**value)
        except ConfigError as exc:  # keep the nested field's path and message
            raise InvalidValue(exc.message, exc.field.partition(".")[2]) from None

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
        check = bool_check
    elif annotation in (int, float):
        check = number_check(annotation, bounds)
    elif annotation is str:
        check = text_check(length)
    elif isinstance(annotation, type) and issubclass(annotation, Enum):
        check = enum_check(annotation)
    elif isinstance(annotation, type) and issubclass(annotation, SettingsBase):
        check = _nested_check(annotation)
    elif typing.get_origin(annotation) is AbstractSet:
        check = names_check
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
    _checks: ClassVar[tuple[tuple[str, Callable[[Any], Any], tuple[Relation, ...]], ...]] = ()

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
            except InvalidValue as exc:
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
            tuple(e for e in getattr(hints[f.name], "__metadata__", ()) if isinstance(e, Relation)),
        )
        for f in fields
    )
    return made  # type: ignore[no-any-return]
