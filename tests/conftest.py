from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def write_atomic(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def synthetic_interactions(n_users: int = 30, n_items: int = 40, per_user: tuple[int, int] = (3, 25), seed: int = 0):
    """Rows of (user token, item token, rating, timestamp) with some repeated timestamps."""
    rng = random.Random(seed)
    rows = []
    for u in range(n_users):
        t = rng.randint(1_000, 5_000)
        for _ in range(rng.randint(*per_user)):
            t += rng.choice([0, 1, 5, 60])  # 0 gives equal timestamps: file order must decide
            rows.append([f"u{u}", f"i{rng.randint(0, n_items - 1)}", rng.randint(1, 5), t])
    rng.shuffle(rows)
    return rows


@pytest.fixture
def synthetic_dir(tmp_path: Path) -> Path:
    """A small dataset 'toy' in RecBole atomic format."""
    directory = tmp_path / "toy"
    write_atomic(
        directory / "toy.inter",
        ["user_id:token", "item_id:token", "rating:float", "timestamp:float"],
        synthetic_interactions(),
    )
    return tmp_path


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tensor caches go to a temp dir. Shared across tests: the fetched ml-100k files, and MLflow's
    migrated empty store (``prepare_sqlite_store``'s template, made by the first test that tracks: the
    migration chain takes seconds in every test that tracks otherwise; test_tracking builds one afresh)."""
    shared = os.environ.get("SEQTUNE_TEST_DATA_CACHE", str(Path.home() / ".cache" / "seqtune"))
    cache = tmp_path_factory.mktemp("cache")
    (cache / "datasets").symlink_to(Path(shared) / "datasets", target_is_directory=True) if (
        Path(shared) / "datasets"
    ).exists() else None
    mlflow_schema = tmp_path_factory.getbasetemp() / "mlflow-schema"
    mlflow_schema.mkdir(exist_ok=True)
    (cache / "mlflow").symlink_to(mlflow_schema, target_is_directory=True)
    monkeypatch.setenv("SEQTUNE_CACHE", str(cache))
    from models.data import sequential

    monkeypatch.setattr(sequential, "MEMORY", {})


@pytest.fixture(autouse=True)
def torch_threads() -> Iterator[None]:
    """torch's thread count as it was before each test: a config with ``threads: 1`` trained in this
    process (test_fit_state) left every later test single-threaded (test_trainer's ml-100k epoch took
    44 s instead of 23 s)."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# -- run_hyper.py end to end on a synthetic dataset (test_tuner, test_tracking, test_ray, test_ui) -----

INTER_HEADER = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]


def with_toy_data(directory: Path) -> Path:
    """``directory`` with a small dataset 'toy' under data/ (pass --data_path=directory/data)."""
    write_atomic(directory / "data" / "toy" / "toy.inter", INTER_HEADER,
                 synthetic_interactions(n_users=40, n_items=50, per_user=(5, 30)))
    return directory


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A fresh directory with the toy dataset under data/."""
    return with_toy_data(tmp_path)


def hyper_command(workdir: Path, *args: str, model: str = "GRU4Rec") -> list[str]:
    import sys

    return [sys.executable, str(ROOT / "run_hyper.py"), "--model", model, "--dataset", "toy",
            f"--data_path={workdir / 'data'}", "--embedding_size=8", "--show_progress=false", *args]


def hyper_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def run_hyper(workdir: Path, *args: str, timeout: float = 600, cwd: Path | None = None):
    """run_hyper.py on the toy dataset (GRU4Rec, embedding 8), from ``cwd`` (default: workdir)."""
    import subprocess

    return subprocess.run(hyper_command(workdir, *args), cwd=cwd or workdir, capture_output=True, text=True,
                          timeout=timeout, env=hyper_env())


def study_rows(db: Path) -> list[tuple[int, str, dict[str, str]]]:
    """(trial number, state, params) straight from Optuna's tables."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        trials = conn.execute("SELECT trial_id, number, state FROM trials").fetchall()
        params = conn.execute("SELECT trial_id, param_name, param_value FROM trial_params").fetchall()
    by_trial: dict[int, dict[str, str]] = {}
    for trial_id, name, value in params:
        by_trial.setdefault(trial_id, {})[name] = value
    return [(number, state, by_trial.get(trial_id, {})) for trial_id, number, state in trials]


def hyper_in_process(command: list[str], workdir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``command`` (``[python, run_hyper.py, *args]``) through run_hyper.py's entry (``run_cli(main)``) in
    this process, from ``workdir``: the exit status and stderr. For inputs rejected before anything
    trains, where a subprocess would only add its interpreter's start-up; tests that train run it."""
    import signal
    import sys

    from models.cli import run_cli
    from tuner.cli import main

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        patch.setattr(sys, "argv", command[1:])
        handler = signal.getsignal(signal.SIGTERM)  # main() installs its own, as the command does
        try:
            with pytest.raises(SystemExit) as exit_status:
                run_cli(main)
        finally:
            signal.signal(signal.SIGTERM, handler)
    return int(exit_status.value.code or 0), capsys.readouterr().err


# -- S3Rec's data: interactions and an .item file of attributes (test_s3rec, test_plan) ---------------

S3REC_ITEM_HEADER = ["item_id:token", "release_year:token", "class:token_seq", "genre:token"]
GENRES = ["Drama", "Comedy", "Action", "Horror", "Romance", "Noir"]


@pytest.fixture
def toys(tmp_path: Path) -> Path:
    """'toys': 25 users over items i0..i29. ``.item`` lacks i0 (its interactions are dropped, as RecBole),
    lists a duplicate row for i3 (the first counts) and an item 'extra' without interactions."""
    d = tmp_path / "toys"
    write_atomic(d / "toys.inter", INTER_HEADER, synthetic_interactions(n_users=25, n_items=30, per_user=(3, 14)))
    rng = random.Random(1)
    rows = []
    for k in range(1, 30):
        classes = rng.sample(GENRES, rng.randint(1, 3))
        rows.append([f"i{k}", 1990 + k, " ".join(classes), "" if k == 5 else classes[0]])
    rows.insert(5, ["i3", 2000, "Western", "Western"])  # duplicate id: ignored
    rows.append(["extra", 1999, "Musical Drama", "Musical"])
    write_atomic(d / "toys.item", S3REC_ITEM_HEADER, rows)
    return tmp_path
