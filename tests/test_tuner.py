"""run_hyper.py end to end on a synthetic dataset: flags, results, failures, workers, resume."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, synthetic_interactions, write_atomic
from tuner.reporting import parse_recbole_output

INTER_HEADER = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    write_atomic(tmp_path / "data" / "toy" / "toy.inter", INTER_HEADER,
                 synthetic_interactions(n_users=40, n_items=50, per_user=(5, 30)))
    return tmp_path


def run_hyper(workdir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(ROOT / "run_hyper.py"), "--model", "GRU4Rec", "--dataset", "toy",
               f"--data_path={workdir / 'data'}", "--embedding_size=8", "--show_progress=false", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)


def study_rows(db: Path) -> list[tuple[int, str, dict[str, str]]]:
    """(trial number, state, params) straight from Optuna's tables."""
    with sqlite3.connect(db) as conn:
        trials = conn.execute("SELECT trial_id, number, state FROM trials").fetchall()
        params = conn.execute("SELECT trial_id, param_name, param_value FROM trial_params").fetchall()
    by_trial: dict[int, dict[str, str]] = {}
    for trial_id, name, value in params:
        by_trial.setdefault(trial_id, {})[name] = value
    return [(number, state, by_trial.get(trial_id, {})) for trial_id, number, state in trials]


def test_grid_with_two_workers_runs_every_point_once(workdir: Path) -> None:
    space = workdir / "h.test"
    space.write_text("learning_rate choice [0.01, 0.005, 0.001]\nhidden_size choice [8, 16]\n")
    proc = run_hyper(workdir, "--params_file", str(space), "--epochs=2", "--workers", "2",
                     "--storage", f"sqlite:///{workdir / 's.db'}", "--output_file", "out/hyper.result")
    assert proc.returncode == 0, proc.stderr
    rows = study_rows(workdir / "s.db")
    assert len(rows) == 6 and all(state == "COMPLETE" for _, state, _ in rows)
    assert len({tuple(sorted(p.items())) for _, _, p in rows}) == 6
    blocks = parse_recbole_output((workdir / "out" / "hyper.result").read_text())
    assert sorted((b[0]["hidden_size"], b[0]["learning_rate"]) for b in blocks) == sorted(
        (h, lr) for h in ("8", "16") for lr in ("0.01", "0.005", "0.001"))
    for _, valid, test in blocks:
        assert set(valid) == set(test) == {"recall@10", "mrr@10", "ndcg@10", "hit@10", "precision@10"}
    text = (workdir / "out" / "hyper.result").read_text()
    assert "best params:  {'hidden_size'" in text and "best result: \n{'model': 'GRU4Rec'" in text
    csv_lines = (workdir / "out" / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("trial,state,hidden_size,learning_rate,best_valid_score") and len(csv_lines) == 7
    best = (workdir / "out" / "best_config.yaml").read_text()
    assert "model: GRU4Rec" in best and "learning_rate:" in best
    assert "valid MRR@10" in proc.stdout  # the summary table


def test_random_grid_order_is_seeded_and_complete(workdir: Path) -> None:
    space = workdir / "h.test"
    space.write_text("learning_rate choice [0.01, 0.005]\nhidden_size choice [8, 16]\n")
    orders = []
    for seed in (2020, 2020, 7):
        db = workdir / f"s{len(orders)}.db"
        proc = run_hyper(workdir, "--params_file", str(space), "--epochs=1", "--grid-order", "random",
                         f"--sampler-seed={seed}", "--storage", f"sqlite:///{db}", "--no-mlflow", "--quiet")
        assert proc.returncode == 0, proc.stderr
        # Optuna stores a choice as its index
        orders.append([(int(p["learning_rate"]), int(p["hidden_size"])) for _, _, p in sorted(study_rows(db))])
    file_order = [(lr, h) for lr in (0, 1) for h in (0, 1)]
    assert orders[0] == orders[1] and sorted(orders[0]) == sorted(file_order)
    assert orders[0] != orders[2] or orders[0] != file_order  # a shuffle, not the file's order every time


def test_both_flag_forms_and_best_config_retrains(workdir: Path) -> None:
    space = workdir / "h.test"
    space.write_text("learning_rate choice [0.01]\n")
    eq = run_hyper(workdir, f"--params_file={space}", "--epochs=1", "--output_file=a.result",
                   f"--storage=sqlite:///{workdir / 'a.db'}", "--study-name=eq")
    spaced = run_hyper(workdir, "--params_file", str(space), "--epochs", "1", "--output_file", "b.result",
                       "--storage", f"sqlite:///{workdir / 'b.db'}", "--study-name", "spaced")
    assert eq.returncode == 0 and spaced.returncode == 0, eq.stderr + spaced.stderr
    assert parse_recbole_output((workdir / "a.result").read_text()) == parse_recbole_output(
        (workdir / "b.result").read_text())
    retrain = subprocess.run([sys.executable, "-m", "models.train", "--model", "GRU4Rec", "--dataset", "toy",
                              "--config_files", str(workdir / "best_config.yaml")],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert retrain.returncode == 0, retrain.stderr
    valid = parse_recbole_output((workdir / "b.result").read_text())[0][1]
    assert f"mrr@10 : {valid['mrr@10']}" in retrain.stdout  # same seed, same config: same result


def test_raising_trial_is_isolated(workdir: Path) -> None:
    space = workdir / "h.test"
    space.write_text("loss_type choice ['CE', 'XYZ']\nlearning_rate choice [0.01]\n")
    proc = run_hyper(workdir, "--params_file", str(space), "--epochs=1", f"--storage=sqlite:///{workdir / 's.db'}")
    assert proc.returncode == 0, proc.stderr
    states = sorted(state for _, state, _ in study_rows(workdir / "s.db"))
    assert states == ["COMPLETE", "FAIL"]
    csv_text = (workdir / "results.csv").read_text()
    assert "FAIL" in csv_text and "loss_type must be CE or BPR" in csv_text


def test_tpe_budget_and_pruning(workdir: Path) -> None:
    space = workdir / "h.test"
    space.write_text("learning_rate loguniform -7,-3\ndropout_prob uniform 0,0.5\n")
    proc = run_hyper(workdir, "--params_file", str(space), "--epochs=4", "--n-trials", "5", "--pruner", "median",
                     "--algo", "tpe", f"--storage=sqlite:///{workdir / 's.db'}", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    rows = study_rows(workdir / "s.db")
    assert len(rows) == 5 and {s for _, s, _ in rows} <= {"COMPLETE", "PRUNED"}
    for _, _, params in rows:
        assert 0.0 <= float(params["dropout_prob"]) <= 0.5


@pytest.mark.parametrize(
    ("space", "args", "fragment"),
    [
        ("learning_rate choise [0.1]", [], "h.test:1: unknown distribution 'choise' (did you mean 'choice'?)"),
        ("hiden_size choice [8]", [], "h.test:1: unknown parameter 'hiden_size' for model GRU4Rec"),
        ("learning_rate choice [0.1]", ["--learning_rate=0.2"], "'learning_rate' is searched here and fixed"),
        ("learning_rate choice [0.1, -1]", [], "h.test:1: learning_rate=-1: learning_rate must be > 0"),
        ("learning_rate uniform 0.1,0.2", ["--algo", "grid"], "--algo grid needs every parameter to be a choice"),
        ("learning_rate choice [0.1]", ["--lernin_rate=3"], "unknown config key 'lernin_rate'"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(workdir: Path, space: str, args, fragment) -> None:
    (workdir / "h.test").write_text(space + "\n")
    before = set(workdir.iterdir())
    proc = run_hyper(workdir, "--params_file", "h.test", *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert set(workdir.iterdir()) == before


def test_unknown_model_and_missing_params_file(workdir: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "run_hyper.py"), "--model", "GRU5Rec", "--params_file", "x"],
                          cwd=workdir, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown model 'GRU5Rec'" in proc.stderr
    proc = run_hyper(workdir, "--params_file", "missing.test")
    assert proc.returncode == 2 and "missing.test: params file not found" in proc.stderr


def test_resume_after_sigkill_loses_and_duplicates_nothing(workdir: Path) -> None:
    space = workdir / "h.test"
    space.write_text("learning_rate choice [0.01, 0.005, 0.002, 0.001]\nhidden_size choice [8]\n")
    db = workdir / "s.db"
    args = ["--params_file", str(space), "--epochs=40", "--stopping_step=100", f"--storage=sqlite:///{db}",
            "--study-name", "killme"]
    command = [sys.executable, str(ROOT / "run_hyper.py"), "--model", "GRU4Rec", "--dataset", "toy",
               f"--data_path={workdir / 'data'}", "--embedding_size=8", "--show_progress=false", *args]
    victim = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it while a trial runs, after at least one finished
        time.sleep(0.2)
        if db.exists():
            try:
                states = [s for _, s, _ in study_rows(db)]
            except sqlite3.OperationalError:
                continue
            if "COMPLETE" in states and "RUNNING" in states:
                break
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    states = [s for _, s, _ in study_rows(db)]
    assert "RUNNING" in states and states.count("COMPLETE") >= 1
    finished_before = {tuple(sorted(p.items())) for _, s, p in study_rows(db) if s == "COMPLETE"}

    proc = run_hyper(workdir, *args)
    assert proc.returncode == 0, proc.stderr
    rows = study_rows(db)
    complete = [tuple(sorted(p.items())) for _, s, p in rows if s == "COMPLETE"]
    assert len(complete) == 4 and len(set(complete)) == 4  # every point once, none twice
    assert finished_before <= set(complete)  # finished trials stayed
    assert [s for _, s, _ in rows].count("FAIL") == 1  # the killed trial, retried
    assert "RUNNING" not in [s for _, s, _ in rows]
