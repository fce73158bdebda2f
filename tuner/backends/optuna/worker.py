"""A worker: ``study.optimize`` over the shared study with the one trial objective.

Optuna's own machinery does the work: ``optimize`` with ``catch`` (a failing trial is recorded FAIL
and the study goes on), ``MaxTrialsCallback`` (a sampled study's budget), ``timeout``, the storage's
heartbeat thread and its stale-trial retry. What Optuna lacks is kept in ``ClaimingStudy.ask``: a
worker takes only queued trials (or new ones while the budget has room, counted under a host lock so
parallel workers do not overshoot), retries the dead workers of this host at once, and stops when the
grid is exhausted instead of sampling a point twice.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.data.datasets import cache_root
from models.errors import SeqtuneError
from models.utils import file_lock
from tuner.backends.optuna import rungs
from tuner.backends.optuna.records import counted, remaining
from tuner.backends.optuna.storage import (
    WORKER_ATTR,
    StudyStore,
    make_pruner,
    make_sampler,
    storage_url,
    this_worker,
)
from tuner.interrupts import redeliver_swallowed_interrupts
from tuner.objective import Reporter, run_trial, warm_up
from tuner.trial import TrialState, failure_message

if TYPE_CHECKING:
    import optuna

    from tuner.backends.base import StudyPlan
    from tuner.tracking.base import Tracker


class NothingToRun(Exception):
    """Raised by ``ClaimingStudy.ask``: no queued trial and no room for a new one (ends ``optimize``)."""


def lock_path(url: str) -> Path:
    """A lock file beside a local sqlite storage; one per user cache for a server storage (this host's
    workers then claim one at a time, other hosts rely on the database's atomic WAITING -> RUNNING)."""
    url = storage_url(url)
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):] + ".lock")
    return cache_root() / "study.lock"


POLL_SECONDS = 1.0  # a worker waiting for a rung to finish (sync-halving) looks again this often


def claiming_store(store: StudyStore, plan: StudyPlan, worker: str, deadline: float | None = None) -> StudyStore:
    """``store`` reading through a study whose ``ask`` claims trials as described above. Under
    sync-halving (``rungs``) a worker that finds nothing queued promotes the next rung once the last
    one is over, and waits (until ``deadline``) while other trials of the rung still run."""
    import optuna

    synchronous = plan.pruner == rungs.PRUNER

    class ClaimingStudy(optuna.Study):
        def ask(self, fixed_distributions: dict[str, Any] | None = None) -> optuna.Trial:
            assert not fixed_distributions, "optimize() asks without fixed distributions"
            while True:
                with signals_deferred(), file_lock(lock_path(plan.storage)):
                    claiming.reap_dead()
                    for waiting in claiming.trials([TrialState.WAITING]):
                        if claiming.claim(waiting.number, worker):
                            return optuna.Trial(self, claiming.trial_id(waiting.number))
                    if synchronous and rungs.promote(claiming, plan):
                        continue  # the next rung is queued: claim from it
                    if not (synchronous and claiming.trials([TrialState.RUNNING])):
                        if plan.algo == "grid" or counted(claiming.trials(), include_running=True) >= plan.n_trials:
                            raise NothingToRun
                        trial = super().ask()
                        trial.set_user_attr(WORKER_ATTR, worker)
                        return trial
                if deadline is not None and time.time() >= deadline:
                    raise NothingToRun
                claiming.fail_stale()  # a worker of another host silent past the grace period: retried
                time.sleep(POLL_SECONDS)

    claiming = store.using(ClaimingStudy(study_name=plan.study_name, storage=store.storage,
                                         sampler=make_sampler(plan), pruner=make_pruner(plan)))
    return claiming


@contextlib.contextmanager
def signals_deferred(keep: list[int] | None = None) -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends. A claim is two storage writes (RUNNING, then the
    owner); an interrupt between them would leave a RUNNING trial that no one owns, so neither this
    process's cleanup nor the next run's reaping would queue it again. Delivered on exit, the signal
    interrupts a trial that has its owner. Held at the handlers, not with the thread's signal mask: a
    signal sent to the process may reach any of its threads (Optuna's heartbeat, the progress poller),
    and an interrupt re-delivered by ``tuner.interrupts`` never passes the mask. With ``keep``, the held
    signals go there instead, for the caller to deliver at a point of its choosing."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    held: list[int] = []
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum, handler in before.items():
        if handler not in (signal.SIG_IGN, None):  # None: a handler not set from Python, left alone
            signal.signal(signum, lambda number, frame: held.append(number))
    try:
        yield
    finally:
        for signum, handler in before.items():
            if handler is not None:
                signal.signal(signum, handler)
        if keep is not None:
            keep.extend(held)
            held.clear()
        for number in held:
            signal.raise_signal(number)  # its own handler runs now, after the block


HELD_AFTER_TELL: list[int] = []  # signals that came while Optuna wrote a trial's end, not yet delivered


def defer_signals_in_tell() -> None:
    """Optuna records a trial's end (``_tell_with_warning``: its state, values, then the end time) in
    several storage writes after the objective returns. A Ctrl-C landing in between leaves the trial
    RUNNING; one raised as the call returns leaves ``_run_trial``'s ``finally`` reading a state it never
    assigned. Either way an UnboundLocalError replaces the interrupt, and the worker dies with a traceback.
    So a signal that comes during the tell is kept until the trial's end is written and ``_run_trial``
    has returned: ``deliver_held_signals`` (an optimize callback, and run_worker's exit) delivers it, and
    it stops the worker as usual."""
    from optuna.study import _optimize

    tell = _optimize._tell_with_warning
    if getattr(tell, "signals_deferred", False):
        return

    def deferred(*args: Any, **kwargs: Any) -> Any:
        with signals_deferred(keep=HELD_AFTER_TELL):
            return tell(*args, **kwargs)

    deferred.signals_deferred = True  # type: ignore[attr-defined]
    _optimize._tell_with_warning = deferred


def deliver_held_signals(*_: Any) -> None:
    """Deliver what ``defer_signals_in_tell`` kept. Optuna calls its callbacks once ``_run_trial`` has
    returned and before it asks for the next trial: the first safe point after a tell."""
    while HELD_AFTER_TELL:
        signal.raise_signal(HELD_AFTER_TELL.pop(0))


class BudgetSpent(Exception):
    """A trial stopped at the end of ``--budget`` (recorded FAIL; its copy waits for the resume)."""


class OptunaReporter(Reporter):
    """Optuna's pruner, the budget's end (``stop_at``) and a sync-halving rung's end (``rung_end``
    epochs) stop a trial; the last two keep its fit's state, for the trial that continues it."""

    def __init__(self, trial: optuna.Trial, stop_at: float | None = None, rung_end: int | None = None) -> None:
        self.trial, self.stop_at, self.rung_end = trial, stop_at, rung_end
        self.out_of_budget = self.at_rung_end = False

    def report(self, epoch: int, valid_score: float, metrics: dict[str, float], train_loss: float) -> bool:
        self.trial.report(valid_score, epoch)
        if self.stop_at is not None and time.time() >= self.stop_at:
            self.out_of_budget = True
            return True
        if self.rung_end is not None and epoch + 1 >= self.rung_end:
            self.at_rung_end = True
            return True
        return self.trial.should_prune()

    def stopped_to_continue(self) -> bool:
        return self.out_of_budget or self.at_rung_end


def objective(trial: optuna.Trial, plan: StudyPlan, store: StudyStore, tracker: Tracker,
              stop_at: float | None = None) -> float:
    """The shared objective under Optuna: sample, train, store the record; PRUNED raises TrialPruned.

    An interrupt anywhere in here (Ctrl-C, the driver's SIGTERM) queues the trial again: Optuna then
    records this one FAIL, and its copy waits for the resume."""
    import optuna

    tic = time.perf_counter()
    rung_end = trial.user_attrs.get(rungs.RUNG_END_ATTR)
    if rung_end is not None and rung_end >= plan.max_epochs:
        rung_end = None  # the fit ends there by itself: COMPLETE, not a rung to be ranked at
    reporter = OptunaReporter(trial, stop_at, rung_end)
    try:
        params = plan.space.to_config_values({name: p.distribution.suggest(trial, name)
                                              for name, p in plan.space.parameters.items()})
        try:
            record = run_trial(plan.spec, params, trial.number, reporter, tracker,
                               on_run=partial(trial.set_user_attr, "run_id"))
        except Exception as exc:
            store.set_attrs(trial.number, {"error": failure_message(exc), "traceback": traceback.format_exc()[-4000:],
                                           "seconds": round(time.perf_counter() - tic, 3), "config_params": params})
            raise  # optimize(catch=...) records it FAIL and the study goes on
        if reporter.out_of_budget:  # the copy is queued before the results are stored: it carries none of them
            record.error = "stopped: the budget was spent; queued again for the resume"
            store.queue_again(trial.number)
        store.set_attrs(trial.number, record.attrs())
        if reporter.out_of_budget:
            raise BudgetSpent(record.error)
    except KeyboardInterrupt:
        trial.set_user_attr("error", "interrupted; queued again for the resume")
        store.queue_again(trial.number)
        raise
    if record.state == TrialState.PRUNED:
        raise optuna.TrialPruned(f"pruned at epoch {record.epochs_run}")
    assert record.best_valid_score is not None
    return record.best_valid_score


def set_threads(threads: int) -> None:
    """The one place a worker's torch thread count is set (0: torch's default)."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def run_worker(plan: StudyPlan, deadline: float | None = None, store: StudyStore | None = None) -> None:
    """Run trials until the study has none left for this worker (or the deadline passes); ``store``:
    the driver's own, when it runs the only worker itself."""
    import optuna

    from tuner.tracking.base import open_tracker

    set_threads(plan.threads_per_worker)
    defer_signals_in_tell()
    store = claiming_store(store or StudyStore.open(plan, create=False), plan, this_worker(), deadline)
    with file_lock(lock_path(plan.storage)):
        store.reap_dead()
        if plan.pruner == rungs.PRUNER:
            rungs.promote(store, plan)  # a run stopped between a rung's end and its promotion
    if not remaining(store.trials(), plan):  # nothing for a worker joining now: no warm-up
        return
    warm_up(plan.spec)
    tracker = open_tracker(plan.tracker)  # one tracking client per worker (MLflow's import paid here)
    callbacks: list[Callable[..., None]] = [deliver_held_signals]
    if plan.algo != "grid":
        callbacks.append(optuna.study.MaxTrialsCallback(plan.n_trials, states=(optuna.trial.TrialState.COMPLETE,
                                                                               optuna.trial.TrialState.PRUNED)))
    timeout = None if deadline is None else max(0.0, deadline - time.time())
    with contextlib.suppress(NothingToRun):  # the grid is exhausted, or the budget taken
        stop_at = deadline if plan.budget else None
        store.study.optimize(partial(objective, plan=plan, store=store, tracker=tracker, stop_at=stop_at),
                             catch=(Exception,), callbacks=callbacks, timeout=timeout)
    deliver_held_signals()  # optimize ended right after a tell (its timeout, the last trial)


# -- worker processes -----------------------------------------------------------------------

HARD_EXIT_SECONDS = 15.0


def _interrupt_once(signum: int, frame: Any) -> None:
    """SIGINT (Ctrl-C) or SIGTERM (the driver stopping): interrupt the running trial once; it is queued
    again and the worker exits. Later signals are ignored while it cleans up, and a timer makes sure it
    does exit: an interrupt that lands inside a storage call can leave that call waiting on its own
    connection's lock (the driver, or the next run, then retries what the worker left RUNNING)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    timer = threading.Timer(HARD_EXIT_SECONDS, os._exit, args=(130,))
    timer.daemon = True  # a worker that finishes its cleanup in time exits without waiting for it
    timer.start()
    raise KeyboardInterrupt


def die_with_parent() -> None:
    """A worker must not outlive its driver (``kill -9`` of the driver would leave it running a study
    nobody supervises). The kernel kills it when its parent dies (Linux's PR_SET_PDEATHSIG; the parent is
    the driver's fork server, which exits with the driver). A watchdog thread also waits on the driver's
    end of the pipe multiprocessing keeps open for its life (``parent_process()``'s sentinel: no pid to
    reuse, no polling), for where prctl is missing. Its trial stays RUNNING; the next run retries it."""
    import multiprocessing

    with contextlib.suppress(AttributeError, OSError):  # no prctl: the watchdog alone
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    driver = multiprocessing.parent_process()
    if driver is None:  # not started by multiprocessing
        return

    def watch() -> None:
        driver.join()  # returns once the driver has exited or died
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def install_interrupt_handlers(keep_sigint_ignored: bool) -> None:
    """A worker stops on SIGTERM (the driver) and on SIGINT (a terminal's Ctrl-C reaches the whole
    process group), unless its driver ignores SIGINT (``nohup``, ``cmd &`` in a script): then it does
    too, or a worker that stopped would only be replaced by the driver's next one. The driver says which
    (``sigint_ignored()``): a worker forked by the fork server cannot tell from what it inherits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN if keep_sigint_ignored else _interrupt_once)
    signal.signal(signal.SIGTERM, _interrupt_once)
    redeliver_swallowed_interrupts()


def sigint_ignored() -> bool:
    """Whether this process was started with SIGINT ignored (``nohup``, ``cmd &`` in a script)."""
    return signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def worker_process(plan: StudyPlan, deadline: float | None, keep_sigint_ignored: bool) -> None:
    """Entry point of a worker process (started by the Optuna backend)."""
    install_interrupt_handlers(keep_sigint_ignored)
    die_with_parent()
    try:
        run_worker(plan, deadline)
    except KeyboardInterrupt:
        pass
    except SeqtuneError as exc:
        print(f"error: {exc}", flush=True)
        raise SystemExit(2) from None
