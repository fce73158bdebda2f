"""What every backend is given and must return."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from tuner.objective import StudySpec
from tuner.reporting import TrialRecord
from tuner.space import SearchSpace


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
    pruner: str = "none"  # none | median | hyperband | asha
    workers: int = 1
    threads_per_worker: int = 0
    timeout: float | None = None
    sampler_seed: int = 2020
    max_epochs: int = 300
    quiet: bool = False
    tracker: dict = field(default_factory=lambda: {"kind": "null"})  # Tracker.handle(), reopened in workers
    extra: dict = field(default_factory=dict)


class Backend(ABC):
    @abstractmethod
    def run(self, plan: StudyPlan) -> list[TrialRecord]:
        """Run (or resume) the study; return every trial, finished or not."""
