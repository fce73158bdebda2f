"""Reader for RecBole's atomic files (``.inter``, ``.item``, ``.user``, ``.kg``, ``.link``, ...).

The first line is a header of ``name:type`` columns, rows are TAB-separated, and ``*_seq`` values
are separated by single spaces. Every failure names the file (and line or field) in one line.
"""

from __future__ import annotations

import csv
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.errors import DataError


class FieldType(enum.Enum):
    TOKEN = "token"
    TOKEN_SEQ = "token_seq"
    FLOAT = "float"
    FLOAT_SEQ = "float_seq"


@dataclass
class AtomicFile:
    path: Path
    types: dict[str, FieldType]  # loaded columns only, in file order
    frame: pd.DataFrame  # token -> str, float -> float64, *_seq -> list per row


def read_header(path: Path, separator: str = "\t") -> dict[str, FieldType]:
    try:
        with path.open(encoding="utf-8") as handle:
            header = handle.readline().rstrip("\r\n")
    except FileNotFoundError:
        raise DataError(f"{path}: atomic file not found") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}:1: not a UTF-8 text file") from None
    if not header:
        raise DataError(f"{path}:1: empty file; expected a header of name:type columns")
    types: dict[str, FieldType] = {}
    for column in header.split(separator):
        name, sep, kind = column.partition(":")
        if not sep or not name:
            raise DataError(f"{path}:1: header column {column!r} is not of the form name:type")
        try:
            types[name] = FieldType(kind)
        except ValueError:
            allowed = ", ".join(t.value for t in FieldType)
            raise DataError(f"{path}:1: field {name!r} has unknown type {kind!r}; expected one of {allowed}") from None
    return types


def read_atomic(
    path: str | Path,
    columns: Sequence[str] | None = None,
    separator: str = "\t",
    seq_separator: str = " ",
) -> AtomicFile:
    """Read the wanted ``columns`` (all when None) of one atomic file."""
    path = Path(path)
    types = read_header(path, separator)
    wanted = list(types) if columns is None else list(columns)
    missing = [c for c in wanted if c not in types]
    if missing:
        raise DataError(f"{path}:1: missing column(s) {', '.join(missing)}; the header has {', '.join(types)}")
    header_names = [f"{n}:{t.value}" for n, t in types.items()]
    usecols = [f"{n}:{types[n].value}" for n in wanted]
    try:
        frame = pd.read_csv(
            path,
            sep=separator,
            dtype=str,
            usecols=usecols,
            keep_default_na=False,
            quoting=csv.QUOTE_NONE,
            engine="c",
            encoding="utf-8",
        )
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: garbled rows ({str(exc).strip().splitlines()[-1]})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    _check_row_widths(path, len(header_names), separator)
    frame.columns = [c.split(":", 1)[0] for c in frame.columns]
    frame = frame[wanted]
    for name in wanted:
        kind = types[name]
        if kind is FieldType.FLOAT:
            frame[name] = _to_float(path, name, frame[name])
        elif kind is FieldType.TOKEN_SEQ:
            frame[name] = [[t for t in s.split(seq_separator) if t] for s in frame[name]]
        elif kind is FieldType.FLOAT_SEQ:
            frame[name] = [_float_seq(path, name, i, s, seq_separator) for i, s in enumerate(frame[name])]
    return AtomicFile(path=path, types={n: types[n] for n in wanted}, frame=frame)


def _check_row_widths(path: Path, expected: int, separator: str) -> None:
    """pandas pads short rows silently; RecBole's data would then be wrong: refuse them."""
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line_no == 1:
                continue
            line = line.rstrip("\r\n")
            if line and line.count(separator) + 1 != expected:
                raise DataError(
                    f"{path}:{line_no}: expected {expected} TAB-separated fields, found {line.count(separator) + 1}"
                )


def _to_float(path: Path, name: str, column: pd.Series) -> pd.Series:
    values = pd.to_numeric(column.replace("", np.nan), errors="coerce")
    bad = values.isna() & (column != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}:{row + 2}: field {name!r} expects a float, got {column.iloc[row]!r}")
    return values.astype(np.float64)


def _float_seq(path: Path, name: str, row: int, text: str, seq_separator: str) -> list[float]:
    try:
        return [float(t) for t in text.split(seq_separator) if t]
    except ValueError:
        raise DataError(f"{path}:{row + 2}: field {name!r} expects space-separated floats, got {text[:40]!r}") from None
