"""Bad input on the command line: one clear line, exit status 2, no traceback."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_atomic


def run_train(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "models.train", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_model() -> None:
    assert_one_line_error(run_train("--model", "GRU5Rec"), "unknown model 'GRU5Rec'", "GRU4Rec")


def test_unknown_dataset() -> None:
    assert_one_line_error(run_train("--dataset", "ml-10k"), "unknown dataset 'ml-10k'", "ml-100k")


@pytest.mark.parametrize(("flag", "value", "fragment"), [
    ("--checkpoint", "/proc/seqtune/best.pth", "--checkpoint /proc/seqtune/best.pth: cannot write in /proc ("),
    ("--result_json", "out", "--result_json out: is a folder; expected a file name"),
    ("--resume_dir", "a-file", "--resume_dir a-file: is a file; expected a folder"),
])
def test_an_output_path_that_cannot_be_written_stops_before_training(tmp_path: Path, flag: str, value: str,
                                                                     fragment: str) -> None:
    """They trained to the end, then failed with a traceback."""
    (tmp_path / "out").mkdir()
    (tmp_path / "a-file").write_text("")
    before = set(tmp_path.rglob("*"))
    assert_one_line_error(run_train(flag, value, cwd=tmp_path), fragment)
    assert set(tmp_path.rglob("*")) == before


def test_unknown_key_both_flag_forms() -> None:
    assert_one_line_error(run_train("--learnin_rate=0.1"), "'learnin_rate'", "'learning_rate'")
    assert_one_line_error(run_train("--learnin_rate", "0.1"), "'learnin_rate'", "'learning_rate'")


def test_missing_config_file(tmp_path: Path) -> None:
    assert_one_line_error(run_train("--config_files", str(tmp_path / "x.yaml")), "x.yaml: config file not found")


@pytest.mark.parametrize(
    ("header", "rows", "fragment"),
    [
        (["user_id:token", "item_id:token", "timestamp:date"], [["a", "b", "1"]], "unknown type 'date'"),
        (["user_id:token", "item_id:token", "timestamp:float"], [["a", "b"]], "toy.inter:2: expected 3"),
        (["user_id:token", "item_id:token"], [["a", "b"]], "missing column(s) timestamp"),
    ],
)
def test_garbled_atomic_file(tmp_path: Path, header, rows, fragment) -> None:
    write_atomic(tmp_path / "toy" / "toy.inter", header, rows)
    assert_one_line_error(run_train("--dataset", "toy", f"--data_path={tmp_path}"), "toy.inter", fragment)


def test_missing_atomic_file(tmp_path: Path) -> None:
    assert_one_line_error(run_train("--dataset", "toy", f"--data_path={tmp_path}"), "no toy.inter")


def test_trains_synthetic_dataset_end_to_end(synthetic_dir: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "best.pth"
    proc = run_train("--dataset=toy", f"--data_path={synthetic_dir}", "--epochs=2", "--hidden_size=8",
                     "--embedding_size=4", "--checkpoint", str(ckpt))
    assert proc.returncode == 0, proc.stderr
    assert "best valid : recall@10 : " in proc.stdout and "test result: recall@10 : " in proc.stdout
    assert ckpt.is_file()


@pytest.mark.parametrize("module", ["models.train", "tuner.request"])
def test_every_flag_has_help_that_states_its_default_once(module: str) -> None:
    """`--help` reads as documentation: each flag explains itself, a default written in words is not
    followed by argparse's "(default: None)", and a real default is shown."""
    import importlib

    parser = importlib.import_module(module).build_parser()
    text = parser.format_help()
    assert "(default: None)" not in text
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{action.option_strings} has no help"
        shown = parser._get_formatter()._expand_help(action)
        assert shown.lower().count("default") <= 1, shown
        if action.default not in (None, argparse.SUPPRESS):
            assert "default" in shown, f"{action.option_strings}: default {action.default!r} not shown"
