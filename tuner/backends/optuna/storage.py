"""The study's Optuna storage: opened once per process; the study created (its grid queued) or loaded
and checked; trials addressed by number; dead trials failed and queued again.

Exactly-once scheduling rests on Optuna's own queue: a grid is enqueued once, by the process that
creates the study, as WAITING trials, and a trial is claimed by moving it WAITING -> RUNNING, which
the database does atomically (two workers, or two hosts on one PostgreSQL, never run one point twice).
A trial whose worker died is failed and queued again by Optuna's ``RetryHeartbeatStaleTrialCallback``:
at once when the worker was a process of this host (``reap_dead``), after Optuna's heartbeat grace
period otherwise. A claim is two writes (RUNNING, then the owner) and SIGKILL cannot be deferred; a
RUNNING trial left without an owner is retried once it is ``ORPHAN_SECONDS`` old (the grace period on a
server storage, whose clocks are other hosts').
"""

from __future__ import annotations

import copy
import datetime
import os
import socket
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from models.errors import SeqtuneError
from tuner.backends.optuna import rungs
from tuner.redact import redact_credentials
from tuner.trial import TrialRecord, TrialState

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from tuner.backends.base import StudyPlan

SPACE_ATTR = "seqtune:space"  # what the study was created for: a resumed run must match it
READY_ATTR = "seqtune:grid_ready"  # set once the creator has queued every grid point
WORKER_ATTR = "worker"  # host:pid of the process running a trial (TrialRecord.worker)
RUN_ATTRS = ("error", "resumed_epochs", "resume_state")  # a record's attributes that are None when not set
RAN_ATTR = "seqtune:ran:"  # + host:pid:start, a study attribute per command that ran it: its [start, end]
ORPHAN_SECONDS = 10.0  # a claim's two writes take milliseconds; an ownerless RUNNING trial this old is orphaned


def storage_url(url: str) -> str:
    """SQLAlchemy's URL for ``--storage``: a bare postgresql:// means psycopg 3 to SQLAlchemy 2 (we ship
    psycopg2); a plain path or a relative sqlite path is made absolute, so every process of the study
    (Ray runs trials in directories of their own) opens the same file."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    if "://" not in url:
        return f"sqlite:///{Path(url).resolve()}"
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return f"sqlite:///{Path(url[len('sqlite:///'):]).expanduser().resolve()}"
    return url


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def stored_trials(url: str, study_name: str) -> list[FrozenTrial] | None:
    """The trials of the stored study ``study_name``, or None where there is no such study. Reads the
    storage only where it exists (a sqlite file that is not there is not created): a look creates nothing."""
    import optuna

    url = storage_url(url)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        return None
    storage = make_storage(url, None)  # a refused connection is StorageError: no study can run either
    try:
        return optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)
    except KeyError:  # no study of that name yet
        return None


class StorageError(SeqtuneError):
    """The study storage cannot be opened: no study can run, so a plan stops on it too."""


def union_length(spans: Iterable[Sequence[float]]) -> float:
    """The length of the union of [start, end] spans."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted((float(a), float(b)) for a, b in spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def check_storage_url(url: str) -> None:
    """``--storage`` that names no database SQLAlchemy can open (a typo in the scheme, a missing driver):
    one line before anything runs or is measured. A server that refuses the connection is found when the
    study opens (make_storage)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(storage_url(url)).get_dialect().import_dbapi()  # the driver too: mysql:// without MySQLdb
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise StorageError(f"--storage {redact_credentials(url)!r}: not a database seqtune can open "
                           f"({str(exc).splitlines()[0]}); expected a sqlite file (sqlite:///studies.db, or a path) or "
                           "postgresql://USER:PASSWORD@HOST/DB") from None


def make_storage(url: str, heartbeat: tuple[int, int] | None) -> Any:
    """Optuna's RDBStorage (whose heartbeat outlives a failed beat); ``heartbeat`` = (interval, grace
    period) in seconds, for ``study.optimize``."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    from tuner.backends.optuna.heartbeat_storage import SteadyHeartbeatStorage

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our progress, records and summary report trials
    url = storage_url(url)
    engine_kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    interval, grace = heartbeat or (None, None)
    for attempt in range(5):  # processes starting together race to create Optuna's tables: retry
        try:
            return SteadyHeartbeatStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=interval,
                                          grace_period=grace,
                                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback())
        except Exception as exc:  # noqa: BLE001 - a bad URL, a missing driver, a refused connection
            text = str(exc).lower()
            if attempt == 4 or ("duplicate" not in text and "already exists" not in text):
                raise StorageError(f"cannot open study storage {redact_credentials(url)!r}: "
                                   f"{redact_credentials(str(exc).splitlines()[0])}") from None
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def make_sampler(plan: StudyPlan) -> Any:
    import optuna

    if plan.algo == "tpe":
        return optuna.samplers.TPESampler(seed=plan.sampler_seed)
    return optuna.samplers.RandomSampler(seed=plan.sampler_seed)  # random; a grid's points come queued


def make_pruner(plan: StudyPlan) -> Any:
    import optuna

    if plan.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if plan.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(plan.max_epochs, 3))
    if plan.pruner == "halving":  # every trial gets 1 epoch; at 3, 9, 27, ... only the best third go on
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def finished_trial(record: TrialRecord, plan: StudyPlan) -> FrozenTrial:
    """A run made before, as a COMPLETE trial of this study (its record's attributes, never run again)."""
    import optuna

    from tuner.space import encode_choice

    parameters = plan.space.parameters
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE, value=record.best_valid_score,
        params={name: encode_choice(record.params[name]) for name in parameters},
        distributions={name: p.distribution.to_optuna() for name, p in parameters.items()},
        user_attrs=record.attrs())


def space_signature(plan: StudyPlan) -> dict[str, Any]:
    return {"model": plan.spec.model, "dataset": plan.spec.dataset,
            "space": {n: p.distribution.describe() for n, p in plan.space.parameters.items()}}


def _alive(pid: int) -> bool:
    """Whether a process of this host still runs (a zombie does not: an orphaned worker may wait long
    for a parent that reaps it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: trust kill(0)


@dataclass
class StudyStore:
    """One process's handle on the study: the storage, the study and its id, opened once."""

    storage: Any  # optuna.storages.RDBStorage
    study: optuna.Study
    study_id: int

    @classmethod
    def open(cls, plan: StudyPlan, create: bool, heartbeat: bool = True) -> StudyStore:
        """Create the study (and queue its grid) or load it; refuse a different space under one name."""
        import optuna

        storage = make_storage(plan.storage, (plan.heartbeat_seconds, plan.grace_seconds) if heartbeat else None)
        direction: Literal["maximize", "minimize"] = "maximize" if plan.direction_bigger else "minimize"
        kwargs = {"study_name": plan.study_name, "storage": storage, "sampler": make_sampler(plan),
                  "pruner": make_pruner(plan)}
        created = False
        if create:
            try:
                study = optuna.create_study(direction=direction, **kwargs)
                created = True
            except optuna.exceptions.DuplicatedStudyError:
                pass
        if not created:
            try:
                study = optuna.load_study(**kwargs)
            except KeyError:
                raise SeqtuneError(f"no study {plan.study_name!r} in {redact_credentials(plan.storage)}") from None
        store = cls(storage, study, storage.get_study_id_from_name(plan.study_name))
        if created:
            study.set_user_attr(SPACE_ATTR, space_signature(plan))
            if plan.algo == "grid":
                points = plan.grid_points()
                attrs = rungs.first_rung(len(points)) if plan.pruner == rungs.PRUNER else None
                for params in points:
                    study.enqueue_trial(params, user_attrs=attrs)
            for record in plan.known:
                study.add_trial(finished_trial(record, plan))
            study.set_user_attr(READY_ATTR, True)
            return store
        store._check(plan, direction)
        return store

    def _check(self, plan: StudyPlan, direction: str) -> None:
        deadline = time.monotonic() + 60
        while not self.storage.get_study_user_attrs(self.study_id).get(READY_ATTR):  # still queueing the grid
            if time.monotonic() > deadline:
                raise SeqtuneError(f"study {plan.study_name!r} was never fully created; use a new --study-name")
            time.sleep(0.5)
        if self.study.user_attrs.get(SPACE_ATTR) != space_signature(plan):
            raise SeqtuneError(f"study {plan.study_name!r} in {redact_credentials(plan.storage)} was created for a "
                               "different model, dataset or search space; pick another --study-name")
        if self.study.direction.name.lower() != direction:
            raise SeqtuneError(f"study {plan.study_name!r} optimises in the other direction; pick another --study-name")

    def record_run(self, started: float, ended: float) -> float:
        """Keep one command's span of wall-clock time (unix seconds) in the study; return the study's wall
        time, the length of the union of every command's span: a resumed study adds its runs, drivers
        running side by side count once. Kept in the study, not only in tracking, so that an MLflow outage
        loses none of it."""
        self.storage.set_study_user_attr(self.study_id, f"{RAN_ATTR}{this_worker()}:{started:.3f}", [started, ended])
        spans = [value for key, value in self.storage.get_study_user_attrs(self.study_id).items()
                 if key.startswith(RAN_ATTR)]
        return union_length(spans)

    def using(self, study: optuna.Study) -> StudyStore:
        """This store reading through ``study`` (another Study object on the same storage: a worker's
        claiming study, whose trial cache must see what it claims)."""
        return StudyStore(self.storage, study, self.study_id)

    # -- trials by number ---------------------------------------------------------------------

    def trials(self, states: Iterable[TrialState] | None = None) -> list[FrozenTrial]:
        from optuna.trial import TrialState as OptunaState

        wanted = None if states is None else tuple(OptunaState[s.value] for s in states)
        return self.study.get_trials(deepcopy=False, states=wanted)

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def set_attrs(self, number: int, attrs: dict[str, Any]) -> None:
        trial_id = self.trial_id(number)
        for key, value in attrs.items():
            self.storage.set_trial_user_attr(trial_id, key, value)

    def claim(self, number: int, worker: str) -> bool:
        """Move a WAITING trial to RUNNING for ``worker``; False when another worker took it first."""
        from optuna.trial import TrialState as OptunaState

        trial_id = self.trial_id(number)
        if not self.storage.set_trial_state_values(trial_id, state=OptunaState.RUNNING):
            return False
        self.storage.set_trial_user_attr(trial_id, WORKER_ATTR, worker)
        for key in RUN_ATTRS:  # a retry inherits its original's attributes; these its own run may leave unset
            self.storage.set_trial_user_attr(trial_id, key, None)
        return True

    def retry(self, number: int, reason: str) -> None:
        """Fail a RUNNING trial that will never finish and queue its parameters again. A trial already
        finished (by its worker, or by another process reaping it) is left alone."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState as OptunaState

        trial_id = self.trial_id(number)
        try:
            self.storage.set_trial_user_attr(trial_id, "error", reason)
            if not self.storage.set_trial_state_values(trial_id, state=OptunaState.FAIL):
                return
        except UpdateFinishedTrialError:
            return
        self.queue_again(number)

    def queue_again(self, number: int) -> None:
        """Queue a copy of a trial's parameters as a new WAITING trial, with Optuna's retry callback (the
        copy records which trial it retries; ``records.retried_numbers`` reads that back)."""
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        original = copy.copy(self.storage.get_trial(self.trial_id(number)))
        # the copy takes every attribute but the owner: a claim of it never names a dead worker
        original.user_attrs = {k: v for k, v in original.user_attrs.items() if k != WORKER_ATTR}
        RetryHeartbeatStaleTrialCallback()(self.study, original)

    def reap_dead(self) -> int:
        """Retry the RUNNING trials whose worker is gone: a process of this host that died, or no owner
        at all once the trial is older than a claim can be (its claimer was killed between the writes);
        returns how many."""
        host = socket.gethostname()
        orphan_before = datetime.datetime.now() - datetime.timedelta(seconds=self.orphan_seconds())
        reaped = 0
        for trial in self.trials([TrialState.RUNNING]):
            owner = trial.user_attrs.get(WORKER_ATTR)
            owner_host, _, pid = str(owner or "").rpartition(":")
            if owner_host == host and pid.isdigit() and not _alive(int(pid)):
                self.retry(trial.number, f"worker {owner} died; queued again")
            elif owner is None and trial.datetime_start is not None and trial.datetime_start < orphan_before:
                self.retry(trial.number, "claimed by a worker that died before it wrote its name; queued again")
            else:
                continue
            reaped += 1
        return reaped

    def orphan_seconds(self) -> float:
        """How old an ownerless RUNNING trial must be to be retried: ``ORPHAN_SECONDS`` on one host's
        sqlite file, the heartbeat grace period where other hosts (and their clocks) share the study."""
        if str(self.storage.url).startswith("sqlite"):
            return ORPHAN_SECONDS
        return float(self.storage.grace_period or 60)

    def retry_own(self, reason: str) -> int:
        """Retry the RUNNING trials of this very process (its run was interrupted); returns how many."""
        me = this_worker()
        own = [t.number for t in self.trials([TrialState.RUNNING]) if t.user_attrs.get(WORKER_ATTR) == me]
        for number in own:
            self.retry(number, reason)
        return len(own)

    def fail_stale(self) -> None:
        """Optuna's heartbeat check: trials of other hosts silent past the grace period are retried."""
        import optuna

        optuna.storages.fail_stale_trials(self.study)
