"""The Optuna backend: ``--workers N`` processes (or the driver itself for one) running ``study.optimize``
over the shared study; the driver shows progress, and waits for trials that other hosts still run."""

from __future__ import annotations

import multiprocessing
import sys
import time
from multiprocessing.context import ForkServerContext, SpawnContext

from models.errors import SeqtuneError
from models.utils import file_lock
from tuner.backends.base import Backend, StudyPlan
from tuner.backends.optuna.records import snapshot
from tuner.backends.optuna.storage import StudyStore
from tuner.backends.optuna.worker import lock_path, run_worker, sigint_ignored, worker_process
from tuner.interrupts import report_if_stuck
from tuner.reporting.progress import ProgressCallback, ProgressPoller
from tuner.trial import TrialRecord, TrialState

# What every worker imports before its first trial: torch, the torch._dynamo its first optimizer
# imports, Optuna and the trainer (~6 s of one core), and MLflow when the study is tracked (~2 s).
# The first keeps a terminal's Ctrl-C during the others from killing the server (the driver stops
# anyway; the workers it forks set their own handlers).
WORKER_IMPORTS = ("tuner.backends.optuna.server_ignores_sigint", "torch", "torch._dynamo", "optuna", "models.trainer",
                  "tuner.backends.optuna.worker")
TRACKING_IMPORTS = ("mlflow.tracking", "tuner.tracking.mlflow_tracker")


def worker_context(tracking: bool = False) -> ForkServerContext | SpawnContext:
    """Workers are forks of one fork server per driver that has made these imports once, started while
    the driver still sets up (``start_worker_server``): each worker is ready at once instead of paying
    them again, and a later phase of the same command (``--seeds``, the leaderboard's next model) forks
    from the same server. The server only imports (no thread pool exists yet to break on fork) and exits
    with the driver; its forks see the environment the driver had when it started the server. Spawn
    where there is no fork server (Windows)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([*WORKER_IMPORTS, *(TRACKING_IMPORTS if tracking else ())])
    return context


def start_worker_server(tracking: bool) -> None:
    """Start the workers' fork server now (the CLI, before its plan), so that its imports run beside
    the driver's set-up; the first worker would start it otherwise."""
    from multiprocessing import forkserver

    if worker_context(tracking).get_start_method() == "forkserver":
        forkserver.ensure_running()


class OptunaBackend(Backend):
    def __init__(self, tracking: bool = False) -> None:
        self.tracking = tracking  # the workers will import MLflow: their fork server imports it first

    def run(self, plan: StudyPlan, progress: ProgressCallback | None = None) -> list[TrialRecord]:

        store = self.opened()
        deadline = time.time() + plan.timeout if plan.timeout else None
        with ProgressPoller(lambda: snapshot(store.trials(), plan), progress):
            while True:
                if plan.workers <= 1:
                    try:
                        run_worker(plan, deadline, store)
                    except KeyboardInterrupt:  # between trials: a trial claimed but not started yet
                        report_if_stuck()
                        store.retry_own("interrupted; queued again for the resume")
                        raise
                else:
                    self._run_processes(plan, deadline)
                if deadline is not None and time.time() >= deadline:
                    break
                if not wait_for_other_hosts(store, plan):
                    break
        return self.collect(plan)

    def _run_processes(self, plan: StudyPlan, deadline: float | None) -> None:
        context = worker_context(self.tracking)
        processes = [context.Process(target=worker_process, args=(plan, deadline, sigint_ignored()), daemon=False)
                     for _ in range(plan.workers)]
        for process in processes:
            process.start()
        try:
            for process in processes:
                process.join()
        except KeyboardInterrupt:
            report_if_stuck()
            for process in processes:  # a terminal's Ctrl-C reached them too; a signal sent to us alone did not
                if process.is_alive():
                    process.terminate()  # SIGTERM
            for process in processes:
                process.join(timeout=30)
                if process.is_alive():
                    process.kill()
                    process.join()
            with file_lock(lock_path(plan.storage)):
                self.opened().reap_dead()  # a worker killed before it could queue its trial again
            raise
        if all(p.exitcode == 2 for p in processes):
            raise SeqtuneError("every worker stopped on an error (see above)")


def wait_for_other_hosts(store: StudyStore, plan: StudyPlan, poll_seconds: float = 2.0) -> bool:
    """After this host's workers stop: while trials still run elsewhere, wait for them (they are never
    started twice). True when trials were queued again meanwhile (a host died), so workers should run."""
    announced = False
    while True:
        store.reap_dead()
        store.fail_stale()  # a host silent past the grace period: its trials are queued again
        trials = store.trials()
        if any(t.state.name == "WAITING" for t in trials):
            return True
        running = [t for t in trials if t.state.name == TrialState.RUNNING.value]
        if not running:
            return False
        if not announced:
            owners = sorted({str(t.user_attrs.get("worker", "?")) for t in running})
            print(f"waiting for {len(running)} trial(s) running on other workers ({', '.join(owners)}); "
                  f"a worker silent for {plan.grace_seconds}s is retried here", file=sys.stderr, flush=True)
            announced = True
        time.sleep(poll_seconds)
