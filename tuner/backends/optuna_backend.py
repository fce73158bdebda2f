"""Optuna backend: samplers, pruners and storages from Optuna; trials run by worker processes.

Exactly-once scheduling: a grid is enqueued once (by the process that creates the study) as WAITING
trials, and a worker takes one by atomically moving it WAITING -> RUNNING, so two workers (or two
hosts on one PostgreSQL) never run the same point. Trials left RUNNING by a killed worker are
failed and re-enqueued: immediately when the dead process was on this host, through Optuna's
heartbeat otherwise.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import socket
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from models.errors import SeqtuneError
from models.utils import file_lock, to_plain
from tuner.backends.base import Backend, StudyPlan
from tuner.objective import Reporter, run_tracked_trial, warm_up
from tuner.reporting import FAILED, FINISHED, PRUNED, TrialRecord
from tuner.tracking.base import Tracker, open_tracker

HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 60
WORKER_ATTR = "seqtune:worker"  # host:pid of the process running the trial
RETRY_ATTR = "seqtune:retry_of"
SPACE_ATTR = "seqtune:space"
READY_ATTR = "seqtune:grid_ready"


def storage_url(url: str) -> str:
    """SQLAlchemy 2 reads a bare postgresql:// as psycopg 3; we ship psycopg2."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    if "://" not in url:  # a plain path means a local sqlite file
        return f"sqlite:///{Path(url).resolve()}"
    return url


def _retry_stale(study: Any, trial: Any) -> None:
    """A trial whose worker stopped sending heartbeats (another host died) runs again."""
    study.enqueue_trial(trial.params, user_attrs={RETRY_ATTR: trial.number})


def make_storage(url: str) -> Any:
    import optuna
    from optuna.storages import RDBStorage

    url = storage_url(url)
    engine_kwargs: dict[str, Any] = {}
    engine_kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(5):  # processes starting together race to create Optuna's tables: retry
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_SECONDS,
                                  grace_period=GRACE_SECONDS,
                                  heartbeat_stale_trial_callback=_retry_stale)
        except Exception as exc:  # noqa: BLE001 - a bad URL, a missing driver, a refused connection
            if attempt == 4 or "duplicate" not in str(exc).lower() and "already exists" not in str(exc).lower():
                raise SeqtuneError(f"cannot open study storage {url!r}: {str(exc).splitlines()[0]}") from None
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def lock_path(url: str) -> Path:
    """A lock file beside a local sqlite storage (the DB's own row locks cover PostgreSQL)."""
    url = storage_url(url)
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):] + ".lock")
    return Path(os.environ.get("SEQTUNE_CACHE", Path.home() / ".cache" / "seqtune")) / "study.lock"


def make_sampler(plan: StudyPlan) -> Any:
    import optuna

    if plan.algo == "tpe":
        return optuna.samplers.TPESampler(seed=plan.sampler_seed)
    return optuna.samplers.RandomSampler(seed=plan.sampler_seed)  # random, and grid (points come queued)


def make_pruner(plan: StudyPlan) -> Any:
    import optuna

    if plan.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if plan.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(plan.max_epochs, 3))
    return optuna.pruners.NopPruner()


def space_signature(plan: StudyPlan) -> dict[str, Any]:
    return {"model": plan.spec.model, "dataset": plan.spec.dataset,
            "space": {n: p.distribution.describe() for n, p in plan.space.parameters.items()}}


def open_study(plan: StudyPlan, create: bool) -> Any:
    """Create the study (and enqueue its grid) or load it; refuse a different space under one name."""
    import optuna

    storage = make_storage(plan.storage)
    direction = "maximize" if plan.direction_bigger else "minimize"
    created = False
    if create:
        try:
            study = optuna.create_study(study_name=plan.study_name, storage=storage, sampler=make_sampler(plan),
                                        pruner=make_pruner(plan), direction=direction)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            pass
    if not created:
        study = optuna.load_study(study_name=plan.study_name, storage=storage, sampler=make_sampler(plan),
                                  pruner=make_pruner(plan))
    signature = space_signature(plan)
    if created:
        study.set_user_attr(SPACE_ATTR, signature)
        if plan.algo == "grid":
            for params in plan.extra.get("points") or plan.space.grid():
                study.enqueue_trial(params)
        study.set_user_attr(READY_ATTR, True)
        return study
    deadline = time.monotonic() + 60
    while not study.user_attrs.get(READY_ATTR):  # the creator is still enqueueing the grid
        if time.monotonic() > deadline:
            raise SeqtuneError(f"study {plan.study_name!r} was never fully created; use a new --study-name")
        time.sleep(0.5)
        study = optuna.load_study(study_name=plan.study_name, storage=storage, sampler=make_sampler(plan),
                                  pruner=make_pruner(plan))
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored != signature:
        raise SeqtuneError(f"study {plan.study_name!r} in {plan.storage} was created for a different model, dataset "
                           "or search space; pick another --study-name")
    if study.direction.name.lower() != direction:
        raise SeqtuneError(f"study {plan.study_name!r} optimises in the other direction; pick another --study-name")
    return study


# -- scheduling ------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _requeue(study: Any, trial: Any, reason: str) -> None:
    """Fail a trial that will never finish and queue its parameters again."""
    from optuna.trial import TrialState

    storage = study._storage
    storage.set_trial_user_attr(trial._trial_id, "error", reason)
    if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
        study.enqueue_trial(trial.params, user_attrs={RETRY_ATTR: trial.number})


def reap_dead_trials(study: Any, lock: Path) -> int:
    """Retry RUNNING trials whose process is gone (same host now, others after the heartbeat grace)."""
    import optuna
    from optuna.trial import TrialState

    host = socket.gethostname()
    reaped = 0
    with file_lock(lock):
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = trial.system_attrs.get(WORKER_ATTR, "")
            owner_host, _, pid = owner.rpartition(":")
            if owner_host == host and pid.isdigit() and not _alive(int(pid)):
                _requeue(study, trial, f"worker {owner} died; retried")
                reaped += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # other hosts: heartbeat older than the grace period
    return reaped


def next_trial(study: Any, plan: StudyPlan, lock: Path) -> Any | None:
    """Take the next trial atomically, or None when the study has nothing left for this worker."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    with file_lock(lock):
        for waiting in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,)):
            if storage.set_trial_state_values(waiting._trial_id, state=TrialState.RUNNING):
                return optuna.trial.Trial(study, waiting._trial_id)
        if plan.algo == "grid":
            return None
        if count_trials(study.get_trials(deepcopy=False), include_running=True) >= plan.n_trials:
            return None
        return study.ask()


def has_work(study: Any, plan: StudyPlan) -> bool:
    """Whether a worker joining now would get a trial (then it is worth warming up)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return True
    return plan.algo != "grid" and count_trials(trials, include_running=True) < plan.n_trials


def count_trials(trials: list[Any], include_running: bool = False) -> int:
    """Trials that used up the budget: finished ones, minus failures that were queued again."""
    from optuna.trial import TrialState

    states = {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}
    if include_running:
        states.add(TrialState.RUNNING)
    retried = {t.user_attrs.get(RETRY_ATTR) for t in trials}
    return sum(1 for t in trials if t.state in states and not (t.state == TrialState.FAIL and t.number in retried))


class OptunaReporter(Reporter):
    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def report(self, epoch: int, valid_score: float, metrics: dict[str, float], train_loss: float) -> bool:
        self.trial.report(valid_score, epoch)
        return self.trial.should_prune()


@contextlib.contextmanager
def heartbeat(study: Any, trial: Any) -> Iterator[None]:
    storage = study._storage
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(Exception):
                storage.record_heartbeat(trial._trial_id)

    with contextlib.suppress(Exception):
        storage.record_heartbeat(trial._trial_id)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_one(study: Any, plan: StudyPlan, trial: Any) -> None:
    from optuna.trial import TrialState

    storage = study._storage
    storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
    tic = time.perf_counter()
    with heartbeat(study, trial):
        try:
            sampled = {name: p.distribution.suggest(trial, name) for name, p in plan.space.parameters.items()}
            params = plan.space.to_config_values(sampled)

            def keep_run_id(run_id: str) -> None:
                storage.set_trial_user_attr(trial._trial_id, "mlflow_run_id", run_id)

            outcome = run_tracked_trial(plan.spec, params, trial.number, OptunaReporter(trial),
                                        _tracker(plan), keep_run_id)
        except KeyboardInterrupt:
            _requeue(study, trial, "interrupted; retried on resume")
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of one trial is recorded, the study goes on
            message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            storage.set_trial_user_attr(trial._trial_id, "error", message)
            storage.set_trial_user_attr(trial._trial_id, "traceback", traceback.format_exc()[-4000:])
            storage.set_trial_user_attr(trial._trial_id, "seconds", round(time.perf_counter() - tic, 3))
            study.tell(trial, state=TrialState.FAIL)
            return
    for key, value in {**outcome.attrs(), "config_params": to_plain(params)}.items():
        storage.set_trial_user_attr(trial._trial_id, key, value)
    wall = time.perf_counter() - tic
    storage.set_trial_user_attr(trial._trial_id, "seconds", round(wall, 3))
    storage.set_trial_user_attr(trial._trial_id, "overhead_seconds",
                                round(wall - outcome.result.train_seconds - outcome.result.eval_seconds, 3))
    if outcome.pruned:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, outcome.result.best_valid_score)


_TRACKERS: dict[str, Tracker] = {}


def _tracker(plan: StudyPlan) -> Tracker:
    """One tracker (and MLflow client) per worker process."""
    key = repr(sorted(plan.tracker.items()))
    if key not in _TRACKERS:
        _TRACKERS[key] = open_tracker(plan.tracker)
    return _TRACKERS[key]


def worker_loop(plan: StudyPlan, deadline: float | None = None) -> int:
    """Run trials until the study has none left (or the deadline passes); returns trials run."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if plan.threads_per_worker > 0:
        import torch

        torch.set_num_threads(plan.threads_per_worker)
    study = open_study(plan, create=False)
    lock = lock_path(plan.storage)
    if has_work(study, plan):
        warm_up(plan.spec)
        _tracker(plan)  # the tracking client (MLflow's import) too
    ran = 0
    while deadline is None or time.time() < deadline:
        reap_dead_trials(study, lock)
        trial = next_trial(study, plan, lock)
        if trial is None:
            break
        run_one(study, plan, trial)
        ran += 1
    return ran


def _worker_entry(plan: StudyPlan, deadline: float | None) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        worker_loop(plan, deadline)
    except KeyboardInterrupt:
        pass
    except SeqtuneError as exc:
        print(f"error: {exc}", flush=True)
        raise SystemExit(2) from None


def collect_records(study: Any, plan: StudyPlan) -> list[TrialRecord]:
    from optuna.trial import TrialState

    state_names = {TrialState.COMPLETE: FINISHED, TrialState.PRUNED: PRUNED, TrialState.FAIL: FAILED}
    records = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        params = attrs.get("config_params")
        if params is None:
            try:
                params = plan.space.to_config_values(trial.params)
            except KeyError:
                params = dict(trial.params)
        valid = attrs.get("best_valid_result") or {}
        score = valid.get(plan.valid_metric.lower()) if valid else None
        records.append(TrialRecord(
            number=trial.number,
            state=state_names.get(trial.state, trial.state.name),
            params=params,
            best_valid_score=score,
            best_valid_result=valid,
            test_result=attrs.get("test_result") or {},
            seconds=attrs.get("seconds"),
            epochs_run=attrs.get("epochs_run"),
            error=attrs.get("error"),
            seed=params.get("seed") if isinstance(params, dict) else None,
            run_id=attrs.get("mlflow_run_id"),
        ))
    return records


class OptunaBackend(Backend):
    def run(self, plan: StudyPlan, progress: Any = None) -> list[TrialRecord]:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = open_study(plan, create=True)
        deadline = time.time() + plan.timeout if plan.timeout else None
        if plan.workers <= 1:
            poller = _ProgressPoller(study, plan, progress)
            poller.start()
            try:
                worker_loop(plan, deadline)
            finally:
                poller.stop()
        else:
            self._run_processes(study, plan, deadline, progress)
        return collect_records(study, plan)

    def collect(self, plan: StudyPlan) -> list[TrialRecord]:
        return collect_records(open_study(plan, create=False), plan)

    def prepare(self, plan: StudyPlan) -> None:
        """Create (or check and load) the study before anything else touches it."""
        open_study(plan, create=True)

    def get_attr(self, plan: StudyPlan, key: str) -> Any:
        return open_study(plan, create=False).user_attrs.get(key)

    def set_attr(self, plan: StudyPlan, key: str, value: Any) -> None:
        open_study(plan, create=False).set_user_attr(key, value)

    def plots(self, plan: StudyPlan, out_dir: Path) -> list[Path]:
        """Optimization history, parallel coordinates and parameter importances as PNG files."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import optuna.visualization.matplotlib as vis
        from optuna.importance import PedAnovaImportanceEvaluator

        study = open_study(plan, create=False)
        written = []
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, plot in (("optimization_history", vis.plot_optimization_history),
                           ("parallel_coordinate", vis.plot_parallel_coordinate),
                           # PED-ANOVA: milliseconds; fANOVA's forest (and scikit-learn's import) ~1 s
                           ("param_importances", partial(vis.plot_param_importances,
                                                         evaluator=PedAnovaImportanceEvaluator()))):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    axes = plot(study)
                figure = getattr(axes, "figure", None) or plt.gcf()
                path = out_dir / f"{name}.png"
                figure.savefig(path, dpi=90, bbox_inches="tight")
                plt.close("all")
                written.append(path)
            except Exception:  # noqa: BLE001 - e.g. importances need two finished trials
                plt.close("all")
        return written

    def _run_processes(self, study: Any, plan: StudyPlan, deadline: float | None, progress: Any) -> None:
        context = multiprocessing.get_context("spawn")
        processes = [context.Process(target=_worker_entry, args=(plan, deadline), daemon=False)
                     for _ in range(plan.workers)]
        for process in processes:
            process.start()
        poller = _ProgressPoller(study, plan, progress)
        poller.start()
        try:
            for process in processes:
                process.join()
        except KeyboardInterrupt:
            for process in processes:  # the terminal's SIGINT reached them too; make sure
                if process.is_alive():
                    os.kill(process.pid, signal.SIGINT)
            for process in processes:
                process.join(timeout=30)
                if process.is_alive():
                    process.kill()
            raise
        finally:
            poller.stop()
        codes = [p.exitcode for p in processes]
        if all(code == 2 for code in codes):
            raise SeqtuneError("every worker stopped on an error (see above)")


class _ProgressPoller:
    """Polls the storage once a second and feeds a progress callback (trials done, best, running)."""

    def __init__(self, study: Any, plan: StudyPlan, progress: Any) -> None:
        self.study, self.plan, self.progress = study, plan, progress
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        if self.progress is not None:
            self._thread.start()

    def stop(self) -> None:
        if self.progress is not None:
            self._stop.set()
            self._thread.join()
            self._poll()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            with contextlib.suppress(Exception):
                self._poll()

    def _poll(self) -> None:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        best = (max(values) if self.plan.direction_bigger else min(values)) if values else math.nan
        self.progress(count_trials(trials), best)
