"""run_hyper.py end to end on a synthetic dataset: flags, results, failures, workers, resume, Ctrl-C, kill -9."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import ROOT, hyper_command, hyper_env, hyper_in_process, run_hyper, study_rows
from tuner.proctree import stat_fields
from tuner.reporting import parse_recbole_output

UNALLOCATABLE = 10**7  # a GRU this wide needs ~1 PB: a real failure inside the trial that no config check sees


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
    assert all(line.split(",")[1] == "COMPLETE" for line in csv_lines[1:])
    best = (workdir / "out" / "best_config.yaml").read_text()
    assert "model: GRU4Rec" in best and "learning_rate:" in best
    assert "valid MRR@10" in proc.stdout  # the summary table
    assert "Heartbeat" not in proc.stderr and "Traceback" not in proc.stderr


def test_random_grid_order_is_seeded_and_complete(workdir: Path) -> None:
    """The order is RecBole's for the seed (two seeds planned), and a study runs its points in that order."""
    from tuner.request import resolve

    space = workdir / "h.test"
    space.write_text("learning_rate choice [0.01, 0.005]\nhidden_size choice [8, 16]\n")
    file_order = [(lr, h) for lr in (0.01, 0.005) for h in (8, 16)]
    for seed in (2020, 7):
        expected = list(file_order)
        random.Random(seed).shuffle(expected)  # the order RecBole's exhaustive search would draw for this seed
        args = ["--params_file", str(space), "--epochs=1", "--grid-order", "random", f"--sampler-seed={seed}",
                "--storage", f"sqlite:///{workdir / f's{seed}.db'}", "--no-mlflow", "--quiet"]
        planned = resolve(hyper_command(workdir, *args)[2:]).grid_points
        assert [(p["learning_rate"], p["hidden_size"]) for p in planned] == expected
    proc = run_hyper(workdir, *args)  # the last seed's study, run for real
    assert proc.returncode == 0, proc.stderr
    choices = {"learning_rate": (0.01, 0.005), "hidden_size": (8, 16)}  # Optuna stores a choice as its index
    ran = [tuple(choices[k][int(p[k])] for k in choices) for _, _, p in sorted(study_rows(workdir / "s7.db"))]
    assert ran == expected


def test_both_flag_forms_and_best_config_retrains(workdir: Path) -> None:
    """`--key=value` and `--key value` give the same study request (our flags and config keys alike); the
    study's best_config.yaml retrains to the same result."""
    from tuner.request import resolve

    space = workdir / "h.test"
    space.write_text("learning_rate choice [0.01]\n")
    eq = [f"--params_file={space}", "--epochs=1", "--output_file=b.result", f"--storage=sqlite:///{workdir / 'b.db'}",
          "--study-name=spaced"]
    spaced = ["--params_file", str(space), "--epochs", "1", "--output_file", "b.result",
              "--storage", f"sqlite:///{workdir / 'b.db'}", "--study-name", "spaced"]
    requests = [replace(resolve(hyper_command(workdir, *form)[2:]), command="") for form in (eq, spaced)]
    assert requests[0] == requests[1] and requests[0].base["epochs"] == 1 and requests[0].study_name == "spaced"
    proc = run_hyper(workdir, *spaced)
    assert proc.returncode == 0, proc.stderr
    retrain = subprocess.run([*hyper_command(workdir)[:1], "-m", "models.train", "--model", "GRU4Rec", "--dataset",
                              "toy", "--config_files", str(workdir / "best_config.yaml")],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert retrain.returncode == 0, retrain.stderr
    valid = parse_recbole_output((workdir / "b.result").read_text())[0][1]
    assert f"mrr@10 : {valid['mrr@10']}" in retrain.stdout  # same seed, same config: same result


def test_raising_trial_is_isolated(workdir: Path) -> None:
    space = workdir / "h.test"
    space.write_text(f"hidden_size choice [8, {UNALLOCATABLE}]\nlearning_rate choice [0.01]\n")
    proc = run_hyper(workdir, "--params_file", str(space), "--epochs=1", f"--storage=sqlite:///{workdir / 's.db'}")
    assert proc.returncode == 0, proc.stderr
    states = sorted(state for _, state, _ in study_rows(workdir / "s.db"))
    assert states == ["COMPLETE", "FAIL"]
    rows = list(csv.DictReader((workdir / "results.csv").open()))
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert len(failed) == 1 and failed[0]["hidden_size"] == str(UNALLOCATABLE)
    assert "allocate" in failed[0]["error"].lower()


def test_a_study_with_no_finished_trial_exits_1_with_the_reason(workdir: Path) -> None:
    (workdir / "h.test").write_text(f"hidden_size choice [{UNALLOCATABLE}]\n")
    proc = run_hyper(workdir, "--params_file", "h.test", "--epochs=1", "--no-mlflow",
                     f"--storage=sqlite:///{workdir / 's.db'}")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no trial finished: all 1 failed (first: trial 0:") and "allocate" in last.lower()
    assert (workdir / "results.csv").is_file() and (workdir / "hyper_example.result").is_file()


def test_tpe_budget(workdir: Path) -> None:
    space = workdir / "h.test"
    space.write_text("learning_rate loguniform -7,-3\ndropout_prob uniform 0,0.5\n")
    proc = run_hyper(workdir, "--params_file", str(space), "--epochs=2", "--n-trials", "5", "--algo", "tpe",
                     f"--storage=sqlite:///{workdir / 's.db'}", "--workers", "2", "--no-mlflow")
    assert proc.returncode == 0, proc.stderr
    rows = study_rows(workdir / "s.db")
    assert len(rows) == 5 and {s for _, s, _ in rows} == {"COMPLETE"}  # two workers, not one trial more
    for _, _, params in rows:
        assert 0.0 <= float(params["dropout_prob"]) <= 0.5


def test_median_pruning_stops_a_hopeless_config(workdir: Path) -> None:
    """Two good learning rates first (the pruner's start-up), then one too small to learn anything in
    time: its epoch-1 score is below the median of the others at that epoch, so it stops early."""
    (workdir / "h.test").write_text("learning_rate choice [0.01, 0.005, 0.0000001]\n")
    proc = run_hyper(workdir, "--params_file", "h.test", "--epochs=6", "--stopping_step=100", "--pruner", "median",
                     f"--storage=sqlite:///{workdir / 's.db'}", "--no-mlflow")
    assert proc.returncode == 0, proc.stderr
    rows = {number: state for number, state, _ in study_rows(workdir / "s.db")}
    assert rows == {0: "COMPLETE", 1: "COMPLETE", 2: "PRUNED"}
    by_trial = {r["trial"]: r for r in csv.DictReader((workdir / "results.csv").open())}
    assert by_trial["2"]["state"] == "PRUNED" and int(by_trial["2"]["epochs_run"]) < 6


@pytest.mark.parametrize(
    ("space", "args", "fragment"),
    [
        ("learning_rate choise [0.1]", [], "h.test:1: unknown distribution 'choise' (did you mean 'choice'?)"),
        ("hiden_size choice [8]", [], "h.test:1: unknown parameter 'hiden_size' for model GRU4Rec"),
        ("learning_rate choice [0.1]", ["--learning_rate=0.2"], "'learning_rate' is searched here and fixed"),
        ("learning_rate choice [0.1, -1]", [], "h.test:1: learning_rate=-1: learning_rate must be"),
        ("dropout_prob choice [0.1, 1.5]", [], "h.test:1: dropout_prob=1.5: dropout_prob must be"),
        ("hidden_size choice [0]", [], "h.test:1: hidden_size=0: hidden_size must be"),
        ("hidden_size choice [128.5]", [], "h.test:1: hidden_size=128.5: hidden_size must be"),
        ("num_layers choice [1, 0]", [], "h.test:1: num_layers=0: num_layers must be"),
        ("loss_type choice ['CE', 'XYZ']", [], "h.test:1: loss_type='XYZ': loss_type must be"),
        ("dropout_prob uniform -0.5,0.5", [], "h.test:1: dropout_prob=-0.5 (from uniform -0.5,0.5): dropout_prob"),
        ("hidden_size uniform 16,64", [], "hidden_size=33.76 (from uniform 16.0,64.0): hidden_size must be a"),
        ("learning_rate uniform 0.1,0.2", ["--algo", "grid"], "--algo grid needs every parameter to be a choice"),
        ("learning_rate choice [0.1]", ["--lernin_rate=3"], "unknown config key 'lernin_rate'"),
        ("learning_rate choice [0.1]", ["--data_path=/nowhere"], "/nowhere: no toy.inter here or in /nowhere/toy"),
        ("learning_rate choice [0.1]", ["--budget", "90"], "--budget: expected a duration like 90m, 2h or 1h30m"),
        ("learning_rate choice [0.1]", ["--budget", "1h30m", "--timeout", "60"], "--timeout and --budget both"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(workdir: Path, space: str, args, fragment,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "h.test").write_text(space + "\n")
    before = set(workdir.iterdir())
    code, stderr = hyper_in_process(hyper_command(workdir, "--params_file", "h.test", *args), workdir, capsys)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in stderr, stderr
    assert set(workdir.iterdir()) == before


def test_unknown_model_and_missing_params_file(workdir: Path) -> None:
    proc = subprocess.run([*hyper_command(workdir)[:2], "--model", "GRU5Rec", "--params_file", "x"],
                          cwd=workdir, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown model 'GRU5Rec'" in proc.stderr
    proc = run_hyper(workdir, "--params_file", "missing.test")
    assert proc.returncode == 2 and "missing.test: params file not found" in proc.stderr


@pytest.mark.parametrize("dry_run", [True, False])
@pytest.mark.parametrize(("storage", "message"), [
    ("foo://bar", "--storage 'foo://bar': not a database seqtune can open (Can't load plugin"),
    ("mysql://user:pw-never-shown@127.0.0.1/db", "not a database seqtune can open (No module named 'MySQLdb')"),
    ("postgresql://user:pw-never-shown@127.0.0.1:1/db",
     "cannot open study storage 'postgresql+psycopg2://user:***@127.0.0.1:1/db': (psycopg2.OperationalError)"),
])
def test_a_storage_that_cannot_open_is_one_line_without_its_password(
        workdir: Path, storage: str, message: str, dry_run: bool, capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in the scheme, a driver we do not ship, a server that refuses: exit 2 and one error line,
    a dry run too (it used to print "plan: no estimate" and exit 0), with the password hidden."""
    (workdir / "h.test").write_text("learning_rate choice [0.01, 0.001]\n")
    before = set(workdir.iterdir())
    command = hyper_command(workdir, "--params_file", "h.test", "--storage", storage, "--no-mlflow", "--epochs=1",
                            *(["--dry-run"] if dry_run else []))
    code, stderr = hyper_in_process(command, workdir, capsys)
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and message in errors[0], stderr
    assert "pw-never-shown" not in stderr and "Traceback" not in stderr and "no estimate" not in stderr
    assert set(workdir.iterdir()) == before  # nothing written


@pytest.mark.parametrize(("output", "message"), [
    ("out", "--output_file out: is a folder; expected a file name"),
    ("a-file/x.result", "a-file is a file, not a folder"),
    ("/proc/seqtune/x.result", "cannot write in /proc ("),  # os.access says yes to root here: a real probe
])
def test_an_output_file_that_cannot_be_written_stops_before_training(
        workdir: Path, output: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """It used to train every trial, then fail at the results with a traceback."""
    (workdir / "h.test").write_text("learning_rate choice [0.01, 0.001]\n")
    (workdir / "out").mkdir()
    (workdir / "a-file").write_text("")
    before = set(workdir.rglob("*"))
    command = hyper_command(workdir, "--params_file", "h.test", "--no-mlflow", "--epochs=1", "--output_file", output,
                            f"--storage=sqlite:///{workdir / 's.db'}")
    code, stderr = hyper_in_process(command, workdir, capsys)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], stderr
    assert set(workdir.rglob("*")) == before  # nothing trained or written, the probe removed


# -- interruption: kill -9 and Ctrl-C leave a study that the same command finishes ------------------

KILL_SPACE = "learning_rate choice [0.01, 0.005, 0.002, 0.001]\nhidden_size choice [8]\n"


def _running_attrs(db: Path) -> list:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT t.number, a.key, a.value_json FROM trials t JOIN trial_user_attributes a "
                            "ON a.trial_id = t.trial_id WHERE t.state = 'RUNNING'").fetchall()


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (Linux: the SigCgt mask in /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught >> (signum - 1) & 1)


def _start_and_wait(workdir: Path, args: list[str], db: Path) -> subprocess.Popen:
    """Start a study and return once at least one trial finished while another runs. It starts as from a
    terminal, with SIGINT at its default even when the test runner ignores it (a suite run with `&`)."""
    victim = subprocess.Popen(hyper_command(workdir, *args), cwd=workdir, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=hyper_env(),
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(0.2)
        if db.exists():
            try:
                states = [s for _, s, _ in study_rows(db)]
            except sqlite3.OperationalError:
                continue
            if "COMPLETE" in states and "RUNNING" in states:
                return victim
    victim.kill()
    pytest.fail("the study never had a finished and a running trial at once")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _assert_finished_once(workdir: Path, db: Path, points: int) -> None:
    rows = study_rows(db)
    complete = [tuple(sorted(p.items())) for _, s, p in rows if s == "COMPLETE"]
    assert len(complete) == points and len(set(complete)) == points  # every point once, none twice
    assert "RUNNING" not in [s for _, s, _ in rows] and "WAITING" not in [s for _, s, _ in rows]
    csv_rows = list(csv.DictReader((workdir / "results.csv").open()))
    assert sorted(int(r["trial"]) for r in csv_rows) == sorted(n for n, _, _ in rows)  # every trial in the files
    assert len(parse_recbole_output((workdir / "hyper_example.result").read_text())) == points


def test_kill_9_of_the_driver_takes_its_workers_down_and_the_study_resumes(workdir: Path) -> None:
    """kill -9: nothing of the driver runs on, and the same command finishes every point once. The killed
    trials' MLflow runs, left RUNNING, are ended by the resume as FAILED with why, beside their retries'."""
    (workdir / "h.test").write_text(KILL_SPACE)
    db = workdir / "s.db"
    args = ["--params_file", "h.test", "--epochs=40", "--stopping_step=100", f"--storage=sqlite:///{db}",
            "--study-name", "killme", "--workers", "2", f"--mlflow-uri=sqlite:///{workdir / 'mlflow.db'}"]
    victim = _start_and_wait(workdir, args, db)
    workers = _children(victim.pid)
    assert len(workers) >= 2
    finished_before = {tuple(sorted(p.items())) for _, s, p in study_rows(db) if s == "COMPLETE"}
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "workers outlived their driver"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    left = client.search_runs([client.get_experiment_by_name("GRU4Rec-toy").experiment_id],
                              "tags.`mlflow.parentRunId` != ''")
    assert "RUNNING" in [r.info.status for r in left]  # what the kill left: the path the resume must end

    proc = run_hyper(workdir, *args)
    assert proc.returncode == 0, proc.stderr
    _assert_finished_once(workdir, db, 4)
    assert finished_before <= {tuple(sorted(p.items())) for _, s, p in study_rows(db) if s == "COMPLETE"}
    runs = client.search_runs([client.get_experiment_by_name("GRU4Rec-toy").experiment_id])
    children = {int(r.data.tags["trial_number"]): r for r in runs if "mlflow.parentRunId" in r.data.tags}
    states = {number: state for number, state, _ in study_rows(db)}
    assert sorted(children) == sorted(states)  # one run per trial, the killed ones' included
    killed = [n for n, state in states.items() if state == "FAIL"]
    assert killed, states  # the trials running at the kill (--workers 2: at least one)
    for number, run in children.items():
        assert run.info.status == ("FAILED" if number in killed else "FINISHED"), (number, run.info.status)
    assert all("died" in children[n].data.tags.get("error", "") for n in killed), [children[n].data.tags
                                                                                   for n in killed]


@pytest.mark.parametrize(("tool", "workers"), [("optuna", "1"), ("optuna", "2"), ("ray", "2")])
def test_ctrl_c_writes_full_results_and_the_same_command_resumes(workdir: Path, tool: str, workers: str) -> None:
    (workdir / "h.test").write_text(KILL_SPACE)
    db = workdir / "s.db"
    args = ["--params_file", "h.test", "--epochs=40", "--stopping_step=100", f"--storage=sqlite:///{db}",
            "--study-name", "ctrlc", "--workers", workers, "--no-mlflow", "--tool", tool]
    victim = _start_and_wait(workdir, args, db)
    if tool == "optuna" and workers == "2":  # forks of the driver's fork server: their own handlers, as spawned
        pids, deadline = [], time.time() + 10
        while not pids and time.time() < deadline:  # a trial between its claim's two writes has no owner yet
            pids = [int(json.loads(v).rsplit(":", 1)[1]) for _, key, v in _running_attrs(db) if key == "worker"]
        assert pids and all(_catches(pid, signal.SIGINT) and _catches(pid, signal.SIGTERM) for pid in pids)
    victim.send_signal(signal.SIGINT)
    _, err = victim.communicate(timeout=120)
    assert victim.returncode == 130, err
    assert "interrupted: resume with the same command" in err and "Traceback" not in err, err
    rows = study_rows(db)
    assert "RUNNING" not in [s for _, s, _ in rows], (rows, _running_attrs(db), err)  # failed and queued again
    csv_rows = list(csv.DictReader((workdir / "results.csv").open()))
    assert sorted(int(r["trial"]) for r in csv_rows) == sorted(n for n, _, _ in rows)
    finished = [s for _, s, _ in rows].count("COMPLETE")
    assert finished >= 1 and len(parse_recbole_output((workdir / "hyper_example.result").read_text())) == finished

    proc = run_hyper(workdir, *args)
    assert proc.returncode == 0, proc.stderr
    _assert_finished_once(workdir, db, 4)


def test_a_terminal_ctrl_c_while_the_workers_fork_server_imports_stops_cleanly(workdir: Path) -> None:
    """A terminal's Ctrl-C reaches every process of the foreground group: the driver, and the workers'
    fork server while it still imports torch (it starts before the plan). The driver stops as
    interrupted, and the server neither prints a traceback nor outlives it."""
    (workdir / "h.test").write_text("learning_rate choice [0.01, 0.001]\n")
    command = hyper_command(workdir, "--params_file", "h.test", "--epochs=2", "--workers", "2", "--no-mlflow",
                            f"--storage=sqlite:///{workdir / 's.db'}")
    driver = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=hyper_env(), start_new_session=True,  # its own group, as a terminal's job
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert driver.stderr is not None
    first = driver.stderr.readline()  # printed just after the fork server was started
    assert first.startswith("study '"), first
    time.sleep(0.5)
    os.killpg(driver.pid, signal.SIGINT)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130 and "Traceback" not in err, err
    deadline = time.time() + 15
    while time.time() < deadline and _group_alive(driver.pid):
        time.sleep(0.2)
    assert not _group_alive(driver.pid)  # the fork server (and multiprocessing's resource tracker) exited


def _group_alive(group: int) -> bool:
    """Whether a process of ``group`` still runs (a zombie waiting for init to reap it does not)."""
    for entry in Path("/proc").iterdir():
        fields = stat_fields(entry.name) if entry.name.isdigit() else None
        if fields is not None and int(fields[2]) == group and fields[0] != "Z":  # state, ppid, pgrp, ...
            return True
    return False


def test_workers_ignore_ctrl_c_when_their_driver_was_started_ignoring_it() -> None:
    """`nohup run_hyper.py ... &` in a script starts the driver with SIGINT ignored, and it tells its
    workers (forks of a server that ignores SIGINT, so they cannot tell from what they inherit). A worker
    that stopped on a SIGINT its driver ignores was replaced by the driver's next worker (found with
    bench/s3rec_two_workers.py): the worker now keeps ignoring it; SIGTERM (the driver's stop) always
    stops it. (A driver at SIGINT's default gets workers that stop on Ctrl-C: the ctrl_c tests above.)"""
    code = ("import signal; from tuner.backends.optuna.worker import _interrupt_once, install_interrupt_handlers, "
            "sigint_ignored; install_interrupt_handlers(sigint_ignored()); "
            "print(*(signal.getsignal(s) is _interrupt_once for s in (signal.SIGINT, signal.SIGTERM)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)).stdout.split()
    assert out == ["False", "True"]


def test_seeds_rerun_the_top_configs_with_distinct_seeds(workdir: Path) -> None:
    """Through the Optuna backend; test_ray's fresh-directory study runs the seed phase on Ray."""
    (workdir / "h.test").write_text("learning_rate choice [0.01, 0.002]\n")
    proc = run_hyper(workdir, "--params_file", "h.test", "--epochs=3", "--seeds", "3",
                     f"--storage=sqlite:///{workdir / 's.db'}", f"--mlflow-uri=sqlite:///{workdir / 'm.db'}",
                     "--workers", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((workdir / "seeds.csv").open()))
    assert len(rows) == 6 and all(r["state"] == "COMPLETE" for r in rows)  # 2 configs x 3 seeds, no more
    for lr in ("0.01", "0.002"):
        runs = [r for r in rows if r["learning_rate"] == lr]
        assert sorted(int(r["seed"]) for r in runs) == [2020, 2021, 2022]
        assert len({r["valid_mrr@10"] for r in runs}) > 1  # each seed trains differently: a real spread
    # seed 2020 is the search's own seed: each config's search trial is that run, not trained again
    import optuna

    storage = f"sqlite:///{workdir / 's.db'}"
    [seed_study] = [name for name in optuna.get_all_study_names(storage) if ":seeds-" in name]
    trials = optuna.load_study(study_name=seed_study, storage=storage).trials
    reused = [t for t in trials if t.user_attrs.get("reused_from") is not None]
    assert len(trials) == 6 and len(reused) == 2 and {t.params["seed"] for t in reused} == {2020}
    searched = {r["trial"]: r for r in csv.DictReader((workdir / "results.csv").open())}
    for trial in reused:
        origin = searched[str(trial.user_attrs["reused_from"])]
        row = next(r for r in rows if r["seed"] == "2020" and r["learning_rate"] == origin["learning_rate"])
        assert row["valid_mrr@10"] == origin["valid_mrr@10"] and row["test_mrr@10"] == origin["test_mrr@10"]
    summary = [line for line in proc.stdout.splitlines() if line.startswith(("1. ", "2. "))]
    assert len(summary) == 2 and all("± 0.0000," not in line and "seeds [2020, 2021, 2022]" in line
                                     for line in summary)
    # the means and spreads land on the main study's parent run too
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'm.db'}")
    parents = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
               if "mlflow.parentRunId" not in r.data.tags and ":seeds-" not in r.data.tags["study_name"]]
    assert len(parents) == 1
    metrics, best_lr = parents[0].data.metrics, parents[0].data.params["best.learning_rate"]
    tests = [float(r["test_mrr@10"]) for r in rows if r["learning_rate"] == best_lr]
    assert metrics["seeds/top1/test_mrr_at_10_mean"] == pytest.approx(statistics.mean(tests), abs=1e-6)
    assert metrics["seeds/top1/test_mrr_at_10_std"] == pytest.approx(statistics.stdev(tests), abs=1e-6)
    assert metrics["seeds/top1/n"] == 3 and "seeds/top2/valid_ndcg_at_10_mean" in metrics


def test_a_config_key_that_prefixes_a_flag_stays_a_config_key(workdir: Path) -> None:
    """RecBole's --seed=2021 is a config override, never an abbreviation of --seeds or --seeds-top."""
    from tuner.request import resolve

    (workdir / "h.test").write_text("learning_rate choice [0.01]\n")
    request = resolve(hyper_command(workdir, "--params_file", str(workdir / "h.test"), "--seed=2021", "--seeds", "2",
                                    "--no-mlflow")[2:])
    assert request.base["seed"] == 2021 and request.seeds == 2 and request.seeds_top == 3
    alone = resolve(hyper_command(workdir, "--params_file", str(workdir / "h.test"), "--seed=7", "--no-mlflow")[2:])
    assert alone.base["seed"] == 7 and alone.seeds == 0


@pytest.mark.parametrize(("flags", "named"), [
    (["--ray-address", "auto"], "--ray-address"),
    (["--cpus-per-trial", "2", "--gpus-per-trial", "0.5"], "--cpus-per-trial, --gpus-per-trial"),
    (["--ray-storage", "r", "--no-reuse-actors"], "--ray-storage, --no-reuse-actors"),
])
def test_ray_flags_without_tool_ray_are_refused(workdir: Path, flags: list[str], named: str) -> None:
    """They were ignored: a study meant for a cluster ran on this machine under Optuna."""
    from models.errors import SeqtuneError
    from tuner.request import resolve

    (workdir / "h.test").write_text("learning_rate choice [0.01]\n")
    args = hyper_command(workdir, "--params_file", str(workdir / "h.test"), "--no-mlflow", *flags)[2:]
    with pytest.raises(SeqtuneError, match=f"^{named}: Ray Tune's, but this study runs under optuna; add --tool ray$"):
        resolve(args)
    assert resolve([*args, "--tool", "ray"]).tool == "ray"


def test_durations() -> None:
    from models.errors import SeqtuneError
    from tuner.request import parse_duration

    assert [parse_duration(t) for t in ("90m", "2h", "1h30m", "45s", "1.5h", "1h0m30s")] == [
        5400, 7200, 5400, 45, 5400, 3630]
    for bad in ("", "90", "m", "1x", "0m", "1m1h"):
        with pytest.raises(SeqtuneError, match="--budget"):
            parse_duration(bad)


def test_the_budget_strategy_is_the_evidences(workdir: Path) -> None:
    """--budget takes its pruner from tuner/evidence.py: a grid (in random order), a sampled space, Ray;
    an explicit --pruner wins."""
    from tuner import evidence
    from tuner.request import resolve

    (workdir / "g.test").write_text("learning_rate choice [0.01, 0.001]\n")
    (workdir / "s.test").write_text("learning_rate loguniform -8,0\n")

    def pruner(space: str, *extra: str) -> tuple[str, str, bool]:
        request = resolve(hyper_command(workdir, "--params_file", str(workdir / space), "--budget", "1h",
                                        "--no-mlflow", *extra)[2:])
        return request.algo, request.pruner, request.grid_points is not None

    assert pruner("g.test") == ("grid", evidence.BUDGET_GRID_PRUNER, True)
    assert pruner("s.test") == ("tpe", evidence.BUDGET_SAMPLED_PRUNER, False)
    assert pruner("g.test", "--tool", "ray")[1] == "asha"
    assert pruner("g.test", "--pruner", "median")[1] == "median"


def test_a_budget_stops_the_study_and_the_same_command_continues_it(workdir: Path) -> None:
    """Run 1: a trial that cannot finish in 4 s is stopped at its next epoch and queued again (FAIL,
    with the reason); nothing is lost. Run 2, with a new budget: successive halving gives every grid
    point its first rung exactly once, and the study ends with each point once."""
    (workdir / "h.test").write_text(KILL_SPACE)
    common = ["--params_file", "h.test", f"--storage=sqlite:///{workdir / 's.db'}", "--study-name", "budget",
              "--no-mlflow", "--stopping_step=100000"]
    first = run_hyper(workdir, *common, "--epochs=100000", "--budget", "4s")
    assert first.returncode == 1, first.stderr  # no trial finished in 4 s: said, not hidden
    assert "budget spent: 4 trial(s) still to run" in first.stderr
    rows = study_rows(workdir / "s.db")
    assert [s for _, s, _ in rows].count("FAIL") == 1 and [s for _, s, _ in rows].count("WAITING") == 4
    listed = list(csv.DictReader((workdir / "results.csv").open()))
    stopped = [r for r in listed if r["state"] == "FAIL"]
    assert len(stopped) == 1 and stopped[0]["error"].startswith("stopped: the budget was spent")
    assert stopped[0]["best_valid_score"] and int(stopped[0]["epochs_run"]) > 0  # what it reached is kept
    assert all(r["best_valid_score"] == r["epochs_run"] == "" for r in listed if r["state"] == "WAITING")

    second = run_hyper(workdir, *common, "--epochs=3", "--budget", "10m")
    assert second.returncode == 0, second.stderr
    rows = study_rows(workdir / "s.db")
    ran = [tuple(sorted(p.items())) for _, s, p in rows if s in ("COMPLETE", "PRUNED")]
    assert len(ran) == 4 and len(set(ran)) == 4  # every point's first rung once, none twice
    assert "COMPLETE" in [s for _, s, _ in rows] and "WAITING" not in [s for _, s, _ in rows]
    assert "budget spent" not in second.stderr


def test_a_budget_counts_from_the_command_start(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan's measurement and the set-up before the study (KG vectors on a fresh machine: minutes)
    are in the budget: a study whose set-up took 58 of its 60 s gets the 2 s left, not 60 more."""
    from tuner import cli
    from tuner.request import resolve
    from tuner.trial import TrialState

    (workdir / "h.test").write_text(KILL_SPACE)
    monkeypatch.chdir(workdir)
    request = resolve(hyper_command(workdir, "--params_file", "h.test", "--no-mlflow", "--quiet", "--epochs=100000",
                                    "--stopping_step=100000", "--budget", "60s",
                                    f"--storage=sqlite:///{workdir / 's.db'}")[2:])
    study = cli.run_study(request, cli.make_plan(request), started=time.monotonic() - 58)
    assert study.seconds < 30  # without the set-up counted: 60 s of training
    states = [r.state for r in study.records]
    assert TrialState.COMPLETE not in states and TrialState.PRUNED not in states
    waiting = {tuple(sorted(r.params.items())) for r in study.records if r.state == TrialState.WAITING}
    assert len(waiting) == 4  # nothing lost: every point queued for the resume (a trial that started was stopped)


def test_a_storage_failure_mid_study_is_one_line_not_a_traceback(monkeypatch, capsys) -> None:
    """The database under a running study fails (seen: the SQLite file replaced under a worker). Optuna
    raises its own clean-up AssertionError on top of the storage error; the user gets one line naming the
    storage error, exit 1, and the news that the same command resumes. Anything else still raises."""
    import sqlite3

    import optuna
    from sqlalchemy.exc import OperationalError

    from tuner import cli

    def failing(request: object) -> None:
        try:
            try:
                cause = sqlite3.OperationalError("attempt to write a readonly database")
                raise OperationalError("UPDATE trials", {}, cause)
            except OperationalError as exc:
                raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from exc
        except optuna.exceptions.StorageInternalError:
            raise AssertionError("Should not reach.")  # noqa: B904  (as Optuna's _run_trial does)

    monkeypatch.setattr(cli, "resolve", lambda argv: argv)
    monkeypatch.setattr(cli, "tune", failing)
    assert cli.main(["--model", "GRU4Rec", "--params_file", "h.test"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "attempt to write a readonly database" in err and "resumes" in err

    def broken(request: object) -> None:
        raise ValueError("a bug, not the storage")

    monkeypatch.setattr(cli, "tune", broken)
    with pytest.raises(ValueError):
        cli.main(["--model", "GRU4Rec", "--params_file", "h.test"])
