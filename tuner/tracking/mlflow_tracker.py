"""MLflow tracking through ``MlflowClient`` (explicit run ids: safe in threads and worker processes).

Layout: one experiment per model and dataset (or ``--experiment``); one parent run per study
(tagged with the study's name, so a resumed study finds it and continues under it); one child run per trial with its
parameters (flattened, logged once), train loss and valid metrics per epoch (step = epoch), test
metrics, state and duration, and its resolved config as an artifact. Writes to a SQLite store are
retried when the database is locked; a tracking server is the recommended store for many writers.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tuner.redact import redact_credentials
from tuner.tracking.base import NullRun, Tracker, TrialRun
from tuner.trial import TrialRecord, TrialState

T = TypeVar("T")
DEFAULT_URI = "sqlite:///mlflow.db"
STUDY_TAG = "study_name"  # on the parent run only


def retry(action: Callable[[], T], attempts: int = 8) -> T:
    """SQLite allows one writer at a time: back off and retry on 'database is locked'."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - MLflow wraps the driver error in its own types
            if "locked" not in str(exc).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2**attempt * (1 + random.random()))
    raise AssertionError("unreachable")


SERVER_CHECK_SECONDS = 10.0
PROBE_SECONDS = 30.0  # while a store is down, how often a call may look whether it answers again
# MLflow's client retries a failed request 7 times with back-off (~4 min a call) by default. Once a study
# runs, a store that does not answer within ~15 s is taken as down (below), so each process asks for 3
# retries and a 30 s read timeout unless the user set them; a brief hiccup still passes.
CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
                   "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}  # the command prints the study's link
UNREACHABLE = ("max retries exceeded", "connection refused", "failed to establish", "timed out", "connection aborted",
               "remote end closed", "failed with error code 5", "unable to open database file")


class Outage:
    """Tracking never costs a trial. During a study a tracking call that fails is dropped with a warning
    and the trial trains on; a store that does not answer (refused, timed out, a 5xx) is marked down for
    this process, and every later call is skipped (no minutes of retries per epoch) until a probe, at most
    every PROBE_SECONDS, finds it answering again. The study's own results (its storage, results.csv,
    report.html) keep everything; ``MlflowTracker.backfill`` gives MLflow what it missed at the end of the
    run, or when the same command runs again once the store answers."""

    down_since: dict[str, float] = {}  # uri -> monotonic time of the last failure (this process)
    last_probe: dict[str, float] = {}
    warned: set[str] = set()

    @classmethod
    def call(cls, uri: str, what: str, action: Callable[[], object]) -> bool:
        """Run one tracking call (``what`` names it in a warning); False: it failed or was skipped."""
        if uri in cls.down_since and not cls.probe(uri):
            return False
        try:
            retry(action)
        except Exception as exc:  # noqa: BLE001 - any failure of tracking: the training goes on
            cls._failed(uri, what, exc)
            return False
        if cls.down_since.pop(uri, None) is not None:
            warn(f"MLflow at {redact_credentials(uri)} answers again: tracking resumed ({what}); the trials it "
                 "missed are filled in at the end", kind="note")
        return True

    @classmethod
    def fetch(cls, uri: str, what: str, action: Callable[[], T]) -> T | None:
        """``call`` for a call whose answer is needed: None when it failed or was skipped."""
        answer: list[T] = []
        return answer[0] if cls.call(uri, what, lambda: answer.append(action())) else None

    @classmethod
    def probe(cls, uri: str) -> bool:
        """Whether a store marked down answers again (False without asking within PROBE_SECONDS)."""
        now = time.monotonic()
        if now - cls.last_probe.get(uri, 0.0) < PROBE_SECONDS:
            return False
        cls.last_probe[uri] = now
        try:
            check_server(uri)  # seconds at most; a file store has no probe: the call itself tries
        except ConnectionError:
            return False
        return True

    @classmethod
    def _failed(cls, uri: str, what: str, exc: BaseException) -> None:
        reason = redact_credentials(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        if any(marker in str(exc).lower() for marker in UNREACHABLE):
            first = uri not in cls.down_since
            cls.down_since[uri] = cls.last_probe[uri] = time.monotonic()
            if first:
                warn(f"MLflow at {redact_credentials(uri)} does not answer ({what}: {reason[:200]}); training goes "
                     f"on, tracking resumes when it answers (looked at every {PROBE_SECONDS:.0f} s); what it "
                     "missed is filled in at the end")
        elif reason not in cls.warned:
            cls.warned.add(reason)
            warn(f"MLflow refused {what} ({reason[:300]}); training goes on")


def warn(message: str, kind: str = "warning") -> None:
    print(f"{kind}: {message}", file=sys.stderr, flush=True)


def check_server(uri: str) -> None:
    """An http(s) tracking server answers at all (any HTTP status will do), checked once before the
    study: MLflow's own client retries a refused connection with back-off for ~4 min before it gives up,
    which a typo in --mlflow-uri should not cost. Failures during the study keep MLflow's retries."""
    import urllib.error
    import urllib.parse
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return
    parts = urllib.parse.urlsplit(uri)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")  # no user:password
    health = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    try:
        urllib.request.urlopen(health, timeout=SERVER_CHECK_SECONDS).close()
    except urllib.error.HTTPError:
        return  # it answered: a proxy's 404 or an auth challenge is for MLflow's client to handle
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectionError(f"no server answers ({reason})") from None


def metric_name(key: str) -> str:
    """MLflow refuses '@' in names: recall@10 -> recall_at_10."""
    return key.replace("@", "_at_")


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:6000]
    return flat


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URI (None for servers and in-memory databases)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri[len(prefix):] in ("", ":memory:"):
        return None
    return Path(uri[len(prefix):]).expanduser()


def prepare_sqlite_store(uri: str) -> None:
    """Give a new SQLite store MLflow's schema by copying a migrated empty database.

    MLflow builds a fresh store by running its whole alembic migration chain (seconds, every new
    mlflow.db). The chain's result depends only on MLflow's version, so it runs once per version into
    a cached template; its default experiment (whose artifact path names the directory it was made in)
    is removed, and MLflow recreates it for the real location when it opens the copy.
    """
    target = sqlite_file(uri)
    if target is None or target.exists():
        return
    import sqlite3

    import mlflow

    from models.data.datasets import cache_root
    from models.utils import atomic_path, file_lock

    template = cache_root() / "mlflow" / f"schema-{mlflow.__version__}.db"
    with file_lock(template.with_suffix(".lock")):
        if not template.exists():
            with atomic_path(template) as tmp:
                tmp.unlink()
                from mlflow.tracking import MlflowClient

                MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments()  # runs the migrations
                with contextlib.closing(sqlite3.connect(tmp)) as db:
                    db.execute("DELETE FROM experiment_tags WHERE experiment_id = 0")
                    db.execute("DELETE FROM experiments WHERE experiment_id = 0")
                    db.commit()
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.with_name(f".{target.name}.lock")):
        if not target.exists():
            with atomic_path(target) as tmp:
                shutil.copyfile(template, tmp)


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parents[2]).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def log_in_batches(client: Any, uri: str, what: str, run_id: str, metrics: list[Any],
                   tags: Sequence[Any] = ()) -> bool:
    """Metrics (and tags) on one run, in batches MLflow accepts (at most 1000 metrics each); False: a
    batch failed or was skipped (Outage)."""
    return all(Outage.call(uri, what, partial(client.log_batch, run_id, metrics=metrics[start:start + 900],
                                              tags=list(tags)))
               for start in range(0, len(metrics), 900))


def epoch_metrics(epoch: int, train_loss: float | None, valid: dict[str, float], now: int) -> list[Any]:
    from mlflow.entities import Metric

    loss = [] if train_loss is None else [Metric("train_loss", float(train_loss), now, epoch)]
    return [*loss, *(Metric(f"valid_{metric_name(k)}", float(v), now, epoch) for k, v in valid.items())]


class MlflowRun(TrialRun):
    run_id: str  # always one: a run that could not be created is a NullRun

    def __init__(self, client: Any, run_id: str, uri: str) -> None:
        self.client = client
        self.run_id = run_id
        self.uri = uri

    def log_epoch(self, epoch: int, train_loss: float, valid: dict[str, float]) -> None:
        metrics = epoch_metrics(epoch, train_loss, valid, int(time.time() * 1000))
        Outage.call(self.uri, f"epoch {epoch}'s metrics", lambda: self.client.log_batch(self.run_id, metrics=metrics))

    def log_curve(self, curve: Sequence[dict[str, Any]]) -> bool:
        """Epochs of a record's curve at once (a backfill), in batches MLflow accepts."""
        now = int(time.time() * 1000)
        metrics = [m for e in curve
                   for m in epoch_metrics(e["epoch"], e.get("train_loss"), e.get("valid_result") or {}, now)]
        return log_in_batches(self.client, self.uri, "a trial's curve", self.run_id, metrics)

    def finish(self, state: TrialState, summary: dict[str, Any],
               artifacts: dict[str, Path | str] | None = None) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric(f"test_{metric_name(k)}", float(v), now, 0)
                   for k, v in (summary.get("test_result") or {}).items()]
        metrics += [Metric(f"best_valid_{metric_name(k)}", float(v), now, 0)
                    for k, v in (summary.get("best_valid_result") or {}).items()]
        for key in ("seconds", "epochs_run", "best_epoch"):
            if summary.get(key) is not None:
                metrics.append(Metric(key, float(summary[key]), now, 0))
        tags = [RunTag("state", state.value)]
        if summary.get("error"):
            tags.append(RunTag("error", str(summary["error"])[:5000]))
        Outage.call(self.uri, "a trial's results",
                    partial(self.client.log_batch, self.run_id, metrics=metrics, tags=tags))
        for name, content in (artifacts or {}).items():
            if isinstance(content, Path):
                Outage.call(self.uri, f"artifact {name}", partial(self.client.log_artifact, self.run_id, str(content)))
            else:
                Outage.call(self.uri, f"artifact {name}", partial(self.client.log_text, self.run_id, content, name))
        Outage.call(self.uri, "a trial's end", lambda: self.client.set_terminated(self.run_id, state.mlflow_status))


PARENT = "the study's parent run"  # what a warning names
VIEW_KEY = "seqtune"  # the experiment's shared view (MLflow UI: #/experiments/<id>/runs?viewStateShareKey=seqtune)
BEST_SO_FAR = "best_so_far_valid_{}"  # the parent's anytime curve: step = trials finished
WALL = "wall_seconds"  # the parent's: the study's wall time over every command that ran it


class MlflowTracker(Tracker):
    def __init__(self, uri: str, experiment_id: str, parent_run_id: str) -> None:
        from mlflow.tracking import MlflowClient

        for key, value in CLIENT_DEFAULTS.items():
            os.environ.setdefault(key, value)
        self.uri = uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.client = MlflowClient(tracking_uri=uri)
        self._curve_logged: dict[str, int] = {}  # the best-so-far steps already on the parent

    @staticmethod
    def start_study(uri: str, experiment: str, study_name: str, tags: dict[str, str],
                    artifacts: dict[str, str]) -> MlflowTracker:
        """Driver side: get or create the experiment, and the study's parent run (found again by its
        ``study_name`` tag when the study resumes)."""
        from mlflow.tracking import MlflowClient

        check_server(uri)
        prepare_sqlite_store(uri)
        client = MlflowClient(tracking_uri=uri)
        found = retry(lambda: client.get_experiment_by_name(experiment))
        experiment_id = found.experiment_id if found else retry(lambda: client.create_experiment(experiment))
        parent_run_id = find_study_run(client, experiment_id, study_name)
        if parent_run_id is None:
            commit = git_commit()
            all_tags = {**tags, STUDY_TAG: study_name, **({"git_commit": commit} if commit else {})}
            run = retry(lambda: client.create_run(experiment_id, run_name=study_name, tags=all_tags))
            parent_run_id = run.info.run_id
            for name, text in artifacts.items():
                retry(partial(client.log_text, parent_run_id, text, name))
            return MlflowTracker(uri, experiment_id, parent_run_id)
        retry(lambda: client.update_run(parent_run_id, status="RUNNING"))
        return MlflowTracker(uri, experiment_id, parent_run_id)

    def share_view(self, valid_metric: str, params: Sequence[str]) -> None:
        """The experiment's shared view: the runs table with the study's columns selected (the parent row
        shows the best valid and test metric, the counts and the best parameters; a trial's row its own),
        so the link opens on the numbers without a click. Stored as MLflow's own shared-view tag."""
        metric = metric_name(valid_metric.lower())
        columns = [f"metrics.`{key}`" for key in (f"best_valid_{metric}", f"test_{metric}", "trials_complete",
                                                  "trials_pruned", "trials_fail", WALL, "epochs_run")]
        columns += [f"params.`best.{name}`" for name in params] + [f"params.`{name}`" for name in params]
        state = json.dumps({"selectedColumns": columns})
        retry(lambda: self.client.set_experiment_tag(self.experiment_id, f"mlflow.sharedViewState.{VIEW_KEY}", state))

    def view_url(self) -> str:
        """Where the study reads at a glance: the experiment's shared view in the MLflow UI (a local store's
        UI is ``make mlflow-ui``: 127.0.0.1:5000)."""
        base = self.uri.rstrip("/") if self.uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
        return f"{base}/#/experiments/{self.experiment_id}/runs?viewStateShareKey={VIEW_KEY}"

    @staticmethod
    def from_handle(handle: dict[str, Any]) -> MlflowTracker:
        return MlflowTracker(handle["uri"], handle["experiment_id"], handle["parent_run_id"])

    def handle(self) -> dict[str, Any]:
        return {"kind": "mlflow", "uri": self.uri, "experiment_id": self.experiment_id,
                "parent_run_id": self.parent_run_id}

    def start_trial(self, number: int, params: dict[str, Any], config: dict[str, Any]) -> TrialRun:
        from mlflow.entities import Param

        tags = {"mlflow.parentRunId": self.parent_run_id, "trial_number": str(number)}
        what = f"trial {number}'s run"
        run = Outage.fetch(self.uri, what, partial(self.client.create_run, self.experiment_id,
                                                   run_name=f"trial-{number}", tags=tags))
        if run is None:
            return NullRun()  # the store is down: this trial trains untracked
        run_id = run.info.run_id
        flat = {**flatten(params), "trial_number": str(number)}  # a column of the runs table
        Outage.call(self.uri, what, partial(self.client.log_batch, run_id,
                                            params=[Param(k, v) for k, v in flat.items()]))
        Outage.call(self.uri, what, partial(self.client.log_text, run_id, yaml.safe_dump(config, sort_keys=False),
                                            "config.yaml"))
        return MlflowRun(self.client, run_id, self.uri)

    def backfill(self, records: Sequence[TrialRecord], config_of: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Finished trials whose tracking a down store missed: a trial with no run gets one now, a run
        left RUNNING gets the epochs it lacks and its end (a killed worker's too). One search of the
        parent's children (skipped while the store is down), then calls only for what is missing."""
        quoted = self.parent_run_id.replace("'", "")
        runs = Outage.fetch(self.uri, PARENT, partial(self.client.search_runs, [self.experiment_id],
                                                      filter_string=f"tags.`mlflow.parentRunId` = '{quoted}'",
                                                      max_results=50000))
        if runs is None:
            return
        by_id = {run.info.run_id: run for run in runs}
        by_number = {run.data.tags.get("trial_number"): run for run in runs}
        for record in records:
            found = by_id.get(record.run_id or "") or by_number.get(str(record.number))
            if not record.state.finished or (found is not None and found.info.status != "RUNNING"):
                continue
            if found is None and (record.run_id or record.reused_from is not None):
                continue  # tracked where it ran (a seed study's reused trial: under the main study)
            if found is None:
                try:
                    config = config_of(record.params)
                except Exception:  # noqa: BLE001 - a config that no longer resolves: the run goes without it
                    config = {}
                started = self.start_trial(record.number, record.params, config)
                if not isinstance(started, MlflowRun):
                    return  # down again
                run, logged = started, set()
            else:
                run_id = found.info.run_id
                run = MlflowRun(self.client, run_id, self.uri)
                history = Outage.fetch(self.uri, f"trial {record.number}'s run",
                                       partial(self.client.get_metric_history, run_id, "train_loss"))
                if history is None:
                    return
                logged = {m.step for m in history}
            if run.log_curve([e for e in record.curve or [] if e["epoch"] not in logged]):
                run.finish(record.state, record.attrs())

    def log_trial_artifact(self, run_id: str, path: Path) -> None:
        Outage.call(self.uri, f"artifact {path.name}", lambda: self.client.log_artifact(run_id, str(path)))

    def log_study(self, records: Sequence[TrialRecord], bigger: bool, wall_seconds: float | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        from tuner.reporting import best_so_far, best_trial, state_counts

        if not records:
            return
        now, run_id = int(time.time() * 1000), self.parent_run_id
        step = sum(r.state.finished for r in records)  # the latest value of every metric is the current one
        metrics = [Metric(f"trials_{state.value.lower()}", float(n), now, step)
                   for state, n in state_counts(records).items()]
        curve_key = BEST_SO_FAR.format(metric_name(records[0].valid_metric))
        if curve_key not in self._curve_logged:
            history = Outage.fetch(self.uri, PARENT, lambda: self.client.get_metric_history(run_id, curve_key))
            if history is None:
                return  # the store is down: the next update brings the parent up to date
            self._curve_logged[curve_key] = max((m.step for m in history), default=0)
        new_points = [p for p in best_so_far(records, bigger) if p[0] > self._curve_logged[curve_key]]
        metrics += [Metric(curve_key, score, int(when * 1000), count) for count, when, score in new_points]
        best = best_trial(records, bigger)
        tags: list[RunTag] = []
        if best is not None:
            metrics += [Metric(f"best_valid_{metric_name(k)}", float(v), now, step)
                        for k, v in best.best_valid_result.items()]
            metrics += [Metric(f"test_{metric_name(k)}", float(v), now, step) for k, v in best.test_result.items()]
            best_params = {f"best.{k}": v for k, v in flatten(best.params).items()}
            tags = [RunTag("best_trial", str(best.number)), *(RunTag(k, v) for k, v in best_params.items())]
        if wall_seconds is not None:
            metrics.append(Metric(WALL, wall_seconds, now, step))
        if not self._log_metrics(metrics, tags):
            return
        if new_points:
            self._curve_logged[curve_key] = new_points[-1][0]
        done = wall_seconds is not None and not any(r.state in (TrialState.WAITING, TrialState.RUNNING)
                                                    for r in records)
        if best is not None and done and self.uri not in Outage.down_since:
            # parameters cannot change ("changing param values is not allowed"), so they are logged once the
            # study has run every trial; until then, and for a later better trial, the tags say it
            with contextlib.suppress(Exception):
                retry(lambda: self.client.log_batch(run_id, params=[Param(k, v) for k, v in best_params.items()]))

    def log_metrics(self, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._log_metrics([Metric(metric_name(k), float(v), now, 0) for k, v in metrics.items()])

    def _log_metrics(self, metrics: list[Any], tags: Sequence[Any] = ()) -> bool:
        return log_in_batches(self.client, self.uri, PARENT, self.parent_run_id, metrics, tags)

    def finish_study(self, artifacts: dict[str, list[Path]]) -> None:
        for folder, paths in artifacts.items():
            for path in paths:
                if path.is_file():
                    Outage.call(self.uri, f"the study's {path.name}",
                                partial(self.client.log_artifact, self.parent_run_id, str(path), folder or None))
        if not Outage.call(self.uri, PARENT, lambda: self.client.set_terminated(self.parent_run_id, "FINISHED")):
            warn("the study's MLflow parent run is not up to date; the same command brings it up to date once "
                 "MLflow answers (a finished study trains nothing again)")


def tracking_uri(cli_value: str | None) -> str:
    """The store every process of a study logs to: a relative sqlite path is made absolute here, in the
    driver, because Ray runs each trial in a working directory of its own."""
    uri = cli_value or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    path = sqlite_file(uri)
    return f"sqlite:///{path.resolve()}" if path is not None else uri


def find_study_run(client: Any, experiment_id: str, study_name: str) -> str | None:
    """The parent run of a study, by its tag (the oldest, should two drivers have raced to create it)."""
    quoted = study_name.replace("\\", "\\\\").replace("'", "\\'")
    runs = retry(lambda: client.search_runs([experiment_id], filter_string=f"tags.{STUDY_TAG} = '{quoted}'",
                                            order_by=["attributes.start_time ASC"], max_results=1))
    return runs[0].info.run_id if runs else None
