"""Rung-synchronous successive halving over a grid (``--pruner sync-halving``).

Every point trains its first rung (1 epoch) before any point goes on; when a rung has finished, the best
third of the points that reached its end go on to the next (3 epochs, 9, 27, ...), and once at most three
are left they train to their early stop. Optuna's SuccessiveHalvingPruner decides each trial at its
rung against the trials that happen to have got there first, so the first trials of a study cannot be
pruned; here every decision sees the whole rung (docs/tuning.md, the replay's item 8).

Each rung of a point is a trial of its own: Optuna cannot pause one. A trial that reaches its rung's
end stops PRUNED and keeps its fit's state (``models.fit_state``); a promoted point's next trial continues
that state, so no epoch is trained twice and its numbers are those of one uninterrupted run. Promotion
happens under the study lock (``worker.lock_path``: one host's lock, so every worker of a study that
uses it should run on one host) by the first worker that finds nothing to claim once the rung is over;
a worker that finds nothing while others still run waits for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tuner.backends.optuna.records import retried_numbers, to_record

if TYPE_CHECKING:
    from tuner.backends.base import StudyPlan
    from tuner.backends.optuna.storage import StudyStore

PRUNER = "sync-halving"
ETA = 3  # the best 1/ETA go on, each rung ETA times longer
RUNG_ATTR = "rung"  # a trial's rung (0: the first epoch)
RUNG_END_ATTR = "rung_end"  # the epochs at which it stops to be ranked (None: its early stop)
CONTINUES_ATTR = "continues"  # the trial whose state a promoted point's trial continues


def rung_end(rung: int, points: int) -> int | None:
    """Where a rung of ``points`` points stops: ETA**rung epochs, or none once at most ETA are left."""
    return None if points <= ETA else ETA**rung


def rung_sizes(points: int) -> list[int]:
    """Points per rung when no point stops early: 90 -> [90, 30, 10, 3]."""
    sizes = [points]
    while sizes[-1] > ETA:
        sizes.append(max(1, sizes[-1] // ETA))
    return sizes


def first_rung(points: int) -> dict[str, int | None]:
    """The attributes every grid point is queued with."""
    return {RUNG_ATTR: 0, RUNG_END_ATTR: rung_end(0, points)}


def promote(store: StudyStore, plan: StudyPlan) -> int:
    """Queue the next rung if the last one has finished (call under the study lock): the best 1/ETA of
    the points that reached its end, ranked by their best valid score; the others' fit states are
    deleted. Returns the trials queued: 0 while the rung still runs, or when nothing goes on."""
    trials = store.trials()
    retried = retried_numbers(trials)  # a stopped trial's copy stands for it
    current = [t for t in trials if not (t.state.name == "FAIL" and t.number in retried)]
    if not current:
        return 0
    last = max(int(t.user_attrs.get(RUNG_ATTR, 0)) for t in current)
    rung = [t for t in current if int(t.user_attrs.get(RUNG_ATTR, 0)) == last]
    if any(t.state.name in ("WAITING", "RUNNING") for t in rung):
        return 0
    reached = [record for t in rung if t.state.name == "PRUNED" and t.user_attrs.get(RUNG_END_ATTR)
               and (record := to_record(t, plan)).best_valid_score is not None]
    if not reached:
        return 0
    reached.sort(key=lambda r: r.best_valid_score, reverse=plan.direction_bigger)  # type: ignore[arg-type,return-value]
    keep = max(1, len(reached) // ETA)
    end = rung_end(last + 1, keep)
    by_number = {t.number: t for t in rung}
    for record in reached[:keep]:
        store.study.enqueue_trial(by_number[record.number].params,
                                  user_attrs={RUNG_ATTR: last + 1, RUNG_END_ATTR: end, CONTINUES_ATTR: record.number})
    for record in reached[keep:]:  # never continued: their states would only fill the disk
        if record.resume_state:
            Path(record.resume_state).unlink(missing_ok=True)
    return keep


def planned_trials(points: int) -> int:
    return sum(rung_sizes(points))
