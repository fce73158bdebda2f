"""Trials read back from the study's storage as ``TrialRecord``s, counted against the plan's budget,
and summarised for the progress display. Both backends keep their trials here."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from tuner.reporting.progress import StudyProgress, best_of
from tuner.trial import TrialRecord, TrialState

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from tuner.backends.base import StudyPlan


def retried_numbers(trials: list[FrozenTrial]) -> set[int]:
    """Trials that failed because their worker died or was interrupted, and run again as another trial."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    return {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}


def counted(trials: list[FrozenTrial], include_running: bool = False) -> int:
    """Trials that used up the budget: finished ones, minus failures that were queued again."""
    states = {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL} | ({TrialState.RUNNING} if include_running
                                                                           else set())
    retried = retried_numbers(trials)
    return sum(1 for t in trials if TrialState(t.state.name) in states
               and not (t.state.name == "FAIL" and t.number in retried))


def remaining(trials: list[FrozenTrial], plan: StudyPlan) -> int:
    """Trials still to start: the queue (a grid, retries), then the budget of a sampled study."""
    waiting = sum(t.state.name == "WAITING" for t in trials)
    if plan.algo == "grid":
        return waiting
    return max(waiting, plan.n_trials - counted(trials, include_running=True))


def to_record(trial: FrozenTrial, plan: StudyPlan) -> TrialRecord:
    # a trial killed before it sampled (or still queued) shows the point it was queued with
    params: dict[str, Any] = dict(trial.params) or dict(trial.system_attrs.get("fixed_params", {}))
    with contextlib.suppress(KeyError):  # a parameter this space no longer has: keep Optuna's values
        params = plan.space.to_config_values(params)
    record = TrialRecord.from_attrs(trial.number, TrialState(trial.state.name), params, trial.user_attrs,
                                    plan.valid_metric.lower())
    if trial.datetime_start is not None:
        record.started_at = trial.datetime_start.timestamp()
    if trial.datetime_complete is not None:
        record.finished_at = trial.datetime_complete.timestamp()
    return record


def collect(trials: list[FrozenTrial], plan: StudyPlan) -> list[TrialRecord]:
    return [to_record(t, plan) for t in trials]


def snapshot(trials: list[FrozenTrial], plan: StudyPlan) -> StudyProgress:
    retried = retried_numbers(trials)
    from tuner.backends.optuna import rungs  # it reads records: imported here

    if plan.pruner == rungs.PRUNER:  # a trial per point and rung
        total = max(rungs.planned_trials(len(plan.grid_points())), len(trials) - len(retried))
    else:
        total = len(plan.grid_points()) + len(plan.known) if plan.algo == "grid" else plan.n_trials
    values = [t.value for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    return StudyProgress(
        total=total, done=counted(trials),
        pruned=sum(t.state.name == "PRUNED" for t in trials),
        failed=sum(t.state.name == "FAIL" and t.number not in retried for t in trials),
        running=sum(t.state.name == "RUNNING" for t in trials),
        best=best_of(values, plan.direction_bigger))
