"""Ray Tune backend: a local Ray, and a real head with `ray job submit` (stopped by its own pids)."""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.browser import free_port
from tests.conftest import ROOT, run_hyper
from tuner.reporting import parse_recbole_output

RUNTIME_ENV = '{"excludes": [".venv", ".git", "tests/screenshots", "ray_results", "*.db", "results"]}'
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def test_ray_from_a_fresh_directory_with_default_tracking_matches_optuna(workdir: Path) -> None:
    """No --mlflow-uri, no --storage, no --ray-storage: every Ray trial (each in a working directory
    of its own) logs to this directory's mlflow.db and study, and the numbers equal the Optuna backend's.
    The seed phase (--seeds) runs on Ray too."""
    (workdir / "h.test").write_text("learning_rate choice [0.01, 0.001]\n")
    fresh = workdir / "fresh"
    fresh.mkdir()
    ray = run_hyper(workdir, "--params_file", str(workdir / "h.test"), "--epochs=2", "--tool", "ray", "--workers", "2",
                    "--output_file", "ray/out.result", "--seeds", "2", cwd=fresh)
    assert ray.returncode == 0, ray.stderr[-3000:]
    seed_rows = list(csv.DictReader((fresh / "ray" / "seeds.csv").open()))
    assert len(seed_rows) == 4 and all(r["state"] == "COMPLETE" for r in seed_rows)  # 2 configs x 2 seeds
    for lr in ("0.01", "0.001"):
        runs = [r for r in seed_rows if r["learning_rate"] == lr]
        assert sorted(int(r["seed"]) for r in runs) == [2020, 2021] and len({r["valid_mrr@10"] for r in runs}) == 2
    # the same command again on the finished study reports without starting Ray: no session of a local
    # Ray is made in RAY_TMPDIR (where Ray keeps its sessions), and the results are the same
    import subprocess
    import tempfile

    from tests.conftest import hyper_command, hyper_env

    result = (fresh / "ray" / "out.result").read_text()
    with tempfile.TemporaryDirectory(dir="/tmp") as ray_tmp:  # short: Ray's socket paths live under it
        again = subprocess.run(hyper_command(workdir, "--params_file", str(workdir / "h.test"), "--epochs=2",
                                             "--tool", "ray", "--workers", "2", "--output_file", "ray/out.result",
                                             "--seeds", "2"),
                               cwd=fresh, capture_output=True, text=True, timeout=300,
                               env={**hyper_env(), "RAY_TMPDIR": ray_tmp})
        assert again.returncode == 0, again.stderr[-3000:]
        assert list(Path(ray_tmp).iterdir()) == []
    assert (fresh / "ray" / "out.result").read_text() == result
    optuna = run_hyper(workdir, "--params_file", "h.test", "--epochs=2", "--output_file", "optuna/out.result",
                       f"--storage=sqlite:///{workdir / 's.db'}", "--no-mlflow")
    assert optuna.returncode == 0, optuna.stderr
    ray_blocks = sorted(parse_recbole_output((fresh / "ray" / "out.result").read_text()), key=repr)
    optuna_blocks = sorted(parse_recbole_output((workdir / "optuna" / "out.result").read_text()), key=repr)
    assert ray_blocks == optuna_blocks and len(ray_blocks) == 2  # same objective, same numbers
    assert (fresh / "ray" / "results.csv").read_text().splitlines()[0] == \
        (workdir / "optuna" / "results.csv").read_text().splitlines()[0]
    client = MlflowClient(f"sqlite:///{fresh / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("GRU4Rec-toy").experiment_id])
    parents = [r for r in runs
               if "mlflow.parentRunId" not in r.data.tags and ":seeds-" not in r.data.tags["study_name"]]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == 2
    assert all(c.info.status == "FINISHED" and c.data.tags["state"] == "COMPLETE" for c in children)
    assert all(len(client.get_metric_history(c.info.run_id, "valid_mrr_at_10")) == 2 for c in children)
    import optuna as optuna_lib  # the Ray study is an Optuna study: optuna-dashboard shows it

    study = optuna_lib.load_study(study_name=parents[0].data.tags["study_name"],
                                  storage=f"sqlite:///{fresh / 'seqtune_studies.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]


def test_ray_job_submit_on_a_head(workdir: Path) -> None:
    ray_bin = Path(sys.executable).parent / "ray"
    temp_dir = Path(tempfile.mkdtemp(prefix="rayt", dir="/tmp"))  # short: Ray's socket paths are length-limited
    port, dashboard = free_port(), free_port()
    env = {**os.environ, **RAY_ENV}
    # its own session: every daemon the head forks shares this process group, stopped as one below
    start = subprocess.Popen([str(ray_bin), "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
                              "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--num-cpus", "2",
                              f"--temp-dir={temp_dir}", "--disable-usage-stats"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _, start_err = start.communicate(timeout=180)
    try:
        assert start.returncode == 0, start_err[-2000:]
        _wait_for_dashboard(dashboard, temp_dir)
        (workdir / "h.test").write_text("learning_rate choice [0.01, 0.001]\n")
        out = workdir / "job"
        submit = subprocess.run(
            [str(ray_bin), "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--working-dir", str(ROOT),
             "--runtime-env-json", RUNTIME_ENV, "--",
             sys.executable, "run_hyper.py", "--tool", "ray", "--ray-address", "auto", "--model", "GRU4Rec",
             "--dataset", "toy", f"--data_path={workdir / 'data'}", "--embedding_size=8", "--epochs=2",
             "--show_progress=false", "--params_file", str(workdir / "h.test"), "--output_file",
             str(out / "hyper.result"), f"--ray-storage={workdir / 'ray_results'}",
             f"--mlflow-uri=sqlite:///{workdir / 'mlflow.db'}", "--experiment", "job"],
            env=env, capture_output=True, text=True, timeout=900)
        assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-2000:]
        assert "succeeded" in submit.stdout.lower()
        blocks = parse_recbole_output((out / "hyper.result").read_text())
        assert sorted(b[0]["learning_rate"] for b in blocks) == ["0.001", "0.01"]
        client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name("job").experiment_id])
        assert sum("mlflow.parentRunId" in r.data.tags for r in runs) == 2
    finally:
        _stop_head(temp_dir, start.pid)


def _wait_for_dashboard(port: int, temp_dir: Path, timeout: float = 120.0) -> None:
    """`ray start` returns before the dashboard (which serves the job API) listens; wait for it, and
    fail with its own log when it never comes up (e.g. ray's `default` extra missing)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(1)
    logs = sorted(temp_dir.glob("session_*/logs/dashboard.*"))
    tail = "\n".join(f"{log}:\n{log.read_text(errors='replace')[-1500:]}" for log in logs)
    pytest.fail(f"Ray dashboard on 127.0.0.1:{port} not up after {timeout:.0f} s\n{tail}")


def _stop_head(temp_dir: Path, group: int) -> None:
    """Stop only this head's processes (`ray stop` would kill every Ray on the machine): its process
    group, plus anything whose command line names its temp dir."""
    listing = subprocess.run(["ps", "-eo", "pid=,pgid=,args=", "--width", "100000"], capture_output=True,
                             text=True).stdout
    pids = []
    for line in listing.splitlines():
        pid, pgid, args = line.split(None, 2) if len(line.split(None, 2)) == 3 else (*line.split(None, 1), "")
        if int(pid) != os.getpid() and (int(pgid) == group or str(temp_dir) in args):
            pids.append(int(pid))
    for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 15)):  # some of the head's daemons outwait a
        for pid in pids:                                               # SIGTERM by 15 s: nothing here to keep
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.time() + grace
        while time.time() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.5)
    shutil.rmtree(temp_dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("pruner", ["median"])
def test_ray_refuses_optuna_pruners(workdir: Path, pruner: str) -> None:
    (workdir / "h.test").write_text("learning_rate choice [0.01]\n")
    proc = run_hyper(workdir, "--params_file", "h.test", "--tool", "ray", "--pruner", pruner)
    assert proc.returncode == 2 and "use --pruner asha" in proc.stderr


def test_a_trial_larger_than_the_local_ray_cluster_is_one_line_before_anything_is_written(workdir: Path) -> None:
    """Tune waited for ever for a trial no node can hold (`--gpus-per-trial 1` on a CPU machine)."""
    (workdir / "h.test").write_text("learning_rate choice [0.01]\n")
    before = set(workdir.rglob("*"))
    proc = run_hyper(workdir, "--params_file", "h.test", "--tool", "ray", "--cpus-per-trial", "1000",
                     f"--storage=sqlite:///{workdir / 's.db'}", f"--mlflow-uri=sqlite:///{workdir / 'm.db'}",
                     timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert errors[0].startswith("error: no trial fits this Ray cluster: --cpus-per-trial 1000, the cluster has ")
    assert set(workdir.rglob("*")) == before  # no study, no MLflow run, no results


@pytest.mark.parametrize(("address", "message"), [
    ("127.0.0.1:{closed}", "--ray-address '127.0.0.1:{closed}': no Ray head answers at 127.0.0.1:{closed} "
                           "(Connection refused)"),
    ("ray://127.0.0.1:{closed}", "no Ray head answers at 127.0.0.1:{closed}"),
    ("headnode", "--ray-address 'headnode': expected HOST:PORT of a Ray head"),
    ("10.0.0.1:port", "expected HOST:PORT"),
])
@pytest.mark.timeout(120)  # the bug this guards against waits for ever
def test_a_ray_address_where_no_head_answers_is_one_line_before_anything_runs(
        workdir: Path, address: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """ray.init waited for ever on a head that is not there (minutes of GCS retries, then a kill)."""
    from tests.conftest import hyper_command, hyper_in_process

    closed = free_port()  # bound, then released: nothing listens there
    (workdir / "h.test").write_text("learning_rate choice [0.01]\n")
    before = set(workdir.rglob("*"))
    code, stderr = hyper_in_process(hyper_command(workdir, "--params_file", "h.test", "--tool", "ray",
                                                  "--ray-address", address.format(closed=closed)), workdir, capsys)
    assert code == 2 and stderr.strip().splitlines() == [stderr.strip()], stderr
    assert stderr.startswith("error: ") and message.format(closed=closed) in stderr, stderr
    assert set(workdir.rglob("*")) == before


def test_the_ray_address_check_passes_a_listening_head_and_reads_ray_address(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from models.errors import SeqtuneError
    from tuner.backends.ray_backend import check_ray_address, cluster_address

    with socket.socket() as head:
        head.bind(("127.0.0.1", 0))
        head.listen()
        port = head.getsockname()[1]
        check_ray_address(f"127.0.0.1:{port}")
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
        check_ray_address(None)
        assert cluster_address(None) == ("RAY_ADDRESS", f"127.0.0.1:{port}")  # joined, not started here
    with pytest.raises(SeqtuneError, match=rf"^RAY_ADDRESS '127.0.0.1:{port}': no Ray head answers"):
        check_ray_address(None)
    monkeypatch.setenv("RAY_ADDRESS", "local")
    assert cluster_address(None) == ("RAY_ADDRESS", None)
    check_ray_address("auto")  # Ray's own lookup, said by ray.init


def test_the_fit_check_names_what_is_short_and_only_warns_where_a_node_may_join(
        capsys: pytest.CaptureFixture[str]) -> None:
    from models.errors import SeqtuneError
    from tuner.backends.ray_backend import RayBackend

    cluster = {"CPU": 16.0, "GPU": 0.0, "memory": 1e9}
    RayBackend(cpus_per_trial=16, gpus_per_trial=0).check_fits(cluster, fixed=True)  # fits: nothing said
    with pytest.raises(SeqtuneError, match=r"^no trial fits this Ray cluster: --gpus-per-trial 0.25, the cluster "
                                           r"has 0 GPU\(s\)$"):
        RayBackend(gpus_per_trial=0.25).check_fits(cluster, fixed=True)
    RayBackend(cpus_per_trial=32).check_fits(cluster, fixed=False)
    assert "warning: no trial fits the Ray cluster now (--cpus-per-trial 32, the cluster has 16 CPU(s))" in (
        capsys.readouterr().err)


def test_asha_stops_weak_trials_and_keeps_their_results(workdir: Path) -> None:
    """One worker, so ASHA's decisions are deterministic: the good rate trains on, the hopeless ones stop
    at the first rung, marked PRUNED in the study with their best validation result so far."""
    (workdir / "h.test").write_text("learning_rate choice [0.01, 0.00001, 0.000001]\n")
    proc = run_hyper(workdir, "--params_file", "h.test", "--epochs=6", "--stopping_step=100", "--tool", "ray",
                     "--pruner", "asha", "--workers", "1", "--no-mlflow", f"--storage=sqlite:///{workdir / 's.db'}",
                     f"--ray-storage={workdir / 'ray'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["learning_rate"]: r for r in csv.DictReader((workdir / "results.csv").open())}
    assert rows["0.01"]["state"] == "COMPLETE" and rows["0.01"]["epochs_run"] == "6"
    for lr in ("1e-05", "1e-06"):
        assert rows[lr]["state"] == "PRUNED" and int(rows[lr]["epochs_run"]) < 6
        assert rows[lr]["valid_mrr@10"] != ""  # what it reached before ASHA stopped it
