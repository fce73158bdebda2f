"""RecBole's ``hyper.test`` grammar parsed into a typed search space shared by every backend.

One parameter per line::

    name choice [v1, v2, ...]       # any Python literals; lists go quoted: ['[64,64]','[128]']
    name uniform low,high
    name quniform low,high,q        # round(uniform(low, high) / q) * q
    name loguniform low,high        # exp(uniform(low, high)): low/high are natural-log exponents

``#`` starts a comment; blank lines are skipped. As in RecBole, spaces inside the value are
removed. Values go through ``ast.literal_eval`` only. Every error names ``file:line``.
"""

from __future__ import annotations

import ast
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.config import parse_value
from models.errors import SeqtuneError, closest


class SpaceError(SeqtuneError):
    """A malformed search space file."""


class Distribution(ABC):
    """One parameter's distribution; backends translate it (to_optuna, to_ray)."""

    @abstractmethod
    def describe(self) -> str: ...

    def to_optuna(self) -> Any:
        raise NotImplementedError

    def from_optuna(self, value: Any) -> Any:
        """The value the trial's config gets for Optuna's sampled ``value``."""
        return value

    def suggest(self, trial: Any, name: str) -> Any:
        """Ask an Optuna trial for this parameter (a queued trial returns its fixed value)."""
        distribution = self.to_optuna()
        if hasattr(distribution, "choices"):
            return trial.suggest_categorical(name, list(distribution.choices))
        return trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step,
                                   log=distribution.log)


@dataclass(frozen=True)
class Choice(Distribution):
    values: tuple[Any, ...]

    def describe(self) -> str:
        return f"choice {list(self.values)!r}"

    def to_optuna(self) -> Any:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution([encode_choice(v) for v in self.values])


@dataclass(frozen=True)
class Uniform(Distribution):
    low: float
    high: float

    def describe(self) -> str:
        return f"uniform {self.low},{self.high}"

    def to_optuna(self) -> Any:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high)


@dataclass(frozen=True)
class QUniform(Distribution):
    low: float
    high: float
    q: float

    def describe(self) -> str:
        return f"quniform {self.low},{self.high},{self.q}"

    def to_optuna(self) -> Any:
        from optuna.distributions import FloatDistribution

        # hyperopt's quniform yields round(U(low, high) / q) * q: the multiples of q in that range
        low, high = round(self.low / self.q) * self.q, round(self.high / self.q) * self.q
        return FloatDistribution(low, high, step=self.q)

    def from_optuna(self, value: Any) -> Any:
        return round(round(float(value) / self.q) * self.q, 10)


@dataclass(frozen=True)
class LogUniform(Distribution):
    low: float  # natural-log exponent
    high: float

    def describe(self) -> str:
        return f"loguniform {self.low},{self.high}"

    @property
    def bounds(self) -> tuple[float, float]:
        return math.exp(self.low), math.exp(self.high)

    def to_optuna(self) -> Any:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(*self.bounds, log=True)


DISTRIBUTIONS = ("choice", "uniform", "quniform", "loguniform")
_PRIMITIVE = (type(None), bool, int, float, str)


def encode_choice(value: Any) -> Any:
    """Optuna stores only primitives: a list or dict choice travels as its literal text."""
    return value if isinstance(value, _PRIMITIVE) else repr(value)


def decode_value(value: Any) -> Any:
    """Quoted lists/dicts (RecBole's convention) become values when the trial runs."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in "[{(":
            return parse_value(stripped)
    return value


@dataclass
class Parameter:
    name: str
    distribution: Distribution
    line: int


@dataclass
class SearchSpace:
    source: str
    parameters: dict[str, Parameter] = field(default_factory=dict)

    @property
    def is_grid(self) -> bool:
        return bool(self.parameters) and all(isinstance(p.distribution, Choice) for p in self.parameters.values())

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of an all-choice space, as Optuna-storable params."""
        combos: list[dict[str, Any]] = [{}]
        for name, param in self.parameters.items():
            assert isinstance(param.distribution, Choice)
            combos = [{**c, name: encode_choice(v)} for c in combos for v in param.distribution.values]
        return combos

    def shuffled_grid(self, seed: int) -> list[dict[str, Any]]:
        """The grid in a seeded random order (as RecBole's exhaustive search draws it without replacement)."""
        points = self.grid()
        random.Random(seed).shuffle(points)
        return points

    @property
    def grid_size(self) -> int:
        return len(self.grid()) if self.is_grid else 0

    def to_config_values(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """Optuna's stored params -> the config values one trial runs with."""
        values = {}
        for name, value in sampled.items():
            param = self.parameters[name]
            values[name] = decode_value(param.distribution.from_optuna(value))
        return values

    def check_keys(self, known: Iterable[str], what: str) -> None:
        known = sorted(set(known))
        for param in self.parameters.values():
            if param.name not in known:
                raise SpaceError(
                    f"{self.source}:{param.line}: unknown parameter {param.name!r} for {what}"
                    f"{closest(param.name, known)}"
                )


def strip_comment(line: str) -> str:
    """Drop a ``#`` comment: a whole-line one, or one that starts outside quotes."""
    if line.lstrip().startswith("#"):
        return ""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#":
            return line[:index]
    return line


def parse_space_text(text: str, source: str) -> SearchSpace:
    space = SearchSpace(source=source)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = strip_comment(raw).strip()
        if not line:
            continue
        where = f"{source}:{number}"
        tokens = line.split()
        if len(tokens) < 3:
            raise SpaceError(f"{where}: expected 'name distribution value', got {line!r}")
        name, kind, value = tokens[0], tokens[1], "".join(tokens[2:])
        if not name.isidentifier():
            raise SpaceError(f"{where}: parameter name {name!r} is not a valid config key")
        if kind not in DISTRIBUTIONS:
            raise SpaceError(
                f"{where}: unknown distribution {kind!r}{closest(kind, DISTRIBUTIONS)}; "
                f"expected one of {', '.join(DISTRIBUTIONS)}"
            )
        if name in space.parameters:
            raise SpaceError(f"{where}: duplicate parameter {name!r} (first defined on line "
                             f"{space.parameters[name].line})")
        space.parameters[name] = Parameter(name, _parse_distribution(kind, value, where), number)
    if not space.parameters:
        raise SpaceError(f"{source}: no parameters; expected lines like 'learning_rate choice [0.01, 0.001]'")
    return space


def parse_space_file(path: str | Path) -> SearchSpace:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpaceError(f"{path}: params file not found") from None
    except (UnicodeDecodeError, IsADirectoryError):
        raise SpaceError(f"{path}: not a readable text file") from None
    return parse_space_text(text, str(path))


def _parse_distribution(kind: str, value: str, where: str) -> Distribution:
    if kind == "choice":
        try:
            options = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise SpaceError(f"{where}: choice expects a list of literals like [0.01, 0.001], got {value!r}") from None
        if not isinstance(options, (list, tuple)):
            raise SpaceError(f"{where}: choice expects a list like [0.01, 0.001], got {value!r}")
        if not options:
            raise SpaceError(f"{where}: choice list is empty")
        encoded = [encode_choice(v) for v in options]
        if len(set(map(repr, encoded))) != len(encoded):
            raise SpaceError(f"{where}: choice list has repeated values: {value}")
        return Choice(tuple(options))
    numbers = _numbers(value, where, kind, 3 if kind == "quniform" else 2)
    low, high = numbers[0], numbers[1]
    if low >= high:
        raise SpaceError(f"{where}: {kind} needs low < high, got low={low:g}, high={high:g}")
    if kind == "uniform":
        return Uniform(low, high)
    if kind == "loguniform":
        if high > 700:
            raise SpaceError(f"{where}: loguniform bounds are natural-log exponents; exp({high:g}) overflows")
        return LogUniform(low, high)
    q = numbers[2]
    if q <= 0:
        raise SpaceError(f"{where}: quniform needs q > 0, got q={q:g}")
    return QUniform(low, high, q)


def _numbers(value: str, where: str, kind: str, count: int) -> list[float]:
    parts = value.split(",")
    shape = "low,high,q" if count == 3 else "low,high"
    if len(parts) != count:
        raise SpaceError(f"{where}: {kind} expects {shape}, got {value!r}")
    try:
        numbers = [float(ast.literal_eval(p)) for p in parts]
    except (ValueError, SyntaxError, TypeError):
        raise SpaceError(f"{where}: {kind} expects numbers {shape}, got {value!r}") from None
    if not all(math.isfinite(n) for n in numbers):
        raise SpaceError(f"{where}: {kind} bounds must be finite, got {value!r}")
    return numbers
