"""The backend contract: what the CLI gives a backend (``StudyPlan``) and the methods it calls.

Both backends keep the study in Optuna's storage (``StudyStore``): the Optuna backend runs worker
processes over it, the Ray backend asks and tells through Ray's OptunaSearch. So preparing, collecting
and the study object for plots are the same for both and live here; ``run`` is each backend's own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from tuner.backends.optuna.records import collect
from tuner.backends.optuna.storage import StudyStore
from tuner.objective import StudySpec
from tuner.reporting.progress import ProgressCallback
from tuner.space import SearchSpace
from tuner.trial import TrialRecord


@dataclass
class StudyPlan:
    spec: StudySpec
    space: SearchSpace
    study_name: str
    storage: str
    algo: str  # grid | tpe | random
    n_trials: int
    direction_bigger: bool
    valid_metric: str
    pruner: str = "none"  # none | median | hyperband | halving | asha
    workers: int = 1
    threads_per_worker: int = 0  # 0: torch's default
    timeout: float | None = None  # stop starting trials after this many seconds
    budget: bool = False  # the timeout is a budget: trials still running at its end stop and are queued again
    sampler_seed: int = 2020
    max_epochs: int = 300
    points: list[dict[str, Any]] | None = None  # a grid's points in run order (default: the file's order)
    known: list[TrialRecord] = field(default_factory=list)  # runs made before (seeds.py): added finished, not run
    tracker: dict[str, Any] = field(default_factory=lambda: {"kind": "null"})  # Tracker.handle(), for workers
    heartbeat_seconds: int = 10  # Optuna's heartbeat: a trial silent for grace_seconds is retried
    grace_seconds: int = 60

    def grid_points(self) -> list[dict[str, Any]]:
        return self.points if self.points is not None else self.space.grid()


class Backend(ABC):
    """prepare -> run (or, after Ctrl-C, collect). Each returns or stores nothing but the study's trials."""

    store: StudyStore | None = None

    def prepare(self, plan: StudyPlan) -> None:
        """Create the study (its grid queued) or load and check it; nothing runs yet."""
        self.store = StudyStore.open(plan, create=True, heartbeat=self.uses_heartbeat)

    @property
    def uses_heartbeat(self) -> bool:
        """Whether this backend's trials run inside ``study.optimize`` (Optuna's heartbeat thread)."""
        return True

    @abstractmethod
    def run(self, plan: StudyPlan, progress: ProgressCallback | None = None) -> list[TrialRecord]:
        """Run or resume the study until it has nothing left to start; return every trial.

        On KeyboardInterrupt: stop, queue the interrupted trials again, and re-raise (``collect`` then
        gives the records, and the same command resumes)."""

    def collect(self, plan: StudyPlan) -> list[TrialRecord]:
        """Every trial of the study as stored, finished or not."""
        return collect(self.opened().trials(), plan)

    def study(self) -> Any:
        """The optuna.Study (for plots and dashboards)."""
        return self.opened().study

    def opened(self) -> StudyStore:
        if self.store is None:
            raise RuntimeError("Backend.prepare(plan) opens the study first")
        return self.store
