"""The tuner's one vocabulary for a trial: its state and its record.

``TrialState`` is the only spelling of a trial's state: the result files, results.csv, the MLflow
``state`` tag and the terminal all use its names (Optuna's: COMPLETE, PRUNED, FAIL, RUNNING, WAITING).
``TrialRecord`` is the tuner's one result type: the objective returns it, a backend stores its
``attrs()`` with the trial and reads it back with ``from_attrs``; reporting reads nothing else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class TrialState(str, enum.Enum):
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"
    RUNNING = "RUNNING"
    WAITING = "WAITING"

    @property
    def mlflow_status(self) -> str:
        """MLflow's run status for a finished trial (a pruned run was killed on purpose)."""
        return {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED"}.get(self, "FAILED")

    @property
    def finished(self) -> bool:
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


# the stored attributes of a trial, beside Optuna's own columns (one key per field below)
_STORED = ("best_valid_result", "test_result", "epochs_run", "best_epoch", "resumed_epochs", "seconds", "train_seconds",
           "eval_seconds", "error", "run_id", "worker", "curve", "reused_from", "resume_state",
           "config_digest")


@dataclass
class TrialRecord:
    number: int
    state: TrialState
    params: dict[str, Any]  # the config values the trial ran with
    valid_metric: str = "mrr@10"  # the key of best_valid_result that ranks trials
    best_valid_result: dict[str, float] = field(default_factory=dict)
    test_result: dict[str, float] = field(default_factory=dict)
    epochs_run: int | None = None
    best_epoch: int | None = None
    resumed_epochs: int | None = None  # of epochs_run, those continued from a stopped copy's saved state
    seconds: float | None = None  # the trial's wall time: config, training, evaluation, tracking
    train_seconds: float | None = None
    eval_seconds: float | None = None
    error: str | None = None
    run_id: str | None = None  # the trial's tracking run
    worker: str | None = None  # host:pid of the process that ran it
    # the learning curve: per epoch {epoch, train_loss, train_seconds, valid_result, valid_seconds}
    curve: list[dict[str, Any]] | None = None
    reused_from: int | None = None  # not trained here: the same run as this trial of the main study (seeds.py)
    resume_state: str | None = None  # the fit's saved state, kept when the trial stopped to be continued
    config_digest: str | None = None  # what the trial's config computes (models.fit_state.config_digest)
    started_at: float | None = None  # Unix times the trial started and ended (the storage's own columns)
    finished_at: float | None = None

    @property
    def best_valid_score(self) -> float | None:
        return self.best_valid_result.get(self.valid_metric)

    @property
    def has_result(self) -> bool:
        return self.state in (TrialState.COMPLETE, TrialState.PRUNED) and bool(self.best_valid_result)

    @property
    def seed(self) -> int | None:
        return self.params.get("seed")

    @property
    def overhead_seconds(self) -> float | None:
        """Everything but training and evaluation."""
        if None in (self.seconds, self.train_seconds, self.eval_seconds):
            return None
        return round(self.seconds - self.train_seconds - self.eval_seconds, 3)  # type: ignore[operator]

    def attrs(self) -> dict[str, Any]:
        """What a backend stores with the trial (JSON-serializable; None values left out)."""
        stored = {key: getattr(self, key) for key in _STORED if getattr(self, key) is not None}
        stored["config_params"] = self.params
        if self.overhead_seconds is not None:
            stored["overhead_seconds"] = self.overhead_seconds
        return stored

    @classmethod
    def from_attrs(cls, number: int, state: TrialState, params: dict[str, Any], attrs: dict[str, Any],
                   valid_metric: str) -> TrialRecord:
        return cls(number=number, state=state, params=attrs.get("config_params", params), valid_metric=valid_metric,
                   **{key: attrs[key] for key in _STORED if attrs.get(key) is not None})


def failure_message(exc: BaseException) -> str:
    """A failed trial's error as one line (the type and the first line of the message)."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
