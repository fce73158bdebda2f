"""Ray Tune backend: a thin adapter that schedules the shared objective on Ray over the same study.

Ray's ``OptunaSearch`` asks and tells through the study's own Optuna storage and name, so a Ray study
is an Optuna study: the grid comes from the same queue (each point once), a sampled space from the
same sampler, it resumes by running again on the same storage, and optuna-dashboard shows it. The
search space is a define-by-run function (our distributions' own ``suggest``) that also hands the
trainable its Optuna trial number; ``tune.with_parameters`` ships the spec, the parsed space and the
tracker handle once (nothing is re-parsed per trial). The trainable stores its ``TrialRecord`` in
the study like an Optuna worker does; ASHA (``--pruner asha``) stops weak trials.
"""

from __future__ import annotations

import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.errors import SeqtuneError
from tuner.backends.base import Backend, StudyPlan
from tuner.backends.optuna.records import remaining, snapshot
from tuner.backends.optuna.storage import WORKER_ATTR, StudyStore, make_sampler, storage_url, stored_trials, this_worker
from tuner.objective import Reporter, run_trial
from tuner.reporting.progress import ProgressCallback, ProgressPoller
from tuner.trial import TrialRecord, failure_message

if TYPE_CHECKING:
    from tuner.space import SearchSpace

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
SCORE = "valid_score"
FINAL = "final"  # set on the last report of a trial that trained to its end (others were stopped by ASHA)
NUMBER = "optuna_trial"  # the Optuna trial number, passed to the trainable in its config


def define_space(trial: Any, space: SearchSpace, driver: str) -> dict[str, Any]:
    """OptunaSearch's define-by-run space: sample (or take the queued point), and say who runs it."""
    trial.set_user_attr(WORKER_ATTR, driver)  # first: a driver that dies leaves its trials to be retried
    for name, param in space.parameters.items():
        param.distribution.suggest(trial, name)
    return {NUMBER: trial.number}


class RayReporter(Reporter):
    """Reports every epoch to Tune; ASHA may stop the trial after any of them, so the best validation
    result so far is kept in the study as it improves (a stopped trial still has its record)."""

    def __init__(self, store: StudyStore, number: int, bigger: bool) -> None:
        self.store, self.number, self.bigger = store, number, bigger
        self.best: float | None = None

    def report(self, epoch: int, valid_score: float, metrics: dict[str, float], train_loss: float) -> bool:
        from ray import tune

        if self.best is None or (valid_score > self.best if self.bigger else valid_score < self.best):
            self.best = valid_score
            self.store.set_attrs(self.number, {"best_valid_result": metrics, "best_epoch": epoch})
        self.store.set_attrs(self.number, {"epochs_run": epoch + 1})
        tune.report({SCORE: valid_score, "epoch": epoch + 1, "train_loss": train_loss,
                     **{f"valid/{k}": v for k, v in metrics.items()}})
        return False  # Ray's scheduler stops a trial itself


def asha_scheduler(plan: StudyPlan) -> Any:
    """Ray's ASHA for ``--pruner asha`` (None otherwise): every trial gets an epoch, then at epochs 2, 4,
    8, ... only the better half of those that reached it go on. bench/replay.py replays this scheduler."""
    if plan.pruner != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="epoch", metric=SCORE, mode="max" if plan.direction_bigger else "min",
                         max_t=max(plan.max_epochs, 2) + 1, grace_period=1, reduction_factor=2)


def ray_trial(config: dict[str, Any], plan: StudyPlan, threads: int) -> None:
    """One Ray trial: the shared objective, its record stored in the study, the final score reported."""
    from ray import tune

    from tuner.backends.optuna.worker import set_threads

    set_threads(threads)
    number = int(config[NUMBER])
    store = _actor_store(plan)
    params = plan.space.to_config_values({k: v for k, v in config.items() if k in plan.space.parameters})
    store.set_attrs(number, {"config_params": params})
    try:
        record = run_trial(plan.spec, params, number, RayReporter(store, number, plan.direction_bigger),
                           _actor_tracker(plan.tracker),
                           on_run=lambda run_id: store.set_attrs(number, {"run_id": run_id}))
    except Exception as exc:
        store.set_attrs(number, {"error": failure_message(exc)})
        raise
    store.set_attrs(number, record.attrs())
    tune.report({SCORE: record.best_valid_score, FINAL: 1.0, "epoch": (record.epochs_run or 0) + 1})


_ACTOR_CACHE: dict[str, Any] = {}


def _actor_store(plan: StudyPlan) -> StudyStore:
    """One storage connection per Ray actor (actors are reused between trials)."""
    key = f"store:{plan.storage}:{plan.study_name}"
    if key not in _ACTOR_CACHE:
        _ACTOR_CACHE[key] = StudyStore.open(plan, create=False, heartbeat=False)
    return _ACTOR_CACHE[key]


def _actor_tracker(handle: dict[str, Any]) -> Any:
    from tuner.tracking.base import open_tracker

    key = f"tracker:{sorted(handle.items())!r}"
    if key not in _ACTOR_CACHE:
        _ACTOR_CACHE[key] = open_tracker(handle)
    return _ACTOR_CACHE[key]


def study_search(plan: StudyPlan, store: StudyStore, driver: str) -> Any:
    """Ray's OptunaSearch over our study; a result without ``FINAL`` is a trial ASHA stopped: PRUNED."""
    from ray.tune.search.optuna import OptunaSearch

    class StudySearch(OptunaSearch):
        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            super().on_trial_complete(trial_id, result if result and result.get(FINAL) else None, error)

    return StudySearch(space=partial(define_space, space=plan.space, driver=driver), metric=SCORE,
                       mode="max" if plan.direction_bigger else "min", sampler=make_sampler(plan),
                       study_name=plan.study_name, storage=store.storage)


class RayBackend(Backend):
    def __init__(self, address: str | None = None, cpus_per_trial: float = 1, gpus_per_trial: float = 0,
                 storage_path: str | None = None, reuse_actors: bool = True) -> None:
        self.address = address
        self.cpus_per_trial = cpus_per_trial
        self.gpus_per_trial = gpus_per_trial
        self.storage_path = storage_path
        self.reuse_actors = reuse_actors
        self._started_here: bool | None = None  # whether this command started Ray (None: not connected yet)

    @property
    def uses_heartbeat(self) -> bool:
        return False  # OptunaSearch asks outside study.optimize; a dead driver's trials are reaped by pid

    def run(self, plan: StudyPlan, progress: ProgressCallback | None = None) -> list[TrialRecord]:
        import ray
        from ray import tune

        store = self.opened()
        store.reap_dead()
        todo = remaining(store.trials(), plan)
        if todo == 0:
            return self.collect(plan)
        local = self.connect()
        driver = this_worker()
        scheduler = asha_scheduler(plan)
        portable = _portable_plan(plan)
        trainable = tune.with_parameters(ray_trial, plan=portable, threads=max(1, int(self.cpus_per_trial)))
        root = Path(self.storage_path or Path.cwd() / "ray_results").resolve()  # Ray needs an absolute path
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}),
            tune_config=tune.TuneConfig(
                search_alg=study_search(plan, store, driver), scheduler=scheduler, num_samples=todo,
                max_concurrent_trials=plan.workers, time_budget_s=plan.timeout,
                # a trial reuses a finished one's process: no new interpreter, torch import, CUDA
                # context or dataset load per trial
                reuse_actors=self.reuse_actors),
            run_config=tune.RunConfig(name=f"{plan.study_name}-{os.getpid()}", storage_path=str(root), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
        started = time.time()
        try:
            # Ctrl-C: Tune's own handler ends the run at a safe point (never inside a storage call)
            with ProgressPoller(lambda: snapshot(store.trials(), plan), progress):
                tuner.fit()
        except KeyboardInterrupt:  # a second Ctrl-C while Tune stops
            if local:
                ray.shutdown()  # stop this driver's trials before they are queued again
            store.retry_own("interrupted; queued again for the resume")
            raise
        # trials Tune stopped (Ctrl-C, or the time limit) are still RUNNING in the study: queue them again
        timed_out = plan.timeout is not None and time.time() - started >= plan.timeout
        reason = "stopped: the budget was spent" if plan.budget else ("stopped at --timeout" if timed_out
                                                                       else "interrupted")
        if store.retry_own(f"{reason}; queued again for the resume") and not timed_out:
            raise KeyboardInterrupt
        return self.collect(plan)

    def prepare(self, plan: StudyPlan) -> None:
        # Ray first where there is work, so that a trial that fits nowhere is said before the study or its
        # tracking is written; a finished study (the same command again) reports without starting Ray
        stored = stored_trials(plan.storage, plan.study_name)
        if stored is None or remaining(stored, plan) or any(t.state.name == "RUNNING" for t in stored):
            self.connect()
        super().prepare(plan)

    def connect(self) -> bool:
        """Ray, started here (loopback only) or joined at ``address``, once; whether this command started
        it. A trial must fit the cluster's resources."""
        import ray

        if self._started_here is None:
            source, named = cluster_address(self.address)
            self._started_here = not ray.is_initialized() and named is None
            if not ray.is_initialized():
                for key, value in LOOPBACK_ENV.items():  # keep a local Ray's sockets on 127.0.0.1
                    os.environ.setdefault(key, value)
                extra: dict[str, Any] = ({"_node_ip_address": "127.0.0.1", "include_dashboard": False}
                                         if self._started_here else {})
                try:
                    ray.init(address=self.address, log_to_driver=False, configure_logging=False, **extra)
                except ConnectionError as exc:  # 'auto' with no cluster on this machine
                    raise SeqtuneError(f"{source} {named!r}: {str(exc).splitlines()[0]}") from None
            self.check_fits(ray.cluster_resources(), fixed=self._started_here)
        return self._started_here

    def check_fits(self, cluster: dict[str, float], fixed: bool) -> None:
        """A trial that asks for more CPUs or GPUs than the whole cluster has is never placed: Tune waits
        for it for ever. On a cluster this command started (fixed), that is an error; where Ray was given
        an address, an autoscaler may add a node that fits, so it is a warning."""
        asks = {"CPU": ("--cpus-per-trial", self.cpus_per_trial), "GPU": ("--gpus-per-trial", self.gpus_per_trial)}
        short = [f"{flag} {need:g}, the cluster has {cluster.get(kind, 0):g} {kind}(s)"
                 for kind, (flag, need) in asks.items() if need > cluster.get(kind, 0)]
        if not short:
            return
        if fixed:
            import ray

            ray.shutdown()
            raise SeqtuneError(f"no trial fits this Ray cluster: {'; '.join(short)}")
        print(f"warning: no trial fits the Ray cluster now ({'; '.join(short)}): they wait until a node that "
              "can hold one joins", file=sys.stderr)


RAY_CHECK_SECONDS = 10.0  # a head that does not accept a connection in this long is taken as absent


def cluster_address(address: str | None) -> tuple[str, str | None]:
    """Where Ray will be joined: (what named it, the address), or (..., None) for a cluster started here.
    ray.init(address=None) joins $RAY_ADDRESS when it is set (``ray job submit`` sets it for its driver)."""
    if address:
        return "--ray-address", address
    named = os.environ.get("RAY_ADDRESS") or None
    return "RAY_ADDRESS", None if named == "local" else named


def check_ray_address(address: str | None) -> None:
    """A cluster named by --ray-address (or $RAY_ADDRESS) accepts a connection, checked once before the
    study: ray.init waits for ever on a head that is not there (its GCS client retries without end).
    ``auto`` is Ray's own lookup of this machine's cluster; ray.init says at once when it finds none."""
    import socket
    import urllib.parse

    source, named = cluster_address(address)
    if named is None or named == "auto":
        return
    parts = urllib.parse.urlsplit(named if "://" in named else f"ray://{named}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or port is None:
        raise SeqtuneError(f"{source} {named!r}: expected HOST:PORT of a Ray head (ray start --head prints it), "
                           "ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, port), timeout=RAY_CHECK_SECONDS).close()
    except OSError as exc:
        reason = exc.strerror or f"no answer in {RAY_CHECK_SECONDS:.0f} s"
        raise SeqtuneError(f"{source} {named!r}: no Ray head answers at {host}:{port} ({reason}); expected the "
                           "address of a running cluster (ray start --head prints it) or auto") from None


def _portable_plan(plan: StudyPlan) -> StudyPlan:
    """The plan as Ray actors get it: the storage URL absolute (actors run in directories of their own)."""
    import dataclasses

    return dataclasses.replace(plan, storage=storage_url(plan.storage))
