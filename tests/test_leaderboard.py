"""``--model A,B --budget``: a leaderboard across models, end to end on a small KG dataset, and its
bad input (one line, exit 2, nothing written)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, hyper_env, hyper_in_process, synthetic_interactions, write_atomic
from tuner.leaderboard import Entry, rank_entries, separation_note

INTER_HEADER = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]


@pytest.fixture
def kg_workdir(tmp_path: Path) -> Path:
    d = tmp_path / "data" / "toyk"
    write_atomic(d / "toyk.inter", INTER_HEADER, synthetic_interactions(n_users=25, n_items=20, per_user=(4, 15)))
    write_atomic(d / "toyk.link", ["item_id:token", "entity_id:token"], [[f"i{k}", f"e{k}"] for k in range(16)])
    rng = np.random.default_rng(0)
    triples = [[f"e{rng.integers(0, 24)}", f"r{rng.integers(0, 3)}", f"e{rng.integers(0, 24)}"] for _ in range(120)]
    triples += [[f"e{k}", "r0", f"e{k + 1}"] for k in range(16)]
    write_atomic(d / "toyk.kg", ["head_id:token", "relation_id:token", "tail_id:token"], triples)
    (tmp_path / "a.test").write_text("learning_rate choice [0.01, 0.002]\n")
    (tmp_path / "b.test").write_text("learning_rate choice [0.01, 0.002]\n")
    return tmp_path


def command(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "run_hyper.py"), "--dataset", "toyk", f"--data_path={workdir / 'data'}",
            "--embedding_size=8", "--show_progress=false", f"--storage=sqlite:///{workdir / 's.db'}", *args]


def run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(workdir, *args), cwd=workdir, capture_output=True, text=True, timeout=900,
                          env=hyper_env())


def test_leaderboard_tunes_each_model_and_ranks_them_over_seeds(kg_workdir: Path) -> None:
    proc = run(kg_workdir, "--model", "GRU4Rec,GRU4RecKG", "--params_file", "a.test,b.test", "--budget", "6m",
               "--epochs=3", "--seeds", "2", f"--mlflow-uri=sqlite:///{kg_workdir / 'm.db'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((kg_workdir / "leaderboard.csv").open()))
    assert [r["rank"] for r in rows] == ["1", "2"] and {r["model"] for r in rows} == {"GRU4Rec", "GRU4RecKG"}
    assert float(rows[0]["valid_mrr@10_mean"]) >= float(rows[1]["valid_mrr@10_mean"])
    for row in rows:
        assert row["seeds"] == "2" and row["trials"] == "2" and float(row["test_mrr@10_std"]) > 0  # a real spread
        seeds = list(csv.DictReader((kg_workdir / row["model"] / "seeds.csv").open()))
        assert len(seeds) == 2  # the best config only (--seeds-top 1), 2 seeds
    text = (kg_workdir / "leaderboard.md").read_text()
    assert "| 1 | " in text and "± " in text and "2 seeds" in text
    client = MlflowClient(f"sqlite:///{kg_workdir / 'm.db'}")
    experiment = client.get_experiment_by_name("leaderboard-toyk")
    parents = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" not in r.data.tags
               and ":seeds-" not in r.data.tags["study_name"]]
    assert sorted(r.data.tags["model"] for r in parents) == ["GRU4Rec", "GRU4RecKG"]
    assert len({r.data.tags["leaderboard"] for r in parents}) == 1
    assert all("seeds/top1/test_mrr_at_10_mean" in r.data.metrics for r in parents)


def test_leaderboard_dry_run_prints_every_plan_and_writes_nothing(kg_workdir: Path) -> None:
    before = set(kg_workdir.iterdir())
    proc = run(kg_workdir, "--model", "GRU4Rec,GRU4RecKG", "--params_file", "a.test,b.test", "--budget", "20m",
               "--epochs=3", "--dry-run", "--no-mlflow")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("plan: 2 trials") == 2
    assert "=== GRU4Rec:" in proc.stderr and "=== GRU4RecKG:" in proc.stderr
    assert set(kg_workdir.iterdir()) == before


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "GRU4Rec,NoSuchModel", "--budget", "5m"], "NoSuchModel"),
    (["--model", "GRU4Rec,KSR", "--params_file", "a.test", "--budget", "5m"], "one per model"),
    (["--model", "GRU4Rec,KSR", "--params_file", "a.test,missing.test", "--budget", "5m"],
     "missing.test: no search space for KSR"),
    (["--model", "GRU4Rec,KSR", "--params_file", "a.test,b.test"], "needs --budget"),
    (["--model", "GRU4Rec,GRU4Rec", "--params_file", "a.test,b.test", "--budget", "5m"], "twice"),
])
def test_bad_leaderboard_input_is_one_line(kg_workdir: Path, args: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    before = set(kg_workdir.iterdir())
    code, stderr = hyper_in_process(command(kg_workdir, *args), kg_workdir, capsys)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], stderr
    assert set(kg_workdir.iterdir()) == before  # nothing written


def test_a_budget_too_small_for_the_seed_runs_says_when_the_machine_was_busy(kg_workdir: Path) -> None:
    from dataclasses import replace

    from models.errors import SeqtuneError
    from tuner.leaderboard import epoch_cap
    from tuner.plan import StudyEstimate
    from tuner.request import cpu_count, resolve

    request = resolve(command(kg_workdir, "--model", "GRU4Rec", "--params_file", str(kg_workdir / "a.test"),
                              "--no-mlflow")[2:])
    slow = StudyEstimate(trials=2, workers=1, threads=2, epoch_seconds=400.0, epochs_per_trial=31)
    assert epoch_cap([request], [slow], 3600.0, 3) == 2  # 2 seed runs in half the share: 1800 s / 800 s
    with pytest.raises(SeqtuneError, match=r"too small: GRU4Rec's 2 seed runs of one epoch take ~13 min of its 10 "
                                           r"min$"):
        epoch_cap([request], [slow], 600.0, 3)
    busy = replace(slow, busy_cores=0.9 * cpu_count())  # measured while the machine was busy: it says so
    with pytest.raises(SeqtuneError, match=rf"of its 10 min \(other processes kept ~{0.9 * cpu_count():.1f} of the "
                                           rf"{cpu_count()} cores busy while the cost was measured: a quieter "
                                           r"machine may fit it\)$"):
        epoch_cap([request], [busy], 600.0, 3)


def _entry(model: str, valid: tuple[float, float] | None) -> Entry:
    scores = {} if valid is None else {"mrr@10": valid}
    return Entry(model, {}, scores, scores, seeds=3, trials=4, pruned=0, seconds=60.0)


def test_models_rank_by_valid_mean_and_overlapping_spreads_are_noted() -> None:
    a, b, c, d = (_entry("A", (0.050, 0.002)), _entry("B", (0.047, 0.002)), _entry("C", (0.040, 0.001)),
                  _entry("D", None))
    assert [e.model for e in rank_entries([d, c, a, b], "mrr@10", bigger=True)] == ["A", "B", "C", "D"]
    assert [e.model for e in rank_entries([d, c, a, b], "mrr@10", bigger=False)] == ["C", "B", "A", "D"]
    assert separation_note(a, b, "mrr@10", 1, "MRR@10") == (
        "valid MRR@10 mean ± std overlaps #1's: not separated at 3 seeds")  # 0.003 apart, spreads sum to 0.004
    assert separation_note(b, c, "mrr@10", 2, "MRR@10") == ""  # 0.007 apart, spreads sum to 0.003
    assert separation_note(c, d, "mrr@10", 3, "MRR@10") == ""  # D has no valid metric to compare
