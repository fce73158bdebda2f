"""The one trial objective every backend calls: params in, trained result out.

A backend gives the sampled config values and a ``Reporter``; the objective layers the config
(defaults < dataset < config_files < trial params < command-line overrides), trains through the
library's single API with a per-epoch callback, and returns a ``TrialOutcome``. The reporter decides
whether to stop early (Optuna's pruners, Ray's schedulers) by returning True from ``report``.
"""

from __future__ import annotations

import contextlib
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.config import Config, build_config
from tuner.tracking.base import NullTracker, TrackedTrial, Tracker

if TYPE_CHECKING:
    from models.trainer import TrainResult


class Reporter(ABC):
    """How a backend hears about each epoch. Return True to stop the trial (pruned)."""

    @abstractmethod
    def report(self, epoch: int, valid_score: float, metrics: dict[str, float], train_loss: float) -> bool: ...


class NullReporter(Reporter):
    def report(self, epoch: int, valid_score: float, metrics: dict[str, float], train_loss: float) -> bool:
        return False


@dataclass
class StudySpec:
    """Everything a worker needs to run trials; plain data so it crosses process boundaries."""

    model: str
    dataset: str = "ml-100k"
    config_files: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)  # --key=value from the command line
    checkpoint_dir: str | None = None  # each trial's best weights go to <dir>/trial-<n>.pth
    log_checkpoints: bool = False  # every trial's checkpoint to its tracking run (else only the best's)

    def config(self, params: dict[str, Any]) -> Config:
        return build_config(self.model, self.dataset, self.config_files, {**params, **self.overrides},
                            overrides_source="trial parameters / command line")


@dataclass
class TrialOutcome:
    """A trained trial: the library's ``TrainResult`` plus what the tuner adds (params, wall time)."""

    params: dict[str, Any]
    result: TrainResult
    seconds: float  # the trial's wall time: config, training, evaluation, tracking
    config: dict[str, Any]

    @property
    def pruned(self) -> bool:
        return self.result.stopped_by_callback

    @property
    def overhead_seconds(self) -> float:
        """Everything but training and evaluation."""
        return self.seconds - self.result.train_seconds - self.result.eval_seconds

    def attrs(self) -> dict[str, Any]:
        """What a backend stores with the trial (JSON-serializable)."""
        r = self.result
        return {
            "best_valid_result": r.best_valid_result,
            "test_result": r.test_result,
            "epochs_run": r.epochs_run,
            "best_epoch": r.best_epoch,
            "train_seconds": round(r.train_seconds, 3),
            "eval_seconds": round(r.eval_seconds, 3),
            "seconds": round(self.seconds, 3),
        }


def warm_up(spec: StudySpec) -> None:
    """Pay a worker's one-time costs before its first trial, so no trial carries them: the trainer's
    imports, the data set's tensors, and torch's first optimizer (it imports torch._dynamo, ~1-2 s)
    and first backward pass, on a throwaway model and a few samples. Every trial re-seeds before it
    builds anything, so this changes no trial's numbers. A failure is left for the trial to report."""
    import torch

    from models.data.sequential import load_sequential_data
    from models.registry import create_model
    from models.trainer import train  # noqa: F401 - the import is the point
    from models.utils import resolve_device

    with contextlib.suppress(Exception):  # the first trial raises it again, recorded with its trial
        config = spec.config({})
        data = load_sequential_data(config)
        device = resolve_device(config.get("device"))  # a GPU's context is created here too
        model = create_model(config.model, config, data).to(device)
        optimizer = torch.optim.Adam(model.parameters())
        model.train()
        model.calculate_loss(data.train.batch(slice(0, 8)).to(device)).backward()
        optimizer.step()


def run_tracked_trial(
    spec: StudySpec,
    params: dict[str, Any],
    number: int,
    reporter: Reporter | None = None,
    tracker: Tracker | None = None,
    on_run: Any = None,
) -> TrialOutcome:
    """``run_trial`` with its tracking run: started once the config resolves, finished in every case.

    ``on_run(run_id)`` lets the backend keep the tracking run id with its trial. Exceptions propagate
    after the run is marked FAILED with the error.
    """
    tracker = tracker or NullTracker()
    tic = time.perf_counter()
    runs: list[TrackedTrial] = []

    def start(config: Config) -> TrackedTrial:
        run = tracker.start_trial(number, params, config.to_dict())
        runs.append(run)
        if on_run is not None and run.run_id:
            on_run(run.run_id)
        return run

    checkpoint = Path(spec.checkpoint_dir) / f"trial-{number}.pth" if spec.checkpoint_dir else None
    try:
        outcome = run_trial(spec, params, reporter, start, checkpoint)
    except BaseException as exc:
        if runs:
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            runs[0].finish("FAILED", {"error": error, "seconds": time.perf_counter() - tic})
        raise
    summary = outcome.attrs()
    artifacts = {"checkpoint": checkpoint} if spec.log_checkpoints and checkpoint and checkpoint.is_file() else None
    runs[0].finish("PRUNED" if outcome.pruned else "FINISHED", summary, artifacts)
    return outcome


def run_trial(
    spec: StudySpec,
    params: dict[str, Any],
    reporter: Reporter | None = None,
    start_run: Any = None,
    checkpoint_path: Path | None = None,
) -> TrialOutcome:
    """Train one configuration; raises on failure (the backend records the trial FAILED)."""
    from models.data.sequential import load_sequential_data
    from models.trainer import EpochReport, train

    reporter = reporter or NullReporter()
    tic = time.perf_counter()
    config = spec.config(params)
    run = start_run(config) if start_run is not None else None
    data = load_sequential_data(config)  # memoised per process: a worker tensorizes once

    def on_epoch(report: EpochReport) -> bool:
        if run is not None:
            run.log_epoch(report.epoch, report.train_loss, report.valid_result or {})
        if report.valid_score is None:
            return False
        return reporter.report(report.epoch, report.valid_score, report.valid_result or {}, report.train_loss)

    result = train(config, data, callback=on_epoch, checkpoint_path=checkpoint_path)
    if not math.isfinite(result.best_valid_score):
        raise FloatingPointError("no finite validation score (diverged or no validation data)")
    return TrialOutcome(params=params, result=result, seconds=time.perf_counter() - tic, config=config.to_dict())
