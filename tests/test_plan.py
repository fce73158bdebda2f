"""The study plan: measured epoch costs (cached), the estimate, the long-study note, and --dry-run."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_hyper
from tuner import evidence
from tuner.plan import BUSY_SHARE, OthersLoad, StudyEstimate, describe, estimate, min_window_seconds, read_cached_cost
from tuner.reporting.progress import format_duration
from tuner.request import cpu_count, resolve


def _request(workdir: Path, *extra: str):
    (workdir / "h.test").write_text("learning_rate choice [0.01, 0.005, 0.001]\nhidden_size choice [8, 16]\n")
    return resolve(["--model", "GRU4Rec", "--dataset", "toy", f"--data_path={workdir / 'data'}", "--embedding_size=8",
                    "--params_file", str(workdir / "h.test"), "--no-mlflow", *extra])


def test_the_estimate_measures_each_shape_once_and_caches_it(workdir: Path, tmp_path: Path) -> None:
    request = _request(workdir, "--epochs=20")
    first = estimate(request)
    if first.measured_busy:  # the test below covers that case
        pytest.skip(f"other processes kept {first.busy_cores:.1f} cores busy: a busy machine's cost is not cached")
    costs = sorted((Path(os.environ["SEQTUNE_CACHE"]) / "costs").glob("GRU4Rec-*.json"))
    assert len(costs) == 2  # hidden_size 8 and 16; the learning rate changes no cost
    # the table's trials to RecBole's early stop, at most 20 epochs: 4 stop at 15 epochs, 2 at 19
    assert first.trials == 6 and first.epochs_per_trial == pytest.approx(19.27, abs=0.01) and first.epoch_seconds > 0
    assert first.study_seconds == 6 * first.trial_seconds  # one worker
    stamps = [p.stat().st_mtime_ns for p in costs]
    again = estimate(request)
    assert again == first and [p.stat().st_mtime_ns for p in costs] == stamps  # read back, not re-measured


def test_a_cost_cache_file_that_cannot_be_read_is_measured_again(tmp_path: Path) -> None:
    """A half-written file (from before the cache was written atomically) or another version's file
    is not a traceback in every later plan: it is measured again, and the new file replaces it."""
    from models.trainer import EpochCost

    path = tmp_path / "GRU4Rec-x.json"
    for text in ['{"key": {}, "cost": {"train_samples": 10', '{"cost": {"samples": 10}}', "[]"]:
        path.write_text(text)
        assert read_cached_cost(path) is None, text
    cost = EpochCost(train_samples=10, seconds_per_sample=0.5, eval_seconds=2.0, threads=2)
    path.write_text(json.dumps({"key": {}, "cost": cost.__dict__, "others_cores": 0.0}))
    assert read_cached_cost(path) == cost
    assert read_cached_cost(tmp_path / "missing.json") is None


@contextlib.contextmanager
def busy_machine() -> Iterator[None]:
    """Busy-loop processes, two per core, that keep the machine busy while the block runs: started through
    a shell that exits, so that they are not this process's descendants (a command's own processes, such as
    the workers' fork server, do not count as others)."""
    hog = f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"
    start = f"for i in $(seq {2 * cpu_count()}); do {hog}; done"
    hogs = [int(pid) for pid in subprocess.run(["sh", "-c", start], capture_output=True, text=True,
                                               check=True).stdout.split()]
    try:
        time.sleep(0.5)
        yield
    finally:
        for pid in hogs:
            os.kill(pid, signal.SIGKILL)


def test_a_cost_measured_while_other_processes_keep_the_cores_busy_is_said_and_not_cached(workdir: Path) -> None:
    """A plan measured on a busy machine would stand, cached, for every later plan there (found with a
    dry run beside a training job: an epoch of ~46 min where it takes ~1 min)."""
    with busy_machine():
        planned = estimate(_request(workdir, "--epochs=20"))
    assert planned.measured_busy and planned.epoch_seconds > 0
    assert not list((Path(os.environ["SEQTUNE_CACHE"]) / "costs").glob("GRU4Rec-*.json"))
    assert any(line.startswith("note: other processes kept ~") for line in describe(_request(workdir), planned))


def test_a_block_too_short_to_see_a_busy_machine_is_watched_until_it_can() -> None:
    """The toy's second shape measured in 40 ms, too short for others' CPU time to rise above /proc's tick
    rounding: it read "quiet" on a busy machine and was cached (a CI failure of the test above)."""
    with busy_machine(), OthersLoad() as load:
        pass
    assert load.cores is not None and load.cores > BUSY_SHARE * cpu_count()
    tic = time.monotonic()
    with OthersLoad() as quiet:
        pass
    assert quiet.cores is not None and time.monotonic() - tic < 2 * min_window_seconds() + 0.5  # watched, briefly


def test_others_load_leaves_out_this_process_and_its_children() -> None:
    with OthersLoad() as load:
        spin = "import time\nt = time.time()\nwhile time.time() - t < 1: pass"
        child = subprocess.Popen([sys.executable, "-c", spin])
        tic = time.time()
        while time.time() - tic < 1:
            pass
        child.wait()
    assert load.cores is not None
    with OthersLoad() as idle:
        time.sleep(1)
    assert idle.cores is not None
    # whatever else runs on the machine is in both; our own two cores' worth of spinning is in neither
    assert load.cores < idle.cores + 0.5 * cpu_count()


def test_a_resumed_study_plans_only_the_trials_it_has_left(workdir: Path) -> None:
    import optuna

    db = workdir / "s.db"
    request = _request(workdir, "--epochs=5", f"--storage=sqlite:///{db}", "--study-name", "resumed")
    fresh = estimate(request)
    assert fresh.finished == 0 and not db.exists()  # planning a new study creates no storage
    study = optuna.create_study(study_name="resumed", storage=f"sqlite:///{db}", direction="maximize")
    for state, value in ((optuna.trial.TrialState.COMPLETE, 0.1), (optuna.trial.TrialState.PRUNED, None),
                         (optuna.trial.TrialState.FAIL, None), (optuna.trial.TrialState.WAITING, None)):
        study.add_trial(optuna.trial.create_trial(state=state, value=value))
    resumed = estimate(request)
    assert resumed.finished == 2 and resumed.to_run == 4  # a failed or queued trial runs (again)
    if fresh.measured_busy or resumed.measured_busy:  # then each plan measures anew
        pytest.skip("other processes kept the cores busy: the two plans' costs were measured apart")
    assert resumed.study_seconds == 4 * resumed.trial_seconds == pytest.approx(fresh.study_seconds * 4 / 6)
    assert "6 trials (grid, 2 finished before: 4 to run)" in describe(request, resumed)[0]


def test_a_long_study_says_so_and_names_what_fits(workdir: Path) -> None:
    request = _request(workdir)
    long = StudyEstimate(trials=6, workers=1, threads=2, epoch_seconds=100.0, epochs_per_trial=35)
    lines = describe(request, long)
    assert lines[0].startswith("plan: 6 trials (grid) on 1 worker(s) x 2 thread(s)") and "~5.8 h" in lines[0]
    assert "over 2 h" in lines[1]
    assert "2 of the 6 points: --timeout 7200 --grid-order random" in lines[2]  # 7200 s / 3500 s per trial
    assert any(line.startswith("  - --workers 2: ~") for line in lines)
    pruner = evidence.BUDGET_GRID_PRUNER
    budget = next(line for line in lines if line.startswith(f"  - --budget 2h: {pruner} pruning"))
    share = evidence.PRUNED_EPOCH_FRACTION[pruner]  # the default --epochs (300) is past the table's trials
    pruned = replace(long, epochs_per_trial=long.epochs_per_trial * share)
    assert f"all of it with {pruner}: ~{format_duration(pruned.study_seconds)}" in budget
    sampled = describe(_request(workdir, "--algo", "tpe", "--n-trials", "6"), long)
    assert "  - 2 of the 6 trials: --n-trials 2 or --timeout 7200 (the same command with more later continues the " \
           "tpe search)" in sampled and not any("grid" in line for line in sampled)  # no grid to sample
    short = StudyEstimate(trials=6, workers=1, threads=2, epoch_seconds=1.0, epochs_per_trial=35)
    assert len(describe(request, short)) == 1
    assert [format_duration(s) for s in (30, 600, 9000)] == ["30 s", "10 min", "2.5 h"]


def test_a_pruned_study_is_planned_at_the_tables_share_of_epochs(workdir: Path) -> None:
    full = estimate(_request(workdir, "--epochs=50"))
    halving = estimate(_request(workdir, "--epochs=50", "--pruner", "halving"))
    assert full.epochs_per_trial == pytest.approx(31.3)  # the table's mean trial: its own stop and cap
    share = evidence.PRUNED_EPOCH_FRACTION["halving"]
    assert halving.epochs_per_trial == pytest.approx(31.3 * share)
    capped = estimate(_request(workdir, "--epochs=3", "--pruner", "halving"))
    assert capped.epochs_per_trial == 3  # a cap short of the table's trials: the pruner's share is not assumed


def test_a_trial_is_planned_under_the_studys_own_early_stop_and_cap(workdir: Path) -> None:
    def epochs(*flags: str) -> float:
        return estimate(_request(workdir, *flags)).epochs_per_trial

    # the table's peaks (epochs 4 to 48), each followed by stopping_step + 1 epochs without improvement
    assert epochs("--epochs=50", "--stopping_step=3") == pytest.approx(24.97, abs=0.01)
    assert epochs("--epochs=300", "--stopping_step=20") == pytest.approx(42.03, abs=0.01)  # past the cap of 50
    assert epochs("--epochs=40", "--stopping_step=300") == 40  # no early stop: every trial trains to the cap
    assert epochs("--epochs=40", "--eval_step=0") == 40  # never validated: never stopped
    assert epochs("--epochs=300", "--eval_step=2") == pytest.approx(evidence.trial_epochs(10, 300, 2))
    assert evidence.trial_epochs(10, 300, 2) > evidence.trial_epochs(10, 300)  # patience counts evaluations


def test_the_evidence_constants_are_the_replays() -> None:
    """tuner/evidence.py holds what bench/replay.py run last wrote from the learning-curve table."""
    import json

    written = json.loads((ROOT / "bench" / "results" / "replay.json").read_text())["defaults"]
    assert written["expected_epochs"] == evidence.EXPECTED_EPOCHS == round(evidence.trial_epochs(10, 50))
    # the peaks are the table's own (replay.py writes them too since they came in; read from the table here)
    table = json.loads((ROOT / "bench" / "results" / "learning_curves_gru4rec.json").read_text())
    peaks = [1 + [epoch["valid_result"]["mrr@10"] for epoch in trial["curve"]].index(
        trial["best_valid_result"]["mrr@10"]) for trial in table["trials"]]
    assert tuple(sorted(peaks)) == evidence.TABLE_PEAK_EPOCHS
    assert "--stopping_step=10" in table["fixed"] and "--epochs=50" in table["fixed"]
    assert written["pruned_epoch_fraction"] == evidence.PRUNED_EPOCH_FRACTION
    assert written["budget_grid_pruner"] == evidence.BUDGET_GRID_PRUNER


def test_dry_run_prints_the_plan_and_writes_nothing(workdir: Path) -> None:
    (workdir / "h.test").write_text("learning_rate choice [0.01, 0.001]\n")
    before = set(workdir.iterdir())
    proc = run_hyper(workdir, "--params_file", "h.test", "--epochs=3", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "plan: 2 trials (grid) on 1 worker(s)" in proc.stderr and "the study ~" in proc.stderr
    assert "~3 epochs per trial" in proc.stderr
    assert set(workdir.iterdir()) == before  # no storage, no tracking store, no result file: nothing ran


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_lines_use_the_plan_until_this_run_finishes_a_trial() -> None:
    from tuner.reporting.progress import ProgressDisplay, StudyProgress

    out, clock = io.StringIO(), _Clock()  # not a terminal: one plain line per change
    display = ProgressDisplay("MRR@10", stream=out, planned_seconds_per_trial=600.0, clock=clock)
    display(StudyProgress(total=4, done=0, pruned=0, failed=0, running=2, best=None))
    clock.now += 5
    display(StudyProgress(total=4, done=0, pruned=0, failed=0, running=2, best=None))  # no change: no line
    clock.now += 295
    display(StudyProgress(total=4, done=1, pruned=1, failed=0, running=2, best=0.25))
    display.close()
    lines = out.getvalue().splitlines()
    assert lines == ["[0/4 trials: 2 running, 0 pruned, 0 failed | 0 s elapsed, eta ~40 min (plan)]",
                     "[1/4 trials: 2 running, 1 pruned, 0 failed | best MRR@10 0.2500 | 5 min elapsed, eta 15 min]"]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()  # a log file gets plain lines
    clock = _Clock()  # slower than planned: the plan's ETA is never "0 s" while trials are left
    late = ProgressDisplay("MRR@10", stream=out, planned_seconds_per_trial=600.0, clock=clock)
    clock.now += 2401
    assert late.line(StudyProgress(total=4, done=0, pruned=0, failed=0, running=2, best=None)).endswith(
        "40 min elapsed, eta unknown (past the plan's 40 min)]")


def test_progress_updates_one_line_in_place_on_a_terminal() -> None:
    from tuner.reporting.progress import ProgressDisplay, StudyProgress

    out, clock = _Terminal(), _Clock()
    display = ProgressDisplay("MRR@10", stream=out, planned_seconds_per_trial=None, clock=clock)
    snap = StudyProgress(total=3, done=1, pruned=0, failed=1, running=1, best=None)  # resumed: 1 done before
    display(snap)
    clock.now += 1
    display(snap)  # the same state a second later: redrawn (elapsed moves)
    assert "\n" not in out.getvalue()
    frames = out.getvalue().split("\r")[1:]
    assert len(frames) == 2 and all(f.endswith("\x1b[K") for f in frames)
    assert frames[0].startswith("[1/3 trials: 1 running, 0 pruned, 1 failed | 0 s elapsed, eta unknown (no plan)]")
    assert "| 1 s elapsed" in frames[1]
    clock.now += 59
    display(StudyProgress(total=3, done=3, pruned=0, failed=1, running=0, best=0.5))
    display.close()
    assert out.getvalue().endswith("best MRR@10 0.5000 | 60 s elapsed, eta 0 s]\x1b[K\n")
    quiet = _Terminal()
    ProgressDisplay("MRR@10", quiet=True, stream=quiet)(snap)
    assert quiet.getvalue() == ""


def test_a_narrow_terminal_keeps_the_eta_and_the_budget_rather_than_cutting_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner.reporting.progress import ProgressDisplay, StudyProgress

    snap = StudyProgress(total=30, done=3, pruned=1, failed=0, running=2, best=0.0564)
    frames = {}
    for columns in (200, 100, 80, 40):
        monkeypatch.setenv("COLUMNS", str(columns))
        out, clock = _Terminal(), _Clock()
        display = ProgressDisplay("MRR@10", stream=out, planned_seconds_per_trial=600.0, clock=clock,
                                  time_limit=("budget", 1800.0))
        display(StudyProgress(total=30, done=0, pruned=0, failed=0, running=2, best=None))
        clock.now += 840
        display(snap)
        frames[columns] = out.getvalue().split("\r")[-1].removesuffix("\x1b[K")
        assert len(frames[columns]) < columns  # the cursor's column is left free: no wrap
    assert frames[200] == ("[3/30 trials: 2 running, 1 pruned, 0 failed | best MRR@10 0.0564 | 14 min elapsed, "
                           "eta 2.1 h | budget 16 min left]")
    assert frames[100] == "[3/30 trials | best MRR@10 0.0564 | 14 min elapsed, eta 2.1 h | budget 16 min left]"
    assert frames[80] == "[3/30 | best 0.0564 | 14 min, eta 2.1 h | budget 16 min]"
    assert frames[40] == frames[80][:39]  # narrower than the shortest form: cut, as before


def test_progress_counts_down_a_budget_or_timeout_beside_the_whole_studys_eta() -> None:
    from tuner.reporting.progress import ProgressDisplay, StudyProgress

    out, clock = io.StringIO(), _Clock()
    display = ProgressDisplay("MRR@10", stream=out, planned_seconds_per_trial=600.0, clock=clock,
                              time_limit=("budget", 1800.0))
    display(StudyProgress(total=90, done=0, pruned=0, failed=0, running=1, best=None))
    clock.now += 600
    display(StudyProgress(total=90, done=1, pruned=0, failed=0, running=1, best=0.25))
    clock.now += 1200
    display(StudyProgress(total=90, done=1, pruned=0, failed=0, running=1, best=0.25))  # spent: a new line
    display(StudyProgress(total=90, done=1, pruned=0, failed=0, running=1, best=0.25))  # no change: none
    lines = out.getvalue().splitlines()
    assert lines == [
        "[0/90 trials: 1 running, 0 pruned, 0 failed | 0 s elapsed, eta ~15.0 h (plan) | budget 30 min left]",
        "[1/90 trials: 1 running, 0 pruned, 0 failed | best MRR@10 0.2500 | 10 min elapsed, eta 14.8 h"
        " | budget 20 min left]",
        "[1/90 trials: 1 running, 0 pruned, 0 failed | best MRR@10 0.2500 | 30 min elapsed, eta 44.5 h"
        " | budget spent: running trials stop at their next epoch]"]
    out, clock = io.StringIO(), _Clock()
    display = ProgressDisplay("MRR@10", stream=out, clock=clock, time_limit=("timeout", 60.0))
    clock.now += 61
    display(StudyProgress(total=2, done=1, pruned=0, failed=0, running=1, best=0.5))  # resumed: 1 done before
    display(StudyProgress(total=2, done=2, pruned=0, failed=0, running=0, best=0.5))  # done: no limit shown
    assert out.getvalue().splitlines() == [
        "[1/2 trials: 1 running, 0 pruned, 0 failed | best MRR@10 0.5000 | 61 s elapsed, eta unknown (no plan)"
        " | timeout reached: no new trials start]",
        "[2/2 trials: 0 running, 0 pruned, 0 failed | best MRR@10 0.5000 | 61 s elapsed, eta 0 s]"]


def test_pretraining_epochs_per_cache_key_continue_from_the_longest_cached_run() -> None:
    from models.pretrain import epochs_to_pretrain

    assert epochs_to_pretrain([50, 100, 150], [], 50) == 150  # 100 continues from 50, 150 from 100
    assert epochs_to_pretrain([150, 50, 100], [], 50) == 150  # any order: the files every 50 epochs serve
    assert epochs_to_pretrain([50, 100, 150], [50], 50) == 100
    assert epochs_to_pretrain([30, 70], [], 50) == 70  # 70 continues from 30's file
    assert epochs_to_pretrain([100], [100], 50) == 0 and epochs_to_pretrain([0], [], 50) == 0


def test_the_plan_counts_s3recs_pretraining_once_per_cache_key(toys: Path) -> None:
    (toys / "h.test").write_text("pretrain_epochs choice [1, 2]\nlearning_rate choice [0.01, 0.001]\n")
    request = resolve(["--model", "S3Rec", "--dataset", "toys", f"--data_path={toys}", "--hidden_size=8",
                       "--n_layers=1", "--inner_size=16", "--MAX_ITEM_LIST_LENGTH=10", "--train_batch_size=64",
                       "--params_file", str(toys / "h.test"), "--no-mlflow", "--epochs=3"])
    planned = estimate(request)
    assert planned.pretrain is not None
    # the learning rate keys the cache: two pretrainings of 2 epochs (1 epoch is on the way to 2)
    assert (planned.pretrain.keys, planned.pretrain.epochs) == (2, 4) and planned.pretrain.seconds > 0
    assert planned.study_seconds == pytest.approx(4 * planned.trial_seconds + planned.pretrain.seconds)
    assert "2 distinct pretraining(s), 4 epochs" in describe(request, planned)[0]


def test_more_workers_than_cores_are_planned_as_sharing_them(workdir: Path) -> None:
    """Each worker's epoch is measured alone; 4x as many workers as cores run each epoch ~4x as long, and
    the plan said the study would be 4x faster than with one worker per core."""
    request = _request(workdir, "--epochs=20")
    crowded = estimate(request, workers=4 * cpu_count())
    assert crowded.threads == 1 and crowded.crowding == 4.0
    assert estimate(request, workers=cpu_count()).crowding == 1.0
    lines = describe(request, replace(crowded, epoch_seconds=1.0))
    assert any(line.startswith(f"note: {4 * cpu_count()} worker(s) x 1 thread(s) on {cpu_count()} cores share them: "
                               "each epoch takes ~4x as long") for line in lines), lines
