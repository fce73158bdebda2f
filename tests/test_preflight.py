"""run_hyper.py's pre-flight: every value a model's typed config rejects is caught before anything runs,
as one line naming file:line, the key, the bad value and what is allowed (in process: no trial starts)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from models.config import config_fields
from models.registry import available_models
from tuner.request import resolve
from tuner.space import SpaceError


def _literal(value: object) -> str | None:
    """The hyper.test spelling of a value (None where the grammar has none, e.g. nan)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return repr(value)


@pytest.mark.parametrize("model", available_models())
def test_every_declared_range_is_checked_before_the_study(model: str, tmp_path: Path) -> None:
    space = tmp_path / "h.test"
    checked = 0
    for spec in config_fields(model):
        for bad in spec.invalid_examples():
            literal = _literal(bad)
            if literal is None:
                continue
            space.write_text(f"# {spec.name}: {spec.describe()}\n{spec.name} choice [{literal}]\n")
            with pytest.raises(SpaceError) as caught:
                resolve(["--model", model, "--params_file", str(space), "--no-mlflow"])
            message = str(caught.value)
            assert message.startswith(f"{space}:2: {spec.name}={bad!r}: "), message
            assert spec.describe() in message and "\n" not in message
            checked += 1
    assert checked >= 20  # every model declares many ranges


def test_a_continuous_range_is_checked_at_its_bounds_and_inside(tmp_path: Path) -> None:
    space = tmp_path / "h.test"
    for line, bad in [("dropout_prob uniform 0.2,1.0", "dropout_prob=1.0 (from uniform 0.2,1.0)"),
                      ("learning_rate uniform -0.1,0.1", "learning_rate=-0.1 (from uniform -0.1,0.1)"),
                      ("hidden_size quniform 16,64,8.5", "hidden_size=25.5 (from quniform 16.0,64.0,8.5)"),
                      ("num_layers uniform 1,3", "num_layers=1.74 (from uniform 1.0,3.0)")]:
        space.write_text(line + "\n")
        with pytest.raises(SpaceError, match=r"h\.test:1: " + bad.replace("(", r"\(").replace(")", r"\)")):
            resolve(["--model", "GRU4Rec", "--params_file", str(space), "--no-mlflow"])
    space.write_text("dropout_prob uniform 0.0,0.5\nhidden_size quniform 16,64,16\nlearning_rate loguniform -8,-4\n")
    request = resolve(["--model", "GRU4Rec", "--params_file", str(space), "--no-mlflow"])
    assert request.algo == "tpe" and set(request.space.parameters) == {"dropout_prob", "hidden_size", "learning_rate"}


@pytest.mark.parametrize(("row", "message"), [
    ("u1\ti2\t1\tabc", "toy.inter:4: field 'timestamp' expects a float, got 'abc'"),
    ("u1\ti2\t1\t7\textra", "toy.inter:4: expected 4 TAB-separated fields, found 5"),
])
def test_malformed_data_stops_the_study_before_anything_is_written(workdir: Path, row: str, message: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The data files are parsed before the study starts: one line naming file:line, exit 2, no storage,
    no result file (not a study of failed trials)."""
    from tests.conftest import hyper_command, hyper_in_process

    inter = workdir / "data" / "toy" / "toy.inter"
    lines = inter.read_text().splitlines()
    inter.write_text("\n".join([*lines[:3], row, *lines[3:]]) + "\n")
    (workdir / "h.test").write_text("learning_rate choice [0.01, 0.001]\n")
    before = set(workdir.iterdir())
    code, stderr = hyper_in_process(hyper_command(workdir, "--params_file", "h.test", "--no-mlflow",
                                                  f"--storage=sqlite:///{workdir / 's.db'}"), workdir, capsys)
    assert code == 2, stderr
    assert stderr.strip().splitlines() == [f"error: {workdir / 'data' / 'toy' / message}"]
    assert set(workdir.iterdir()) == before
