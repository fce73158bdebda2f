from __future__ import annotations

from pathlib import Path

import pytest

from models.data.atomic import FieldType, read_atomic
from models.errors import DataError
from tests.conftest import write_atomic


def test_reads_every_field_type(tmp_path: Path) -> None:
    path = write_atomic(
        tmp_path / "d.item",
        ["item_id:token", "title:token_seq", "score:float", "vec:float_seq"],
        [["i1", "Toy Story", "3.5", "1 2.5 -3"], ["i2", "Heat", "", "0.25"]],
    )
    atomic = read_atomic(path)
    assert atomic.types == {
        "item_id": FieldType.TOKEN,
        "title": FieldType.TOKEN_SEQ,
        "score": FieldType.FLOAT,
        "vec": FieldType.FLOAT_SEQ,
    }
    frame = atomic.frame
    assert list(frame["item_id"]) == ["i1", "i2"]
    assert list(frame["title"]) == [["Toy", "Story"], ["Heat"]]
    assert frame["score"].iloc[0] == 3.5 and frame["score"].isna().iloc[1]
    assert list(frame["vec"]) == [[1.0, 2.5, -3.0], [0.25]]


def test_reads_selected_columns_only(tmp_path: Path) -> None:
    path = write_atomic(tmp_path / "d.inter", ["user_id:token", "item_id:token", "rating:float"], [["1", "2", "3"]])
    assert list(read_atomic(path, columns=["item_id"]).frame.columns) == ["item_id"]


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        (["user_id:token", "item_id:tokn"], [["1", "2"]], "field 'item_id' has unknown type 'tokn'"),
        (["user_id", "item_id:token"], [["1", "2"]], "header column 'user_id' is not of the form name:type"),
        (["user_id:token", "item_id:token"], [["1", "2"], ["3"]], "d.inter:3: expected 2 TAB-separated fields"),
        (["user_id:token", "t:float"], [["1", "2"], ["3", "abc"]], "d.inter:3: field 't' expects a float, got 'abc'"),
    ],
)
def test_bad_files_name_file_and_field(tmp_path: Path, header, rows, message) -> None:
    path = write_atomic(tmp_path / "d.inter", header, rows)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        read_atomic(path)
    assert "\n" not in str(info.value)


def test_missing_file_and_missing_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.inter: atomic file not found"):
        read_atomic(tmp_path / "nope.inter")
    path = write_atomic(tmp_path / "d.inter", ["user_id:token"], [["1"]])
    with pytest.raises(DataError, match=r"missing column\(s\) item_id"):
        read_atomic(path, columns=["user_id", "item_id"])
