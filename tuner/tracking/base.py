"""What a tracker records, independent of the tracking backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tuner.trial import TrialRecord, TrialState


class TrialRun(ABC):
    """One trial's tracking run (a handle): per-epoch metrics, then its end state."""

    run_id: str | None = None

    @abstractmethod
    def log_epoch(self, epoch: int, train_loss: float, valid: dict[str, float]) -> None: ...

    @abstractmethod
    def finish(self, state: TrialState, summary: dict[str, Any],
               artifacts: dict[str, Path | str] | None = None) -> None:
        """summary: a TrialRecord's attrs (test metrics, duration, ...) or the error."""


class Tracker(ABC):
    """Created by the driver (start_study) and re-opened in workers from its ``handle()``."""

    @abstractmethod
    def handle(self) -> dict[str, Any]:
        """Plain data a worker process needs to log under the same parent run."""

    @abstractmethod
    def start_trial(self, number: int, params: dict[str, Any], config: dict[str, Any]) -> TrialRun: ...

    @abstractmethod
    def finish_study(self, artifacts: dict[str, list[Path]]) -> None:
        """artifacts: files by the artifact folder they go to ("" = the run's root)."""

    def backfill(self, records: Sequence[TrialRecord],  # noqa: B027 - optional for trackers
                 config_of: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Record the finished trials whose tracking was missed (a store that was down); nothing by default.
        ``config_of(params)``: a trial's resolved config."""
        return None

    def log_trial_artifact(self, run_id: str, path: Path) -> None:  # noqa: B027 - optional for trackers
        """Attach a file to a finished trial's run (the best trial's checkpoint); nothing by default."""
        return None

    def log_study(self, records: Sequence[TrialRecord], bigger: bool,  # noqa: B027 - optional for trackers
                  wall_seconds: float | None = None) -> None:
        """Put the study on its parent run, so it reads without opening a trial: the best trial's
        metrics and parameters, trial counts by state, the best-so-far curve, and (at the end of a
        driver's run) the wall time. Called as trials finish and once at the end; nothing by default."""
        return None

    def view_url(self) -> str | None:
        """A link that opens the study in the tracking UI; None when there is none."""
        return None

    def log_metrics(self, metrics: dict[str, float]) -> None:  # noqa: B027 - optional for trackers
        """Metrics of the whole study on its parent run (the seed phase's means and spreads)."""
        return None


class NullRun(TrialRun):
    """A run that records nothing (no tracking, or a store that was down when the trial started)."""

    def log_epoch(self, epoch: int, train_loss: float, valid: dict[str, float]) -> None:
        pass

    def finish(self, state: TrialState, summary: dict[str, Any],
               artifacts: dict[str, Path | str] | None = None) -> None:
        pass


class NullTracker(Tracker):
    def handle(self) -> dict[str, Any]:
        return {"kind": "null"}

    def start_trial(self, number: int, params: dict[str, Any], config: dict[str, Any]) -> TrialRun:
        return NullRun()

    def finish_study(self, artifacts: dict[str, list[Path]]) -> None:
        pass


def open_tracker(handle: dict[str, Any]) -> Tracker:
    """Re-open a tracker in a worker from the driver's handle."""
    if handle.get("kind") == "mlflow":
        from tuner.tracking.mlflow_tracker import MlflowTracker

        return MlflowTracker.from_handle(handle)
    return NullTracker()
