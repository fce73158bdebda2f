"""The study plan: measured epoch costs (cached), the estimate, the long-study note, and --dry-run."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_hyper
from tuner.plan import StudyEstimate, describe, estimate, format_duration
from tuner.request import resolve


def _request(workdir: Path, *extra: str):
    (workdir / "h.test").write_text("learning_rate choice [0.01, 0.005, 0.001]\nhidden_size choice [8, 16]\n")
    return resolve(["--model", "GRU4Rec", "--dataset", "toy", f"--data_path={workdir / 'data'}", "--embedding_size=8",
                    "--params_file", str(workdir / "h.test"), "--no-mlflow", *extra])


def test_the_estimate_measures_each_shape_once_and_caches_it(workdir: Path, tmp_path: Path) -> None:
    import os

    request = _request(workdir, "--epochs=20")
    first = estimate(request)
    costs = sorted((Path(os.environ["SEQTUNE_CACHE"]) / "costs").glob("GRU4Rec-*.json"))
    assert len(costs) == 2  # hidden_size 8 and 16; the learning rate changes no cost
    assert first.trials == 6 and first.epochs_per_trial == 20 and first.epoch_seconds > 0
    assert first.study_seconds == 6 * first.trial_seconds  # one worker
    stamps = [p.stat().st_mtime_ns for p in costs]
    again = estimate(request)
    assert again == first and [p.stat().st_mtime_ns for p in costs] == stamps  # read back, not re-measured


def test_a_long_study_says_so_and_names_what_fits(workdir: Path) -> None:
    request = _request(workdir)
    long = StudyEstimate(trials=6, workers=1, threads=2, epoch_seconds=100.0, epochs_per_trial=35)
    lines = describe(request, long)
    assert lines[0].startswith("plan: 6 trials (grid) on 1 worker(s) x 2 thread(s)") and "~5.8 h" in lines[0]
    assert "over 2 h" in lines[1]
    assert "2 of the 6 points: --timeout 7200 --grid-order random" in lines[2]  # 7200 s / 3500 s per trial
    assert any(line.startswith("  - --workers 2: ~") for line in lines)
    assert any("--pruner median" in line for line in lines)
    short = StudyEstimate(trials=6, workers=1, threads=2, epoch_seconds=1.0, epochs_per_trial=35)
    assert len(describe(request, short)) == 1
    assert [format_duration(s) for s in (30, 600, 9000)] == ["30 s", "10 min", "2.5 h"]


def test_dry_run_prints_the_plan_and_writes_nothing(workdir: Path) -> None:
    (workdir / "h.test").write_text("learning_rate choice [0.01, 0.001]\n")
    before = set(workdir.iterdir())
    proc = run_hyper(workdir, "--params_file", "h.test", "--epochs=3", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "plan: 2 trials (grid) on 1 worker(s)" in proc.stderr and "the study ~" in proc.stderr
    assert "~3 epochs per trial" in proc.stderr
    assert set(workdir.iterdir()) == before  # no storage, no tracking store, no result file: nothing ran


def test_progress_lines_use_the_plan_until_this_run_finishes_a_trial() -> None:
    import io

    from tuner.reporting.progress import ProgressDisplay, StudyProgress

    out = io.StringIO()  # not a terminal: one plain line per change
    display = ProgressDisplay("MRR@10", stream=out, planned_seconds_per_trial=10.0)
    display(StudyProgress(total=4, done=0, pruned=0, failed=0, running=2, best=None))
    display(StudyProgress(total=4, done=0, pruned=0, failed=0, running=2, best=None))  # no change: no line
    display(StudyProgress(total=4, done=1, pruned=0, failed=0, running=2, best=0.25))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[0/4 trials, 2 running, 0 pruned, 0 failed, eta ~") and lines[0].endswith("s (plan)]")
    assert "best MRR@10 0.2500, eta " in lines[1] and "nan" not in out.getvalue() and "(plan)" not in lines[1]
