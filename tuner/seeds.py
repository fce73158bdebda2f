"""``--seeds N``: the best configs re-run with N seeds, as a study of their own, reported as mean ± std.

The seed study's grid is exactly (top configs x seeds), queued in that order, with ``seed`` a searched
parameter, so both backends run each point once, resume it like any study, and every trial trains
with its own seed (a ``--seed`` on the command line only sets the first of the N).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import statistics
from collections.abc import Sequence

from tuner.backends.base import StudyPlan
from tuner.space import Choice, Parameter, SearchSpace, encode_choice
from tuner.trial import TrialRecord, TrialState

TOP = 3


def seed_plan(plan: StudyPlan, top: Sequence[TrialRecord], first_seed: int, n_seeds: int) -> StudyPlan:
    """The plan of the seed study for ``top`` (records of the main study: ``top_records``). A COMPLETE top
    config's run with the seed it was searched with is its search trial itself (the same config and seed:
    the same numbers), so that run is not trained again: it enters the seed study finished (``known``)."""
    from models.fit_state import config_digest

    seeds = [first_seed + i for i in range(n_seeds)]
    points = [{**{k: encode_choice(v) for k, v in t.params.items()}, "seed": s} for t in top for s in seeds]
    overrides = {k: v for k, v in plan.spec.overrides.items() if k != "seed"}  # the seed is searched here
    spec = dataclasses.replace(plan.spec, overrides=overrides)
    known = [dataclasses.replace(t, params={**t.params, "seed": s}, reused_from=t.number)
             for t in top for s in seeds if t.state == TrialState.COMPLETE and s == t.params.get("seed", first_seed)
             and t.config_digest == config_digest(spec.config({**t.params, "seed": s}))]  # the very same run
    space = SearchSpace(source=plan.space.source)
    for name in sorted({n for p in points for n in p}):
        values: list = []
        for point in points:
            if point[name] not in values:
                values.append(point[name])
        space.parameters[name] = Parameter(name, Choice(tuple(values)), 0)
    digest = hashlib.sha256(json.dumps(points, sort_keys=True, default=repr).encode()).hexdigest()[:8]
    reused = [{k: encode_choice(v) for k, v in r.params.items()} for r in known]
    return dataclasses.replace(plan, spec=spec, space=space,
                               study_name=f"{plan.study_name}:seeds-{digest}", algo="grid", n_trials=len(points),
                               pruner="none", points=[p for p in points if p not in reused], known=known)


def seed_runs_to_train(space: SearchSpace, n_seeds: int) -> int:
    """How many of a top config's ``n_seeds`` runs the seed study trains: all but its search trial's own
    seed (a searched seed may be any of them or none: all, then)."""
    return n_seeds if "seed" in space.parameters else max(n_seeds - 1, 0)


def top_records(records: Sequence[TrialRecord], bigger: bool, n: int = TOP) -> list[TrialRecord]:
    """The ``n`` best of the trials the study's best is chosen from (``ranked_pool``)."""
    from tuner.reporting.outputs import ranked_pool

    return sorted(ranked_pool(records), key=lambda r: r.best_valid_score, reverse=bigger)[:n]  # type: ignore[arg-type,return-value]


def runs_of(trial: TrialRecord, records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The seed study's finished runs of one top config."""
    return [r for r in records if r.state == TrialState.COMPLETE
            and {k: v for k, v in r.params.items() if k != "seed"} == trial.params]


def seed_summary(top: Sequence[TrialRecord], records: Sequence[TrialRecord], metric: str) -> list[str]:
    """One line per top config: valid and test metric as mean ± std over its seeds."""
    key = metric.lower()
    lines = []
    for rank, trial in enumerate(top, start=1):
        runs = runs_of(trial, records)
        if not runs:
            continue
        valid = [r.best_valid_result.get(key, math.nan) for r in runs]
        test = [r.test_result.get(key, math.nan) for r in runs]
        seeds = sorted(r.seed for r in runs if r.seed is not None)
        mean, std = _mean_std(valid)
        test_mean, test_std = _mean_std(test)
        lines.append(f"{rank}. {dict(sorted(trial.params.items()))}: valid {key} {mean:.4f} ± {std:.4f}, "
                     f"test {test_mean:.4f} ± {test_std:.4f} (n={len(runs)}, seeds {seeds})")
    return lines


def seed_metrics(top: Sequence[TrialRecord], records: Sequence[TrialRecord]) -> dict[str, float]:
    """Every valid and test metric of each top config as mean and std over its seeds, for the study's
    parent run: ``seeds/top1/test_mrr@10_mean``, ..., and ``seeds/top1/n``."""
    metrics: dict[str, float] = {}
    for rank, trial in enumerate(top, start=1):
        runs = runs_of(trial, records)
        if not runs:
            continue
        metrics[f"seeds/top{rank}/n"] = float(len(runs))
        for split, results in (("valid", [r.best_valid_result for r in runs]), ("test", [r.test_result for r in runs])):
            for key, (mean, std) in spread(results).items():
                metrics[f"seeds/top{rank}/{split}_{key}_mean"] = mean
                metrics[f"seeds/top{rank}/{split}_{key}_std"] = std
    return metrics


def spread(results: Sequence[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Every metric of some runs' results as (mean, std) over the runs (nan where a run lacks it)."""
    keys = sorted({k for result in results for k in result})
    return {key: _mean_std([result.get(key, math.nan) for result in results]) for key in keys}


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
