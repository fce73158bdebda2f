"""Typed configs: each key's type and allowed values, declared once with ``typing.Annotated``.

A model declares a dataclass of its keys, without defaults (the model's YAML is the one place a
default lives), and links it from the model class (``config_type = GRU4RecConfig``)::

    @dataclass
    class GRU4RecConfig(TypedConfig):
        hidden_size: Annotated[int, AtLeast(1)]
        dropout_prob: Annotated[float, Probability()]
        loss_type: Annotated[str, OneOf("CE", "BPR", ignore_case=True)]

``GRU4RecConfig.from_values(values, sources)`` coerces what RecBole would accept (64.0 from
quniform -> 64 where an int is meant, 1 -> 1.0 where a float is meant, 'ce' -> 'CE') and rejects the
rest with one line: ``"{source}: {key} must be {what is allowed}, got {value!r}"``. Assigning to a
field later is checked the same way, so an instance only ever holds valid values.
``TypedConfig.fields()`` lists the keys as ``FieldSpec``s, each able to ``describe()`` itself and to
give ``invalid_examples()`` that the validation rejects.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, Union

from models.errors import ConfigError

if TYPE_CHECKING:
    from models.config import Config

__all__ = ["Above", "Annotated", "AtLeast", "Constraint", "FieldSpec", "OneOf", "Probability", "TypedConfig"]

_NOUNS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
# values of the wrong type, per type: each is rejected before any constraint is looked at
_WRONG_TYPE: dict[type, list[Any]] = {
    int: [128.5, "x", True], float: ["x", True, math.nan], str: [3], bool: ["yes", 2],
}


class Constraint:
    """What a value of the field's type must also satisfy."""

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self, kind: type) -> str:
        """The allowed values as a phrase ("an integer >= 1"); ``kind`` is the field's type."""
        raise NotImplementedError

    def invalid_examples(self, kind: type) -> list[Any]:
        """Values of the right type that ``accepts`` rejects."""
        raise NotImplementedError

    def canonical(self, value: Any) -> Any:
        """The spelling to keep for an accepted value (OneOf's case-insensitive match)."""
        return value


@dataclass(frozen=True)
class AtLeast(Constraint):
    minimum: int

    def accepts(self, value: Any) -> bool:
        return value >= self.minimum

    def describe(self, kind: type) -> str:
        if kind is int and self.minimum == 1:
            return "a positive integer"  # the wording S3Rec's and the trainer's messages have always used
        return f"{_NOUNS[kind]} >= {self.minimum}"

    def invalid_examples(self, kind: type) -> list[Any]:
        return [self.minimum - 1, self.minimum - 4] if kind is int else [self.minimum - 0.5]


@dataclass(frozen=True)
class Above(Constraint):
    bound: float

    def accepts(self, value: Any) -> bool:
        return value > self.bound

    def describe(self, kind: type) -> str:
        return f"{_NOUNS[kind]} > {self.bound:g}"

    def invalid_examples(self, kind: type) -> list[Any]:
        return [self.bound, self.bound - 1]


@dataclass(frozen=True)
class Probability(Constraint):
    """A probability in [0, 1): a dropout of 1 would zero every activation."""

    def accepts(self, value: Any) -> bool:
        return 0 <= value < 1

    def describe(self, kind: type) -> str:
        return "in [0, 1)"

    def invalid_examples(self, kind: type) -> list[Any]:
        return [1.5, -0.1, 1.0]


class OneOf(Constraint):
    """One of a few names; ``ignore_case`` where seqtune has always matched them case-insensitively."""

    def __init__(self, *choices: str, ignore_case: bool = False) -> None:
        self.choices = choices
        self.ignore_case = ignore_case

    def __repr__(self) -> str:
        return f"OneOf({', '.join(map(repr, self.choices))}, ignore_case={self.ignore_case})"

    def _match(self, value: str) -> str | None:
        for choice in self.choices:
            if value == choice or (self.ignore_case and value.lower() == choice.lower()):
                return choice
        return None

    def accepts(self, value: Any) -> bool:
        return self._match(value) is not None

    def canonical(self, value: Any) -> Any:
        return self._match(value)

    def describe(self, kind: type) -> str:
        return f"one of {', '.join(self.choices)}"

    def invalid_examples(self, kind: type) -> list[Any]:
        return ["XYZ"]


def _coerce(kind: type, value: Any) -> Any:
    """``value`` as ``kind``, or raise ValueError. Bools are never numbers (True is an int in Python)."""
    if kind is bool or kind is str:
        if isinstance(value, kind):
            return value
    elif isinstance(value, bool):
        pass
    elif kind is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():  # quniform's 64.0
            return int(value)
    elif kind is float and isinstance(value, (int, float, str)):
        try:
            number = float(value)  # also YAML 1.1's string "1e-12", which RecBole reads as a float
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    raise ValueError(value)


@dataclass(frozen=True)
class FieldSpec:
    """One declared key: its type, whether ``~`` (None) is allowed, and at most one constraint."""

    name: str
    kind: type
    optional: bool = False
    constraint: Constraint | None = None

    def describe(self) -> str:
        what = self.constraint.describe(self.kind) if self.constraint else _NOUNS[self.kind]
        return f"{what} or ~" if self.optional else what

    def invalid_examples(self) -> list[Any]:
        examples = list(_WRONG_TYPE[self.kind])
        if self.constraint is not None:
            examples = self.constraint.invalid_examples(self.kind) + examples
        return examples if self.optional else [*examples, None]

    def validate(self, value: Any, source: str) -> Any:
        """The coerced value, or ConfigError naming the source, the key, what is allowed and the value."""
        if value is None and self.optional:
            return None
        try:
            coerced = _coerce(self.kind, value)
            if self.constraint is not None and not self.constraint.accepts(coerced):
                raise ValueError(value)
        except ValueError:
            raise ConfigError(f"{source}: {self.name} must be {self.describe()}, got {value!r}") from None
        return self.constraint.canonical(coerced) if self.constraint is not None else coerced


def _field_spec(name: str, hint: Any) -> FieldSpec:
    constraints: tuple[Any, ...] = ()
    if typing.get_origin(hint) is Annotated:
        hint, *rest = typing.get_args(hint)
        constraints = tuple(rest)
    optional = False
    if typing.get_origin(hint) in (Union, types.UnionType):
        members = [m for m in typing.get_args(hint) if m is not type(None)]
        if len(members) != 1:
            raise TypeError(f"{name}: a field is one type, optionally | None; got {hint!r}")
        optional, hint = len(members) < len(typing.get_args(hint)), members[0]
    if hint not in _NOUNS or len(constraints) > 1 or not all(isinstance(c, Constraint) for c in constraints):
        raise TypeError(f"{name}: declare int, float, str or bool with at most one Constraint; got {hint!r}")
    return FieldSpec(name, hint, optional, constraints[0] if constraints else None)


_SPECS: dict[type, tuple[FieldSpec, ...]] = {}  # per config class: parsed once


def _field_specs(cls: type) -> tuple[FieldSpec, ...]:
    if cls not in _SPECS:
        hints = typing.get_type_hints(cls, include_extras=True)
        _SPECS[cls] = tuple(_field_spec(f.name, hints[f.name]) for f in dataclasses.fields(cls))
    return _SPECS[cls]


C = TypeVar("C", bound="TypedConfig")


@dataclass
class TypedConfig:
    """Base of the typed configs; subclasses are dataclasses of Annotated fields, without defaults."""

    @classmethod
    def fields(cls) -> tuple[FieldSpec, ...]:
        """The declared keys in declaration order (base classes' first), with their constraints."""
        return _field_specs(cls)

    @classmethod
    def from_values(cls: type[C], values: Mapping[str, Any], sources: Mapping[str, str]) -> C:
        """Coerce and validate the resolved values, then the rules between keys (``check``)."""
        missing = [spec.name for spec in cls.fields() if spec.name not in values]
        if missing:
            raise ConfigError(f"{cls.__name__}: no value for {', '.join(missing)}")
        typed = {spec.name: spec.validate(values[spec.name], sources.get(spec.name, spec.name))
                 for spec in cls.fields()}
        config = cls(**typed)
        config.check(values, sources)
        return config

    @classmethod
    def from_config(cls: type[C], config: Config) -> C:
        return cls.from_values(config.values, config.sources)

    def __setattr__(self, name: str, value: Any) -> None:
        spec = next((s for s in self.fields() if s.name == name), None)
        if spec is not None:
            value = spec.validate(value, type(self).__name__)
        super().__setattr__(name, value)

    def check(self, values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
        """Rules between keys (``values`` holds every resolved key); raise ConfigError. None by default."""

    def as_dict(self) -> dict[str, Any]:
        return {spec.name: getattr(self, spec.name) for spec in self.fields()}
