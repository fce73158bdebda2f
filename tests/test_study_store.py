"""The study in Optuna's storage: claiming, reaping, retrying, counting and collecting trials (in process),
and a worker of another live host waited for, not duplicated (run_hyper.py beside a fake foreign worker)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import hyper_command, hyper_env, study_rows
from tuner.backends.base import StudyPlan
from tuner.backends.optuna.backend import wait_for_other_hosts
from tuner.backends.optuna.records import collect, counted, remaining, snapshot
from tuner.backends.optuna.storage import WORKER_ATTR, StudyStore
from tuner.backends.optuna.worker import NothingToRun, claiming_store
from tuner.cli import make_plan
from tuner.request import resolve
from tuner.trial import TrialState

SPACE = "learning_rate choice [0.01, 0.005]\nhidden_size choice [8]\n"


def _args(workdir: Path, *extra: str) -> list[str]:
    return hyper_command(workdir, "--params_file", str(workdir / "h.test"), f"--storage=sqlite:///{workdir / 's.db'}",
                         "--study-name", "shared", "--no-mlflow", "--epochs=2", *extra)[2:]


@pytest.fixture
def plan(workdir: Path) -> StudyPlan:
    (workdir / "h.test").write_text(SPACE)
    return make_plan(resolve(_args(workdir)))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_claim_is_exactly_once_and_the_grid_runs_out(plan: StudyPlan) -> None:
    store = StudyStore.open(plan, create=True)
    assert [t.state.name for t in store.trials()] == ["WAITING", "WAITING"]
    assert store.claim(0, "a:1") and not store.claim(0, "b:2")  # the second worker loses the race
    claiming = claiming_store(store, plan, "me:3")
    trial = claiming.study.ask()
    assert trial.number == 1 and store.trials()[1].state.name == "RUNNING"
    assert {n: p.distribution.suggest(trial, n) for n, p in plan.space.parameters.items()} == {
        "learning_rate": 0.005, "hidden_size": 8}  # the queued point
    with pytest.raises(NothingToRun):  # a grid never samples a point beyond its queue
        claiming.study.ask()
    assert len(store.trials()) == 2 and remaining(store.trials(), plan) == 0


def test_the_study_s_wall_time_is_the_union_of_its_commands_spans(plan: StudyPlan) -> None:
    """Each command keeps its span in the study: runs one after another add up, drivers side by side
    count once, and a second handle on the study (another driver) sees every span."""
    from tuner.backends.optuna.storage import union_length

    store = StudyStore.open(plan, create=True)
    assert store.record_run(100.0, 110.0) == pytest.approx(10.0)
    assert store.record_run(105.0, 120.0) == pytest.approx(20.0)  # overlaps the first: side by side
    other = StudyStore.open(plan, create=False)
    assert other.record_run(200.0, 205.0) == pytest.approx(25.0)  # a resume, later
    assert union_length([(0, 1), (0.5, 0.6), (2, 3)]) == pytest.approx(2.0)  # one inside another
    assert union_length([]) == 0.0


def test_a_sampled_study_stops_at_its_budget_counting_running_trials(plan: StudyPlan) -> None:
    tpe = dataclasses.replace(plan, algo="tpe", n_trials=2, study_name="tpe")
    store = claiming_store(StudyStore.open(tpe, create=True, heartbeat=False), tpe, "me:1")
    store.study.ask()
    store.study.ask()
    with pytest.raises(NothingToRun):  # two RUNNING already fill the budget: no third in parallel
        store.study.ask()


def test_a_dead_worker_of_this_host_is_retried_once(plan: StudyPlan) -> None:
    store = StudyStore.open(plan, create=True)
    host = __import__("socket").gethostname()
    assert store.claim(0, f"{host}:{_dead_pid()}")
    store.set_attrs(0, {"run_id": "abc", "resumed_epochs": 3, "resume_state": "/x/gru4rec-abc.pt"})
    assert store.reap_dead() == 1 and store.reap_dead() == 0
    trials = store.trials()
    assert [t.state.name for t in trials] == ["FAIL", "WAITING", "WAITING"]
    assert trials[2].params == trials[0].params and "died" in trials[0].user_attrs["error"]
    assert counted(trials) == 0 and remaining(trials, plan) == 2  # a retried failure uses no budget
    assert trials[2].user_attrs.get("worker") is None  # the copy names no (dead) owner until it is claimed
    store.retry(0, "again")  # already finished: left alone, no second copy
    assert len(store.trials()) == 3
    assert store.claim(2, "me:5")
    copy = store.trials()[2].user_attrs  # nor what its original's run said about itself
    assert copy["error"] is None and copy["resumed_epochs"] is None and copy["resume_state"] is None


def test_records_collect_states_params_and_results(plan: StudyPlan) -> None:
    store = StudyStore.open(plan, create=True)
    assert store.claim(0, "me:1")
    store.set_attrs(0, {"best_valid_result": {"mrr@10": 0.25}, "test_result": {"mrr@10": 0.2}, "epochs_run": 2,
                        "seconds": 1.5, "train_seconds": 1.0, "eval_seconds": 0.25})
    store.study.tell(0, 0.25)
    records = collect(store.trials(), plan)
    assert [r.state for r in records] == [TrialState.COMPLETE, TrialState.WAITING]
    assert records[0].params == {"learning_rate": 0.01, "hidden_size": 8} and records[0].best_valid_score == 0.25
    assert records[0].overhead_seconds == 0.25 and records[1].best_valid_score is None
    progress = snapshot(store.trials(), plan)
    assert (progress.total, progress.done, progress.running, progress.best) == (2, 1, 0, 0.25)


def test_a_silent_foreign_worker_is_retried_after_the_grace_period(plan: StudyPlan) -> None:
    quick = dataclasses.replace(plan, heartbeat_seconds=1, grace_seconds=1, study_name="stale")
    store = StudyStore.open(quick, create=True)
    assert store.claim(0, "elsewhere:1")
    store.storage.record_heartbeat(store.trial_id(0))
    time.sleep(2.5)  # no heartbeat since: the host is gone
    assert wait_for_other_hosts(store, quick, poll_seconds=0.1) is True  # its trial waits to run here
    assert [t.state.name for t in store.trials()] == ["FAIL", "WAITING", "WAITING"]


def test_a_failed_heartbeat_is_reported_in_one_line_and_the_next_one_is_recorded(
        plan: StudyPlan, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Optuna's own heartbeat thread, over our storage: its first beat fails as a locked database does
    inside Optuna's session; the thread lives on and the next beat is stored."""
    import sqlite3

    from optuna.exceptions import StorageInternalError
    from optuna.storages import RDBStorage
    from optuna.storages._heartbeat import HeartbeatThread
    from sqlalchemy.exc import OperationalError

    quick = dataclasses.replace(plan, heartbeat_seconds=1, study_name="beat")
    store = StudyStore.open(quick, create=True)
    assert store.claim(0, "me:1")
    beats: list[int] = []
    record = RDBStorage.record_heartbeat

    def first_fails(self: RDBStorage, trial_id: int) -> None:
        beats.append(trial_id)
        if len(beats) == 1:
            locked = OperationalError("UPDATE trial_heartbeats", {}, sqlite3.OperationalError("database is locked"))
            raise StorageInternalError("An exception is raised during the commit.") from locked
        record(self, trial_id)

    monkeypatch.setattr(RDBStorage, "record_heartbeat", first_fails)
    beating = HeartbeatThread(store.trial_id(0), store.storage)
    beating.start()
    deadline = time.time() + 10
    while len(beats) < 2 and time.time() < deadline:
        time.sleep(0.1)
    beating.join()
    assert len(beats) >= 2 and store.storage._get_stale_trial_ids(store.study._study_id) == []  # noqa: SLF001
    err = capsys.readouterr().err
    assert "heartbeat of trial id 1 was not recorded (OperationalError: " in err and "database is locked" in err
    assert "Traceback" not in err


def test_a_live_foreign_worker_is_waited_for_not_duplicated(workdir: Path, plan: StudyPlan) -> None:
    store = StudyStore.open(plan, create=True)
    assert store.claim(0, "elsewhere:1")  # another host runs point 0, with a live heartbeat
    beating = threading.Event()

    def heartbeat() -> None:
        while not beating.wait(1.0):
            store.storage.record_heartbeat(store.trial_id(0))

    threading.Thread(target=heartbeat, daemon=True).start()
    proc = subprocess.Popen(hyper_command(workdir, *_args(workdir)), cwd=workdir, env=hyper_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and [s for _, s, _ in study_rows(workdir / "s.db")] != ["RUNNING", "COMPLETE"]:
        time.sleep(0.3)
    time.sleep(3)
    assert proc.poll() is None  # point 1 done here; point 0 still runs elsewhere: waiting, not re-running it
    store.set_attrs(0, {"best_valid_result": {"mrr@10": 0.5}})
    store.study.tell(0, 0.5)
    beating.set()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "waiting for 1 trial(s) running on other workers (elsewhere:1)" in err
    rows = study_rows(workdir / "s.db")
    assert [s for _, s, _ in rows] == ["COMPLETE", "COMPLETE"]  # two points, two trials: nothing duplicated
    assert store.trials()[0].user_attrs[WORKER_ATTR] == "elsewhere:1"


def test_a_seed_run_is_reused_only_when_it_is_the_very_same_computation(plan: StudyPlan) -> None:
    """--seeds: a top config's run with its own seed enters the seed study finished, but only when the
    search trial's config computes exactly what the seed run's would (a resumed study with other
    command-line overrides under the same --study-name must not lend its trials)."""
    import dataclasses as dc

    from models.fit_state import config_digest
    from tuner.seeds import seed_plan
    from tuner.trial import TrialRecord

    params = {"learning_rate": 0.01, "hidden_size": 8}
    same = TrialRecord(0, TrialState.COMPLETE, params, best_valid_result={"mrr@10": 0.2},
                       config_digest=config_digest(plan.spec.config(params)))
    seeds = seed_plan(plan, [same], 2020, 3)
    assert [r.params["seed"] for r in seeds.known] == [2020] and seeds.known[0].reused_from == 0
    assert sorted(p["seed"] for p in seeds.grid_points()) == [2021, 2022]
    longer = dc.replace(plan.spec, overrides={**plan.spec.overrides, "epochs": 7})  # another --epochs
    other = dc.replace(same, config_digest=config_digest(longer.config(params)))
    assert not seed_plan(plan, [other], 2020, 3).known  # other overrides: trained again
    assert not seed_plan(plan, [dc.replace(same, config_digest=None)], 2020, 3).known  # a study from before


def test_a_trial_claimed_by_a_worker_killed_before_it_wrote_its_name_is_retried(
        plan: StudyPlan, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL between a claim's two writes leaves a RUNNING trial that names no owner (seen in CI: the
    resumed study waited for it forever). Young, it may be a claim in progress; old, it is retried."""
    from optuna.trial import TrialState as OptunaState

    from tuner.backends.optuna import storage

    store = StudyStore.open(plan, create=True)
    assert store.storage.set_trial_state_values(store.trial_id(0), state=OptunaState.RUNNING)  # first write only
    assert store.orphan_seconds() == storage.ORPHAN_SECONDS
    assert store.reap_dead() == 0  # a claim may be between its writes right now
    monkeypatch.setattr(storage, "ORPHAN_SECONDS", 0.0)
    assert store.reap_dead() == 1 and store.reap_dead() == 0
    trials = store.trials()
    assert [t.state.name for t in trials] == ["FAIL", "WAITING", "WAITING"]
    assert trials[2].params == trials[0].params and "before it wrote its name" in trials[0].user_attrs["error"]
