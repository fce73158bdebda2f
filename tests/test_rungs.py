"""--pruner sync-halving: every point's first rung before any goes on; the best third of each rung continue
their saved fit, with the numbers of one uninterrupted run (tuner/backends/optuna/rungs.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.conftest import hyper_command, hyper_in_process, run_hyper
from tuner.backends.optuna import rungs

SPACE = "learning_rate choice [0.02, 0.01, 0.005]\ndropout_prob choice [0.0, 0.2, 0.4]\n"  # 9 points


def test_rung_arithmetic() -> None:
    assert rungs.rung_sizes(90) == [90, 30, 10, 3] and rungs.planned_trials(90) == 133
    assert rungs.rung_sizes(3) == [3] and rungs.rung_sizes(4) == [4, 1]
    assert [rungs.rung_end(r, n) for r, n in enumerate(rungs.rung_sizes(90))] == [1, 3, 9, None]


def test_sync_halving_ranks_whole_rungs_and_continues_the_best_exactly(workdir: Path) -> None:
    (workdir / "h.test").write_text(SPACE)
    common = ["--params_file", "h.test", "--no-mlflow", "--epochs=4", "--stopping_step=100"]
    proc = run_hyper(workdir, *common, "--pruner", "sync-halving", "--workers", "2",
                     f"--storage=sqlite:///{workdir / 's.db'}", "--output_file", "sync/out.result")
    assert proc.returncode == 0, proc.stderr[-3000:]
    import optuna

    [name] = optuna.get_all_study_names(f"sqlite:///{workdir / 's.db'}")
    trials = optuna.load_study(study_name=name, storage=f"sqlite:///{workdir / 's.db'}").trials
    first = [t for t in trials if t.user_attrs["rung"] == 0]
    second = [t for t in trials if t.user_attrs["rung"] == 1]
    assert len(trials) == 12 and len(first) == 9 and len(second) == 3  # 9 points, the best 3 go on
    assert {tuple(sorted(t.params.items())) for t in first} == {tuple(sorted(t.params.items())) for t in trials}
    assert all(t.state.name == "PRUNED" and t.user_attrs["epochs_run"] == 1 for t in first)
    # the barrier: no point went on before the whole first rung had finished
    assert min(t.datetime_start for t in second) >= max(t.datetime_complete for t in first)
    # the best third by the first rung's score, each continuing its own state to the epochs cap
    score = {t.number: t.user_attrs["best_valid_result"]["mrr@10"] for t in first}
    assert sorted(score[t.user_attrs["continues"]] for t in second) == sorted(score.values())[-3:]
    assert all(t.state.name == "COMPLETE" and t.user_attrs["epochs_run"] == 4 and t.user_attrs["resumed_epochs"] == 1
               for t in second)
    assert not any((workdir / "sync" / "checkpoints" / "resume").iterdir())  # no state left behind

    # the continued points' numbers are those of the same configs trained straight through (the workers'
    # one thread each, the command's overrides)
    import torch

    from tuner.objective import StudySpec, run_trial

    overrides = {"data_path": str(workdir / "data"), "embedding_size": 8, "show_progress": False, "epochs": 4,
                 "stopping_step": 100}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for t in second:
            params = {k: float(v) for k, v in t.params.items()}
            straight = run_trial(StudySpec("GRU4Rec", "toy", overrides=overrides), params, 0)
            assert [t.user_attrs[k] for k in ("best_valid_result", "test_result", "epochs_run", "best_epoch")] == \
                [straight.best_valid_result, straight.test_result, straight.epochs_run, straight.best_epoch]
    finally:
        torch.set_num_threads(threads)


def test_a_rung_that_ends_at_the_epochs_cap_finishes_its_points(workdir: Path) -> None:
    """With --epochs 1 the first rung's end is the fit's own end: every point is COMPLETE, none goes on."""
    (workdir / "h.test").write_text(SPACE)
    proc = run_hyper(workdir, "--params_file", "h.test", "--no-mlflow", "--epochs=1", "--pruner", "sync-halving",
                     f"--storage=sqlite:///{workdir / 's.db'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    import optuna

    [name] = optuna.get_all_study_names(f"sqlite:///{workdir / 's.db'}")
    trials = optuna.load_study(study_name=name, storage=f"sqlite:///{workdir / 's.db'}").trials
    assert len(trials) == 9 and all(t.state.name == "COMPLETE" for t in trials)
    assert "no trial has run to its end" not in proc.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--tool", "ray"], "--pruner sync-halving is Optuna's; with --tool ray use --pruner asha"),
    (["--algo", "tpe"], "--pruner sync-halving ranks every point of a grid at each rung"),
])
def test_sync_halving_outside_an_optuna_grid_is_one_line(workdir: Path, args: list[str], message: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "h.test").write_text(SPACE)
    code, err = hyper_in_process(hyper_command(workdir, "--params_file", "h.test", "--pruner", "sync-halving", *args),
                                 workdir, capsys)
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_study_cut_short_on_its_rungs_reports_the_best_of_the_highest_rung(workdir: Path) -> None:
    """No trial ran to its end (a budget over sync-halving's rungs): the best, and --seeds' configs, come
    from the PRUNED trials that trained the most epochs; a partial run is never reused as a seed run."""
    from tuner.cli import make_plan
    from tuner.reporting.outputs import best_trial
    from tuner.request import resolve
    from tuner.seeds import seed_plan, top_records
    from tuner.trial import TrialRecord, TrialState

    def record(number: int, epochs: int, score: float, state: TrialState = TrialState.PRUNED) -> TrialRecord:
        return TrialRecord(number, state, {"learning_rate": 0.01 / (number + 1)}, epochs_run=epochs,
                           best_valid_result={"mrr@10": score})

    rung0 = [record(0, 1, 0.30), record(1, 1, 0.10), record(2, 1, 0.20)]
    rung1 = [record(3, 3, 0.15), record(4, 3, 0.25)]
    assert best_trial(rung0 + rung1, bigger=True).number == 4  # the highest rung's best, not rung 0's 0.30
    assert [r.number for r in top_records(rung0 + rung1, True, 3)] == [4, 3]
    finished = record(5, 2, 0.05, TrialState.COMPLETE)
    assert best_trial([*rung0, *rung1, finished], bigger=True).number == 5  # a finished trial always wins
    (workdir / "h.test").write_text("learning_rate choice [0.01, 0.005, 0.0033]\n")
    plan = make_plan(resolve(hyper_command(workdir, "--params_file", str(workdir / "h.test"), "--no-mlflow")[2:]))
    from models.fit_state import config_digest

    top = [dataclasses.replace(r, config_digest=config_digest(plan.spec.config(r.params)))
           for r in top_records(rung0 + rung1, True, 1)]  # the same config as the seed run's, but cut short
    assert not seed_plan(plan, top, 2020, 3).known  # so trained in full instead
    assert seed_plan(plan, [dataclasses.replace(top[0], state=TrialState.COMPLETE)], 2020, 3).known
