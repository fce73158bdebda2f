"""The one trial objective every backend calls: params in, a ``TrialRecord`` out.

A backend gives the sampled config values and a ``Reporter``; the objective layers the config
(defaults < dataset < config_files < trial params < command-line overrides), trains through the
library's single API (``models.trainer.train``) with a per-epoch callback, logs the trial's tracking
run, and returns its record. The reporter decides whether to stop early (Optuna's pruners, Ray's
schedulers) by returning True from ``report``.
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
from models.fit_state import config_digest
from tuner.tracking.base import NullTracker, Tracker, TrialRun
from tuner.trial import TrialRecord, TrialState, failure_message

if TYPE_CHECKING:
    from models.trainer import EpochReport


class Reporter(ABC):
    """How a backend hears about each epoch. Return True to stop the trial (pruned)."""

    @abstractmethod
    def report(self, epoch: int, valid_score: float, metrics: dict[str, float], train_loss: float) -> bool: ...

    def stopped_to_continue(self) -> bool:
        """Whether the stop asked for is a pause (the trial is queued again): its fit's state is kept."""
        return False


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
    resume_dir: str | None = None  # running trials keep their fit's state here: a stopped one's copy continues it

    def config(self, params: dict[str, Any]) -> Config:
        return build_config(self.model, self.dataset, self.config_files, {**params, **self.overrides},
                            overrides_source="trial parameters / command line")

    def checkpoint(self, number: int) -> Path | None:
        return Path(self.checkpoint_dir) / f"trial-{number}.pth" if self.checkpoint_dir else None


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


def run_trial(
    spec: StudySpec,
    params: dict[str, Any],
    number: int,
    reporter: Reporter | None = None,
    tracker: Tracker | None = None,
    on_run: Any = None,
) -> TrialRecord:
    """Train one configuration with its tracking run; return its COMPLETE or PRUNED record.

    ``on_run(run_id)`` lets the backend keep the tracking run id with its trial as soon as it exists.
    Any exception (KeyboardInterrupt included) propagates after the run is marked FAILED.
    """
    from models.data.sequential import load_sequential_data
    from models.trainer import train

    reporter = reporter or NullReporter()
    tracker = tracker or NullTracker()
    tic = time.perf_counter()
    run: TrialRun | None = None
    try:
        config = spec.config(params)
        run = tracker.start_trial(number, params, config.to_dict())
        if on_run is not None and run.run_id:
            on_run(run.run_id)
        data = load_sequential_data(config)  # memoised per process: a worker tensorizes once

        def on_epoch(report: EpochReport) -> bool:
            run.log_epoch(report.epoch, report.train_loss, report.valid_result or {})
            if report.valid_score is None:
                return False
            return reporter.report(report.epoch, report.valid_score, report.valid_result or {}, report.train_loss)

        checkpoint = spec.checkpoint(number)
        result = train(config, data, callback=on_epoch, checkpoint_path=checkpoint, resume_dir=spec.resume_dir)
        kept = result.resume_state if reporter.stopped_to_continue() else None
        if result.resume_state and not kept:  # pruned: it never continues
            Path(result.resume_state).unlink(missing_ok=True)
        if not math.isfinite(result.best_valid_score):
            raise FloatingPointError("no finite validation score (diverged or no validation data)")
    except BaseException as exc:
        if run is not None:
            run.finish(TrialState.FAIL, {"error": failure_message(exc), "seconds": time.perf_counter() - tic})
        raise
    record = TrialRecord(
        number=number, state=TrialState.PRUNED if result.stopped_by_callback else TrialState.COMPLETE,
        params=params, valid_metric=str(config["valid_metric"]).lower(),
        best_valid_result=result.best_valid_result, test_result=result.test_result, epochs_run=result.epochs_run,
        best_epoch=result.best_epoch, resumed_epochs=result.resumed_epochs or None, resume_state=kept,
        config_digest=config_digest(config),
        train_seconds=round(result.train_seconds, 3),
        eval_seconds=round(result.eval_seconds, 3), run_id=run.run_id,
        curve=[{"epoch": h["epoch"], "train_loss": h["train_loss"], "train_seconds": round(h["train_seconds"], 3),
                "valid_result": h["valid_result"], "valid_seconds": round(h["valid_seconds"], 3)}
               for h in result.history],
    )
    record.seconds = round(time.perf_counter() - tic, 3)
    artifacts: dict[str, Path | str] | None = None
    if spec.log_checkpoints and checkpoint is not None and checkpoint.is_file():
        artifacts = {"checkpoint": checkpoint}
    run.finish(record.state, record.attrs(), artifacts)
    return record
