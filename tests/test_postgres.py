"""Two run_hyper.py processes share one study on a real PostgreSQL: every grid point runs exactly once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

DB, USER, PASSWORD = "seqtune_test", "seqtune", "pw-never-shown-4f1c"


def _psql(sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["su", "postgres", "-c", f'psql -v ON_ERROR_STOP=1 -qAt -c "{sql}"'],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def postgres_url() -> str:
    """Debian's PostgreSQL 15 on 127.0.0.1:5432, installed and started when needed."""
    if not shutil.which("pg_ctlcluster"):
        subprocess.run(["apt-get", "install", "-y", "postgresql"], check=True, capture_output=True, timeout=900)
    status = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
    version = status.split()[0] if status.strip() else "15"
    if "online" not in status:
        subprocess.run(["pg_ctlcluster", version, "main", "start"], check=True, capture_output=True, timeout=120)
    for _ in range(60):
        if _psql("SELECT 1").returncode == 0:
            break
        time.sleep(0.5)
    if _psql(f"SELECT 1 FROM pg_roles WHERE rolname='{USER}'").stdout.strip() != "1":
        assert _psql(f"CREATE ROLE {USER} LOGIN").returncode == 0
    assert _psql(f"ALTER ROLE {USER} PASSWORD '{PASSWORD}'").returncode == 0  # a role left by an older run too
    _psql(f"DROP DATABASE IF EXISTS {DB}")
    created = _psql(f"CREATE DATABASE {DB} OWNER {USER}")
    assert created.returncode == 0, created.stderr
    return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:5432/{DB}"


def test_two_processes_one_study_every_point_once(workdir: Path, postgres_url: str) -> None:
    import optuna

    (workdir / "h.test").write_text("learning_rate choice [0.01, 0.005, 0.002, 0.001]\nhidden_size choice [8, 16]\n")
    command = [sys.executable, str(ROOT / "run_hyper.py"), "--model", "GRU4Rec", "--dataset", "toy",
               f"--data_path={workdir / 'data'}", "--embedding_size=8", "--show_progress=false", "--epochs=3",
               "--params_file", "h.test", "--storage", postgres_url, "--study-name", "shared", "--no-mlflow"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([*command, "--output_file", f"out{i}/hyper.result"], cwd=workdir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    url = postgres_url.replace("postgresql://", "postgresql+psycopg2://")
    trials = optuna.load_study(study_name="shared", storage=url).trials
    points = [tuple(sorted(t.params.items())) for t in trials]
    assert len(trials) == 8 and len(set(points)) == 8
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    workers = {t.user_attrs.get("worker") for t in trials}
    assert len(workers) == 2  # both processes took trials


def test_the_storage_password_is_nowhere_seqtune_writes(workdir: Path, postgres_url: str) -> None:
    """The printed plan, report.html, the result files and the MLflow parent run (its `storage` tag, the
    command) show the storage as postgresql://seqtune:***@...; the study itself opens with the password."""
    from mlflow.tracking import MlflowClient

    (workdir / "h.test").write_text("learning_rate choice [0.01, 0.001]\n")
    proc = subprocess.run([sys.executable, str(ROOT / "run_hyper.py"), "--model", "GRU4Rec", "--dataset", "toy",
                           f"--data_path={workdir / 'data'}", "--embedding_size=8", "--show_progress=false",
                           "--epochs=1", "--params_file", "h.test", "--storage", postgres_url, "--study-name",
                           "hidden", f"--mlflow-uri=sqlite:///{workdir / 'm.db'}"],
                          cwd=workdir, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert f"in postgresql://{USER}:***@127.0.0.1:5432/{DB}" in proc.stderr
    written = [p for p in workdir.rglob("*") if p.is_file() and p.suffix in (".html", ".result", ".csv", ".yaml")]
    assert any(p.name == "report.html" for p in written)
    for text in [proc.stdout, proc.stderr, *(p.read_text() for p in written)]:
        assert PASSWORD not in text
    client = MlflowClient(f"sqlite:///{workdir / 'm.db'}")
    runs = client.search_runs([client.get_experiment_by_name("GRU4Rec-toy").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.tags["storage"] == f"postgresql://{USER}:***@127.0.0.1:5432/{DB}"
    for run in runs:
        assert PASSWORD not in repr((run.data.tags, run.data.params))
