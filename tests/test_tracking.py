"""MLflow read back with MlflowClient after real studies: linkage, params, per-epoch metrics, states, artifacts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_hyper, study_rows
from tests.test_tuner import UNALLOCATABLE
from tuner.tracking.mlflow_tracker import MlflowTracker
from tuner.trial import TrialRecord, TrialState

EPOCHS = 3


def _runs(db: Path, experiment: str):
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return client, client.search_runs([exp.experiment_id])


def test_study_logged_as_parent_and_children(workdir: Path) -> None:
    space = workdir / "h.test"
    space.write_text(f"learning_rate choice [0.01, 0.001]\nhidden_size choice [8, {UNALLOCATABLE}]\n")
    proc = run_hyper(workdir, "--params_file", str(space), f"--epochs={EPOCHS}", "--stopping_step=10",
                     f"--storage=sqlite:///{workdir / 's.db'}", "--study-name", "tracked",
                     f"--mlflow-uri=sqlite:///{workdir / 'mlflow.db'}")
    assert proc.returncode == 0, proc.stderr
    client, runs = _runs(workdir / "mlflow.db", "GRU4Rec-toy")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.data.tags["model"] == "GRU4Rec" and parent.data.tags["algorithm"] == "grid"
    assert parent.data.tags["sampler_seed"] == "2020" and parent.info.status == "FINISHED"
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"hyper.test", "base_config.yaml", "hyper_example.result", "results.csv", "best_config.yaml"} <= parent_files
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/optimization_history.png", "plots/parallel_coordinate.png", "plots/param_importances.png"} == plots

    # Optuna keeps the MLflow run id; the run keeps the trial number
    with sqlite3.connect(workdir / "s.db") as conn:
        attrs = dict(conn.execute("SELECT t.number, a.value_json FROM trial_user_attributes a JOIN trials t "
                                  "ON a.trial_id = t.trial_id WHERE a.key = 'run_id'").fetchall())
    states = {number: state for number, state, _ in study_rows(workdir / "s.db")}
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        number = int(child.data.tags["trial_number"])
        assert attrs[number].strip('"') == child.info.run_id
        assert set(child.data.params) == {"learning_rate", "hidden_size", "trial_number"}
        assert child.data.params["trial_number"] == str(number)
        assert "config.yaml" in {a.path for a in client.list_artifacts(child.info.run_id)}
        if states[number] == "FAIL":
            assert child.info.status == "FAILED" and "allocate" in child.data.tags["error"].lower()
            assert child.data.tags["state"] == "FAIL"
            continue
        history = client.get_metric_history(child.info.run_id, "valid_mrr_at_10")
        assert [m.step for m in history] == list(range(EPOCHS))  # one point per epoch
        assert len(client.get_metric_history(child.info.run_id, "train_loss")) == EPOCHS
        assert "test_mrr_at_10" in child.data.metrics
        assert child.info.status == {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}[states[number]]
        assert child.data.tags["state"] == states[number]  # one vocabulary: Optuna's state names everywhere
    assert sorted(states.values()).count("FAIL") == 2
    best = parent.data.tags["best_trial"]
    best_run = next(c for c in children if c.data.tags["trial_number"] == best)
    assert {"trial-" + best + ".pth"} <= {a.path for a in client.list_artifacts(best_run.info.run_id)}

    # the parent carries the study: the best trial's metrics and parameters, counts, the anytime curve
    best_child = best_run.data
    for key in ("best_valid_mrr_at_10", "test_mrr_at_10", "test_ndcg_at_10"):
        assert parent.data.metrics[key] == pytest.approx(best_child.metrics[key])
    assert {k: v for k, v in parent.data.params.items() if k.startswith("best.")} == {
        f"best.{k}": v for k, v in best_child.params.items() if k != "trial_number"}
    assert parent.data.metrics["trials_complete"] + parent.data.metrics.get("trials_pruned", 0) == 2
    assert parent.data.metrics["trials_fail"] == 2 and parent.data.metrics["trials_waiting"] == 0
    curve = client.get_metric_history(parent.info.run_id, "best_so_far_valid_mrr_at_10")
    assert [m.step for m in curve] == sorted({m.step for m in curve}) and curve[-1].step <= 4
    assert curve[-1].value == pytest.approx(parent.data.metrics["best_valid_mrr_at_10"])
    assert all(b.value >= a.value for a, b in zip(curve, curve[1:], strict=False))  # best so far only grows
    wall = parent.data.metrics["wall_seconds"]
    assert wall > 0

    # resuming the study continues under the same parent run
    again = run_hyper(workdir, "--params_file", str(space), f"--epochs={EPOCHS}", "--stopping_step=10",
                      f"--storage=sqlite:///{workdir / 's.db'}", "--study-name", "tracked",
                      f"--mlflow-uri=sqlite:///{workdir / 'mlflow.db'}")
    assert again.returncode == 0, again.stderr
    _, runs_after = _runs(workdir / "mlflow.db", "GRU4Rec-toy")
    assert [r.info.run_id for r in runs_after if "mlflow.parentRunId" not in r.data.tags] == [parent.info.run_id]
    resumed = client.get_run(parent.info.run_id)
    assert resumed.data.metrics["wall_seconds"] > wall  # summed over the runs of the study
    steps = [m.step for m in client.get_metric_history(parent.info.run_id, "best_so_far_valid_mrr_at_10")]
    assert steps == [m.step for m in curve]  # nothing finished in between: no point logged twice


def _record(number: int, state: TrialState, score: float | None, finished_at: float) -> TrialRecord:
    result = {"mrr@10": score, "ndcg@10": score / 2} if score is not None else {}
    return TrialRecord(number, state, {"learning_rate": 0.1 * (number + 1)}, best_valid_result=result,
                       test_result={k: v / 2 for k, v in result.items()}, finished_at=finished_at)


def test_parent_follows_the_study_as_trials_finish(tmp_path: Path) -> None:
    """log_study as the driver calls it (after each finished trial, then at the end): the curve gains only
    the new points, the latest metrics are the current best's, the best parameters become parameters once
    every trial has run (MLflow parameters cannot change), and a better trial after a resume is in the tags."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    tracker = MlflowTracker.start_study(uri, "exp", "study", {"model": "X"}, {})
    first = [_record(0, TrialState.COMPLETE, 0.02, 1000.0), _record(1, TrialState.PRUNED, 0.05, 1001.0),
             _record(2, TrialState.RUNNING, None, 0.0)]
    tracker.log_study(first, bigger=True)
    assert MlflowClient(uri).get_run(tracker.parent_run_id).data.params == {}  # not final yet: tags only
    more = [*first[:2], _record(2, TrialState.COMPLETE, 0.04, 1003.0), _record(3, TrialState.FAIL, None, 1002.0)]
    tracker.log_study(more, bigger=True, wall_seconds=12.5)
    tracker.log_study(more, bigger=True, wall_seconds=12.5)  # the end of the run: nothing new on the curve
    client = MlflowClient(uri)
    curve = client.get_metric_history(tracker.parent_run_id, "best_so_far_valid_mrr_at_10")
    # finish order: 0 (0.02), 1 (pruned), 3 (failed), 2 (0.04); a pruned trial is never the best
    assert [(m.step, m.value, m.timestamp) for m in curve] == [(1, 0.02, 1000000), (2, 0.02, 1001000),
                                                               (3, 0.02, 1002000), (4, 0.04, 1003000)]
    run = client.get_run(tracker.parent_run_id)
    assert run.data.metrics["best_valid_mrr_at_10"] == pytest.approx(0.04)
    assert run.data.metrics["test_ndcg_at_10"] == pytest.approx(0.01)
    assert run.data.metrics["trials_complete"] == 2 and run.data.metrics["trials_running"] == 0
    assert run.data.params["best.learning_rate"] == str(0.1 * 3) and run.data.tags["best_trial"] == "2"
    assert run.data.metrics["wall_seconds"] == pytest.approx(12.5)

    resumed = MlflowTracker.start_study(uri, "exp", "study", {"model": "X"}, {})
    assert resumed.parent_run_id == tracker.parent_run_id
    better = [*more, _record(4, TrialState.COMPLETE, 0.06, 1010.0)]
    resumed.log_study(better, bigger=True, wall_seconds=14.5)  # the study's, from its storage (record_run)
    run = client.get_run(tracker.parent_run_id)
    assert run.data.metrics["wall_seconds"] == pytest.approx(14.5)
    assert run.data.tags["best.learning_rate"] == str(0.1 * 5) and run.data.tags["best_trial"] == "4"
    assert [m.step for m in client.get_metric_history(tracker.parent_run_id, "best_so_far_valid_mrr_at_10")] == [
        1, 2, 3, 4, 5]
    resumed.log_metrics({"seeds/top1/test_mrr@10_mean": 0.03})
    assert client.get_run(tracker.parent_run_id).data.metrics["seeds/top1/test_mrr_at_10_mean"] == 0.03


def test_pruned_run_is_marked(tmp_path: Path) -> None:
    tracker = MlflowTracker.start_study(f"sqlite:///{tmp_path / 'm.db'}", "exp", "study", {"model": "X"}, {})
    run = tracker.start_trial(7, {"learning_rate": 0.1, "nested": {"a": 1}}, {"learning_rate": 0.1})
    run.log_epoch(0, 10.0, {"mrr@10": 0.1})
    run.finish(TrialState.PRUNED, {"test_result": {"mrr@10": 0.05}, "seconds": 1.5})
    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    logged = client.get_run(run.run_id)
    assert logged.info.status == "KILLED" and logged.data.tags["state"] == "PRUNED"
    assert logged.data.params == {"learning_rate": "0.1", "nested.a": "1", "trial_number": "7"}
    assert logged.data.metrics["test_mrr_at_10"] == pytest.approx(0.05)
    assert logged.data.tags["trial_number"] == "7"


def test_no_mlflow_writes_no_store(workdir: Path) -> None:
    (workdir / "h.test").write_text("learning_rate choice [0.01]\n")
    proc = run_hyper(workdir, "--params_file", "h.test", "--epochs=1", "--no-mlflow",
                     f"--storage=sqlite:///{workdir / 's.db'}")
    assert proc.returncode == 0, proc.stderr
    assert not (workdir / "mlflow.db").exists()


def test_new_sqlite_store_from_the_schema_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new mlflow.db is a copy of a once-migrated template: same schema as MLflow's own migration,
    and the default experiment recreated for where the store really is."""
    import os

    from tuner.tracking.mlflow_tracker import prepare_sqlite_store

    monkeypatch.setenv("SEQTUNE_CACHE", str(tmp_path / "cache"))
    migrated = tmp_path / "migrated"
    migrated.mkdir()
    monkeypatch.chdir(migrated)
    MlflowClient("sqlite:///plain.db").search_experiments()  # MLflow's own migration chain

    copied = tmp_path / "copied"
    copied.mkdir()
    monkeypatch.chdir(copied)
    prepare_sqlite_store("sqlite:///a.db")  # builds the template, then copies it
    prepare_sqlite_store("sqlite:///b.db")  # copies it
    assert len(list((tmp_path / "cache" / "mlflow").glob("schema-*.db"))) == 1

    def schema(db: Path) -> tuple[list, list]:
        """Tables and indexes with their columns and constraints; MLflow's own migration emits a
        table's constraints in varying order, so each statement's lines are compared as a set."""
        with sqlite3.connect(db) as con:
            tables = [(name, sorted(line.strip().rstrip(",") for line in (sql or "").splitlines()))
                      for name, sql in con.execute("SELECT name, sql FROM sqlite_master ORDER BY name")]
            return tables, con.execute("SELECT version_num FROM alembic_version").fetchall()

    assert schema(copied / "b.db") == schema(migrated / "plain.db")
    client = MlflowClient("sqlite:///b.db")
    default = client.get_experiment("0")
    assert default.name == "Default" and default.artifact_location.endswith(os.path.join("copied", "mlruns", "0"))
    experiment = client.create_experiment("x")
    assert experiment == "1"
    client.log_text(client.create_run(experiment).info.run_id, "hello", "a.txt")

    (copied / "b.db").write_bytes(b"")  # an existing store, even an odd one, is never replaced
    prepare_sqlite_store("sqlite:///b.db")
    assert (copied / "b.db").read_bytes() == b""


def test_an_mlflow_server_that_does_not_answer_is_one_line_at_once(workdir: Path) -> None:
    """MLflow's client retried a refused connection with back-off for 4 min 17 s before this check (measured:
    `--mlflow-uri http://127.0.0.1:1`). The URI's password is not shown."""
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (workdir / "h.test").write_text("learning_rate choice [0.01]\n")
    proc = run_hyper(workdir, "--params_file", "h.test", "--epochs=1", f"--storage=sqlite:///{workdir / 's.db'}",
                     f"--mlflow-uri=http://alice:pw-never-shown@127.0.0.1:{port}", timeout=120)  # not minutes
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and errors == [
        f"error: MLflow at 'http://alice:***@127.0.0.1:{port}' is not usable: no server answers ([Errno 111] "
        "Connection refused) (or pass --no-mlflow)"], proc.stderr
    assert "pw-never-shown" not in proc.stderr + proc.stdout


def test_a_tracking_server_that_goes_down_costs_no_trial_and_the_same_command_fills_mlflow_in(
        workdir: Path) -> None:
    """A real MLflow server stopped while the first trial logs its epochs: every trial still trains and
    completes (before: each tracking call failed after ~4 min of retries, and so did the trial), with one
    warning; once the server is back, the same command gives every trial its run, its whole curve and its
    end, and finishes the parent."""
    import subprocess
    import sys
    import time

    from tests.browser import free_port, serve
    from tests.conftest import hyper_command, hyper_env

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
              "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
              "--default-artifact-root", str(workdir / "artifacts")]
    (workdir / "h.test").write_text("learning_rate choice [0.01, 0.005, 0.001]\n")
    args = ["--params_file", "h.test", "--epochs=30", "--stopping_step=100", f"--storage=sqlite:///{workdir / 's.db'}",
            "--study-name", "down", f"--mlflow-uri={uri}"]
    with serve(server, f"{uri}/health", workdir / "server1.log"):
        study = subprocess.Popen(hyper_command(workdir, *args), cwd=workdir, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=hyper_env())
        client, deadline = MlflowClient(uri), time.time() + 300
        while not [r for r in client.search_runs(["1"]) if r.data.metrics.get("train_loss") is not None]:
            assert study.poll() is None and time.time() < deadline, "no trial logged an epoch"
            time.sleep(0.2)
    # the server is gone while trial 0 trains
    out, err = study.communicate(timeout=600)
    assert study.returncode == 0, err[-3000:]
    assert [state for _, state, _ in study_rows(workdir / "s.db")] == ["COMPLETE"] * 3  # no trial lost
    assert err.count(f"warning: MLflow at {uri} does not answer") == 1, err
    with serve(server, f"{uri}/health", workdir / "server2.log"):
        again = run_hyper(workdir, *args)
        assert again.returncode == 0, again.stderr[-3000:]
        client = MlflowClient(uri)
        runs = client.search_runs(["1"])
        curves = {r.info.run_id: [m.step for m in client.get_metric_history(r.info.run_id, "train_loss")]
                  for r in runs}
    children = {r.data.tags["trial_number"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert sorted(children) == ["0", "1", "2"]
    for run in children.values():
        assert run.info.status == "FINISHED" and run.data.tags["state"] == "COMPLETE"
        steps = curves[run.info.run_id]
        assert sorted(steps) == list(range(30)), steps  # every epoch once: the missed ones filled in
        assert "test_mrr_at_10" in run.data.metrics
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_complete"] == 3
    # the wall time of the run MLflow missed is in the parent's (it is kept in the study): before, the
    # parent had only the second run's
    import optuna

    spans = sorted(v for k, v in optuna.load_study(study_name="down", storage=f"sqlite:///{workdir / 's.db'}")
                   .user_attrs.items() if k.startswith("seqtune:ran:"))  # in time order: the first run first
    assert len(spans) == 2 and spans[0][1] - spans[0][0] > 5  # the first run trained 3 x 30 epochs
    assert parent.data.metrics["wall_seconds"] == pytest.approx(sum(end - start for start, end in spans))
