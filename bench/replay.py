"""Replay search strategies on the learning-curve table (issue 15): which strategy finds a config as
good as the grid's best soonest, with how many workers, against RecBole's exhaustive search.

    python bench/replay.py measure             # per-epoch costs on this machine (quiet machine: ~4 min)
    python bench/replay.py run [--seeds 20]    # bench/results/replay.json, docs/img/replay_anytime.png
    python bench/replay.py table               # docs/tuning.md's tables and their reading, from replay.json
    python bench/replay.py check [--epochs 3] [--studies ...]  # real studies against their replays (quiet: ~50 min)

The table (bench/learning_curves.py) holds, for every point of the seed's GRU4Rec learning_rate x
dropout_prob grid, the valid MRR@10 of every epoch up to RecBole's early stop and the test MRR@10 of
the best epoch. A replay is an event simulation of one study over that table on a virtual clock: its
workers start trials, each epoch takes the measured cost, and after each epoch the strategy decides
whether the trial goes on. The decisions are the tool's own: the same Optuna sampler and pruner objects
(``make_sampler`` / ``make_pruner``), the same grid order (``SearchSpace.shuffled_grid``) and Ray's own
ASHA scheduler as the Ray backend builds it (``asha_scheduler``). So a replay is what the real tool
would do if every epoch cost exactly the measurement; bench/replay.py check compares it with real runs.

Costs (``measure``): one worker at both cores (2 threads) for a 1-worker study; two 1-thread workers
running together for 2 workers (they share caches and memory bandwidth, so each is measured while the
other runs); 8 workers assume a machine with 8 such cores, each worker as one of the two here. RecBole
runs serially at ours x its measured paired ratio (bench/results/speed_gru4rec.json: train and eval
separately) plus its per-trial set-up (Config, dataset and loaders are rebuilt every trial).

RecBole's exhaustive search (../shared/spec/tuning.md §3): the grid in random order without
replacement, one trial after another, stopped by hyperopt's no_progress_loss(10).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.space import SearchSpace, parse_space_file  # noqa: E402

TABLE = ROOT / "bench" / "results" / "learning_curves_gru4rec.json"
SPACE = ROOT / "bench" / "spaces" / "gru4rec_lr_dropout.test"
COSTS = ROOT / "bench" / "results" / "replay_costs.json"
SPEED = ROOT / "bench" / "results" / "speed_gru4rec.json"
OUT = ROOT / "bench" / "results" / "replay.json"
PNG = ROOT / "docs" / "img" / "replay_anytime.png"
DOC = ROOT / "docs" / "tuning.md"  # its blocks between "replay.py table" markers: `replay.py table --write`
METRIC = "mrr@10"
WITHIN = 0.01  # "as good as the grid's best": valid MRR@10 within 1 %
RECBOLE_STOP = 10  # hyperopt no_progress_loss(10)
VALID_USERS = 943  # ml-100k: every user has one valid item
RECBOLE_SETUP_S = 2.6  # ../shared/recbole-reference.md: Config + dataset + dataloaders per trial, 2 cores
MEASURE_OVERRIDES = {"num_layers": 1, "hidden_size": 128, "seed": 2020, "epochs": 3}


# --- the table ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    params: dict[str, Any]
    valid: tuple[float, ...]  # valid MRR@10 per epoch, up to the early stop (or the 50-epoch cap)
    best_valid: float  # the trial's result: its best epoch's valid MRR@10
    test: float  # test MRR@10 of the best epoch
    best_valid_hit: float = 0.0  # valid Hit@10 of the best epoch (for the metric's noise floor)

    @property
    def key(self) -> tuple:
        return params_key(self.params)

    @property
    def peak_epoch(self) -> int:
        """The epoch (from 0, as RecBole) of its best valid MRR@10."""
        return self.valid.index(self.best_valid)


def params_key(params: dict[str, Any]) -> tuple:
    """A point's identity: its config values, in name order (a table row, a grid point, a sampler's pick)."""
    return tuple(sorted(params.items()))


def load_table(path: Path = TABLE) -> tuple[list[Point], dict[str, Any]]:
    table = json.loads(path.read_text())
    points = [Point(params=row["params"], valid=tuple(e["valid_result"][METRIC] for e in row["curve"]),
                    best_valid=row["best_valid_result"][METRIC], test=row["test_result"][METRIC],
                    best_valid_hit=row["best_valid_result"]["hit@10"])
              for row in table["trials"]]
    return points, table


def grid_best(points: list[Point]) -> Point:
    """The grid's answer: the best valid MRR@10 (the first of ties in table order)."""
    return max(points, key=lambda p: p.best_valid)


def mrr_standard_error_floor(mrr: float, hit: float, users: int = VALID_USERS) -> float:
    """A lower bound on the standard error of MRR@10 as a mean over ``users``: a user's reciprocal rank is
    0 without a hit in the top 10, so by Cauchy-Schwarz E[RR^2] >= E[RR]^2 / P(hit)."""
    return math.sqrt(max(mrr * mrr / hit - mrr * mrr, 0.0) / users) if hit > 0 else 0.0


def targets(points: list[Point]) -> dict[str, float]:
    """What counts as "as good as the grid's best": the issue's 1 %, and one noise floor below the best
    (a difference smaller than one standard error of the metric is not evidence that a config is worse)."""
    best = grid_best(points)
    return {"within_1pct": best.best_valid * (1 - WITHIN),
            "within_noise": best.best_valid - mrr_standard_error_floor(best.best_valid, best.best_valid_hit)}


# each target: its name in targets(), the suffix of its columns in a summary row, its key in the verdict
TARGETS = (("within_1pct", "", "target_1pct"), ("within_noise", "_noise", "target_noise"))


# --- costs -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrialCost:
    """Seconds of one trial's parts, for one kind of worker."""

    train: float  # one training epoch
    valid: float  # one validation (also the test evaluation at a trial's end: one item per user too)
    setup: float  # before the first epoch: config, data from its cache, model

    def epochs(self, n: int) -> float:
        return n * (self.train + self.valid)


@dataclass(frozen=True)
class Costs:
    serial: TrialCost  # one worker, 2 threads
    parallel: TrialCost  # each of two 1-thread workers running together
    recbole: TrialCost  # RecBole 1.2.1, serial, 2 threads

    def for_workers(self, workers: int) -> TrialCost:
        return self.serial if workers == 1 else self.parallel

    @staticmethod
    def load(path: Path = COSTS) -> Costs:
        data = json.loads(path.read_text())
        return Costs(**{k: TrialCost(**data[k]) for k in ("serial", "parallel", "recbole")})


# --- strategies and one replay -------------------------------------------------------------------------

@dataclass(frozen=True)
class Strategy:
    name: str
    algo: str  # grid | random | tpe (the tool's --algo)
    pruner: str = "none"  # the tool's --pruner
    recbole: bool = False

    @property
    def command(self) -> str:
        if self.recbole:
            return "RecBole 1.2.1 run_hyper (exhaustive)"
        order = " --grid-order random" if self.algo == "grid" else ""
        pruner = f" --pruner {self.pruner}" if self.pruner != "none" else ""
        tool = " --tool ray" if self.pruner == "asha" else ""
        return f"--algo {self.algo}{order}{pruner}{tool}"


SYNCHRONOUS = "synchronous halving"
STRATEGIES = [
    Strategy("RecBole exhaustive + early stop", "grid", recbole=True),
    Strategy("grid", "grid"),
    Strategy("grid + median", "grid", "median"),
    Strategy("successive halving", "grid", "halving"),
    Strategy("Hyperband", "grid", "hyperband"),
    Strategy("ASHA (Ray)", "grid", "asha"),
    Strategy(SYNCHRONOUS, "grid", "sync-halving"),
    Strategy("random", "random"),
    Strategy("TPE", "tpe"),
    Strategy("TPE + Hyperband", "tpe", "hyperband"),
]


@dataclass
class Replay:
    strategy: str
    workers: int
    seed: int
    # (time, valid, test, params) of each COMPLETE trial, in the order they finished
    finished: list[tuple[float, float, float, dict[str, Any]]] = field(default_factory=list)
    wall: float = 0.0
    trials: int = 0
    pruned: int = 0
    epochs: int = 0

    def time_to(self, target: float) -> float | None:
        return next((t for t, valid, *_ in self.finished if valid >= target), None)

    def chosen(self) -> tuple[float, float, float, dict[str, Any]] | None:
        """The study's answer: its best finished trial (the first of ties)."""
        best = None
        for item in self.finished:
            if best is None or item[1] > best[1]:
                best = item
        return best

    def best_at(self, t: float) -> float | None:
        scores = [valid for finish, valid, *_ in self.finished if finish <= t]
        return max(scores) if scores else None


def replay_recbole(points: list[Point], cost: TrialCost, seed: int) -> Replay:
    """RecBole: the grid in random order, serial, each trial to its early stop, until 10 trials in a row
    bring no improvement (hyperopt's no_progress_loss counts the first trial as one)."""
    import random

    order = list(points)
    random.Random(seed).shuffle(order)
    run = Replay(STRATEGIES[0].name, 1, seed)
    best, no_progress = None, 0
    for point in order:
        run.wall += cost.setup + cost.epochs(len(point.valid)) + cost.valid
        run.trials += 1
        run.epochs += len(point.valid)
        run.finished.append((run.wall, point.best_valid, point.test, point.params))
        if best is None:
            best, no_progress = point.best_valid, 1
        elif point.best_valid > best:
            best, no_progress = point.best_valid, 0
        else:
            no_progress += 1
        if no_progress >= RECBOLE_STOP:
            break
    return run


class _RayTrial:  # what Ray's ASHA reads from a trial
    def __init__(self, number: int) -> None:
        self.trial_id = str(number)


def replay_tool(points: list[Point], space: SearchSpace, strategy: Strategy, workers: int, seed: int,
                cost: TrialCost, max_epochs: int = 50) -> Replay:
    """One study of the tool on a virtual clock: the tool's sampler, pruner (or Ray's ASHA) and grid order.
    A sampler gets as many trials as the grid has points (its picks may repeat a point: it trains again)."""
    import heapq

    import numpy as np
    import optuna

    from tuner.backends.base import StudyPlan
    from tuner.backends.optuna.storage import make_pruner, make_sampler
    from tuner.backends.ray_backend import SCORE, asha_scheduler
    from tuner.objective import StudySpec

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    by_key = {p.key: p for p in points}
    plan = StudyPlan(spec=StudySpec("GRU4Rec"), space=space, study_name=f"replay-{strategy.name}-{seed}",
                     storage="", algo=strategy.algo, n_trials=space.grid_size, direction_bigger=True,
                     valid_metric=METRIC, pruner=strategy.pruner, workers=workers, sampler_seed=seed,
                     max_epochs=max_epochs)
    asha = asha_scheduler(plan)
    np.random.seed(seed)  # ASHA draws its bracket from numpy's global generator
    study = optuna.create_study(study_name=plan.study_name, direction="maximize", sampler=make_sampler(plan),
                                pruner=optuna.pruners.NopPruner() if asha else make_pruner(plan))
    queue = [p for p in space.shuffled_grid(seed) if params_key(space.to_config_values(p)) in by_key] \
        if strategy.algo == "grid" else []
    for params in queue:
        study.enqueue_trial(params)
    run = Replay(strategy.name, workers, seed)
    events: list[tuple[float, int, int]] = []  # (time, trial number, epoch just finished; -1: test done)
    live: dict[int, tuple[Any, Point]] = {}

    def start(now: float) -> None:
        if run.trials >= (len(queue) if queue else plan.n_trials):
            return
        trial = study.ask()
        params = space.to_config_values({n: p.distribution.suggest(trial, n) for n, p in space.parameters.items()})
        point = by_key.get(params_key(params))
        run.trials += 1
        if point is None:  # a sampler's pick missing from a partial table: skipped, free
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            start(now)
            return
        live[trial.number] = (trial, point)
        if asha:
            asha.on_trial_add(None, _RayTrial(trial.number))
        heapq.heappush(events, (now + cost.setup + cost.train + cost.valid, trial.number, 0))

    for _ in range(workers):
        start(0.0)
    while events:
        now, number, epoch = heapq.heappop(events)
        trial, point = live[number]
        run.wall = now
        if epoch == -1:  # its test evaluation is done: a finished trial
            study.tell(trial, point.best_valid)
            run.finished.append((now, point.best_valid, point.test, point.params))
            del live[number]
            start(now)
            continue
        run.epochs += 1
        value, last = point.valid[epoch], epoch == len(point.valid) - 1
        if asha:
            stop = asha.on_trial_result(None, _RayTrial(number), {"epoch": epoch + 1, SCORE: value}) == "STOP"
            if last:
                final = {"epoch": epoch + 2, SCORE: point.best_valid}
                asha.on_trial_result(None, _RayTrial(number), final)
                asha.on_trial_complete(None, _RayTrial(number), final)
        else:
            trial.report(value, epoch)
            stop = not last and trial.should_prune()
        if last:  # early stop (or the cap): the best epoch's weights are tested
            heapq.heappush(events, (now + cost.valid, number, -1))
        elif stop:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            run.pruned += 1
            del live[number]
            start(now)
        else:
            heapq.heappush(events, (now + cost.train + cost.valid, number, epoch + 1))
    return run


def replay_rung_synchronous(points: list[Point], space: SearchSpace, workers: int, seed: int, cost: TrialCost,
                            eta: int = 3) -> Replay:
    """``--pruner sync-halving`` (tuner/backends/optuna/rungs.py): successive halving with a barrier at each
    rung. Every point trains its first epoch before any trial goes on; the best 1/eta of each rung continue
    to the next (1, 3, 9 epochs, then to their early stop), continuing their saved fit (charged one more
    set-up). A point whose early stop comes before a rung finishes there. Jobs go to the first free worker."""
    import heapq

    by_key = {p.key: p for p in points}
    order = [by_key[k] for k in (params_key(space.to_config_values(q)) for q in space.shuffled_grid(seed))
             if k in by_key]
    run = Replay(SYNCHRONOUS, workers, seed)
    alive, done_epochs, rung_end, now = order, {p.key: 0 for p in order}, 1, 0.0
    while alive:
        final = len(alive) <= eta  # the last few train to their early stop
        free = [now] * workers
        heapq.heapify(free)
        reached: list[tuple[float, Point]] = []
        for point in alive:
            target = len(point.valid) if final else min(rung_end, len(point.valid))
            start = heapq.heappop(free)
            finishes = target == len(point.valid)
            end = start + cost.setup + cost.epochs(target - done_epochs[point.key]) + (cost.valid if finishes else 0.0)
            run.epochs += target - done_epochs[point.key]
            done_epochs[point.key] = target
            heapq.heappush(free, end)
            if finishes:
                run.finished.append((end, point.best_valid, point.test, point.params))
            else:
                reached.append((point.valid[target - 1], point))
        now = max(free)
        run.wall = max(run.wall, now)
        reached.sort(key=lambda item: -item[0])
        keep = max(1, len(reached) // eta) if reached else 0
        run.pruned += len(reached) - keep
        alive = [point for _, point in reached[:keep]]
        rung_end *= eta
    run.trials = len(order)
    run.finished.sort(key=lambda item: item[0])
    return run


# --- many replays, and what they say ----------------------------------------------------------------

def replay_all(points: list[Point], costs: Costs, seeds: list[int], workers_list: list[int]) -> list[Replay]:
    space = parse_space_file(SPACE)
    runs = [replay_recbole(points, costs.recbole, seed) for seed in seeds]
    for strategy in STRATEGIES[1:]:
        for workers in workers_list:
            for seed in seeds:
                cost = costs.for_workers(workers)
                runs.append(replay_rung_synchronous(points, space, workers, seed, cost) if strategy.name == SYNCHRONOUS
                            else replay_tool(points, space, strategy, workers, seed, cost))
    return runs


def quantiles(values: list[float]) -> dict[str, float]:
    """Median, quartiles (linear between order statistics, as statistics.quantiles' "inclusive"), min and
    max; an infinite value (a run that never reached its target) stays infinite instead of turning nan."""
    ordered = sorted(values)

    def at(q: float) -> float:
        position = q * (len(ordered) - 1)
        low, frac = int(position), position - int(position)
        if frac == 0:
            return ordered[low]
        if math.isinf(ordered[low + 1]):
            return math.inf
        return ordered[low] + (ordered[low + 1] - ordered[low]) * frac

    return {"median": at(0.5), "p25": at(0.25), "p75": at(0.75), "min": ordered[0], "max": ordered[-1]}


def time_to(run: Replay, target: float) -> float:
    """When a config at the target had finished. RecBole's run that stops short counts at its full length
    (the issue's rule: its search is over and its answer is what the user gets); a tool run that never gets
    there counts as never (inf): its answer is below the target and it cannot be charged as a success."""
    reached = run.time_to(target)
    if reached is not None:
        return reached
    return run.wall if run.strategy == STRATEGIES[0].name else math.inf


def summarize(runs: list[Replay], points: list[Point]) -> list[dict[str, Any]]:
    best = grid_best(points)
    goals = targets(points)
    rows = []
    groups: dict[tuple[str, int], list[Replay]] = {}
    for run in runs:
        groups.setdefault((run.strategy, run.workers), []).append(run)
    for (name, workers), group in groups.items():
        chosen = [r.chosen() for r in group]
        tests = [c[2] for c in chosen if c is not None]
        row: dict[str, Any] = {
            "strategy": name, "workers": workers, "seeds": len(group),
            "command": next(s.command for s in STRATEGIES if s.name == name),
            "wall_s": quantiles([r.wall for r in group]), "trials": statistics.median(r.trials for r in group),
            "pruned": statistics.median(r.pruned for r in group), "epochs": statistics.median(r.epochs for r in group),
            "chosen_test_mrr": quantiles(tests) if tests else None,
            "chosen_test_gap_median": (statistics.median(tests) / best.test - 1) if tests else None,
            "chosen_test_gap_worst": (min(tests) / best.test - 1) if tests else None,
        }
        for goal, suffix, _ in TARGETS:
            target = goals[goal]
            row[f"time_to_target{suffix}_s"] = quantiles([time_to(r, target) for r in group])
            row[f"reached{suffix}"] = sum(r.time_to(target) is not None for r in group)
            row[f"chosen_below_target{suffix}"] = sum(c is None or c[1] < target for c in chosen)
        rows.append(row)
    return rows


def oracle_seconds(points: list[Point], target: float, cost: TrialCost) -> float:
    """A bound no strategy can beat: the cheapest single trial that finishes at the target, trained first
    and alone (the cost of a worker with every core). Finishing includes the epochs after its best one,
    until the early stop."""
    return min(cost.setup + cost.epochs(len(p.valid)) + cost.valid for p in points if p.best_valid >= target)


def verdict(rows: list[dict[str, Any]], points: list[Point], costs: Costs) -> dict[str, Any]:
    """The must-show line: the best strategy at 2 workers against RecBole's exhaustive search, by the
    issue's 1 % target and by the noise floor; a strategy that misses a target in most seeds has an
    infinite median and cannot win it. ``bound_speedup``: RecBole's time over the oracle's, the most
    any strategy could reach on this table at these costs."""
    recbole = next(r for r in rows if r["strategy"] == STRATEGIES[0].name)
    goals = targets(points)
    built = {s.name for s in STRATEGIES}
    candidates = [r for r in rows if r["workers"] == 2 and r["chosen_test_mrr"] is not None and r["strategy"] in built]
    out: dict[str, Any] = {"recbole_returns_below_target": f"{recbole['chosen_below_target']}/{recbole['seeds']}",
                           "recbole_returns_below_noise_target":
                               f"{recbole['chosen_below_target_noise']}/{recbole['seeds']}"}
    for goal, suffix, verdict_key in TARGETS:
        key = f"time_to_target{suffix}_s"
        winner = min(candidates, key=lambda r: (r[key]["median"], r["wall_s"]["median"]))
        ours, theirs = winner[key]["median"], recbole[key]["median"]
        oracle = oracle_seconds(points, goals[goal], costs.serial)
        out[verdict_key] = {
            "winner": winner["strategy"], "winner_command": winner["command"],
            "winner_reached": f"{winner[f'reached{suffix}']}/{winner['seeds']}",
            "winner_median_s": ours, "recbole_median_s": theirs,
            "speedup_vs_recbole": theirs / ours if math.isfinite(ours) else 0.0,
            "oracle_s": oracle, "bound_speedup": theirs / oracle,
            "winner_median_test_gap": winner["chosen_test_gap_median"],
            "winner_worst_test_gap": winner["chosen_test_gap_worst"],
        }
    return out


def defaults(rows: list[dict[str, Any]], points: list[Point]) -> dict[str, Any]:
    """What the tool takes from the table (tuner/evidence.py): the mean trial length, each pruner's share
    of a grid's epochs (1 worker), and --budget's pruner for a grid: the fastest Optuna pruner over the
    grid to the noise target at 2 workers (ASHA is Ray's; the winner overall is in the verdict) among
    those that finish a config while the first rung is still running. A budget can end at any time, and
    synchronous halving finishes its first config only once every point has passed its rungs (a budget
    shorter than the first rung would end with no config: docs/tuning.md)."""
    by = {(r["strategy"], r["workers"]): r for r in rows}
    grid_epochs = by[("grid", 1)]["epochs"]
    pruned = [s for s in STRATEGIES if s.algo == "grid" and s.pruner != "none" and not s.recbole]
    budget = min((by[(s.name, 2)] for s in pruned if s.pruner not in ("asha", "sync-halving")),
                 key=lambda r: (r["time_to_target_noise_s"]["median"], r["wall_s"]["median"]))
    return {"expected_epochs": round(statistics.mean(len(p.valid) for p in points)),
            "peak_epochs": sorted(p.peak_epoch + 1 for p in points),
            "pruned_epoch_fraction": {s.pruner: round(by[(s.name, 1)]["epochs"] / grid_epochs, 2) for s in pruned},
            "budget_grid_pruner": next(s.pruner for s in pruned if s.name == budget["strategy"])}


def anytime_png(runs: list[Replay], points: list[Point], workers_list: list[int], path: Path = PNG) -> None:
    """Best finished valid MRR@10 against wall time: median over seeds, shaded 25-75 %, per worker count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    goals = targets(points)
    horizon = max(r.wall for r in runs)
    grid = [10 ** (2 + i * (math.log10(horizon) - 2) / 199) for i in range(200)]
    fig, axes = plt.subplots(1, len(workers_list), figsize=(6 * len(workers_list), 4.5), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, workers in zip(axes, workers_list, strict=True):
        for strategy in STRATEGIES:
            group = [r for r in runs if r.strategy == strategy.name and (r.workers == workers or strategy.recbole)]
            curves = [[r.best_at(t) for r in group] for t in grid]
            xs, mid, lo, hi = [], [], [], []
            for t, values in zip(grid, curves, strict=True):
                values = [v for v in values if v is not None]
                if len(values) * 2 <= len(group):  # the median run has not finished a trial yet
                    continue
                q = quantiles(values)
                xs.append(t / 3600)
                mid.append(q["median"])
                lo.append(q["p25"])
                hi.append(q["p75"])
            style = {"color": "black", "linestyle": "--"} if strategy.recbole else {}
            line, = ax.plot(xs, mid, label=strategy.name, **style)
            ax.fill_between(xs, lo, hi, alpha=0.12, color=line.get_color())
        ax.axhline(goals["within_1pct"], color="grey", linewidth=0.8, linestyle=":")  # the 1 %
        ax.axhline(goals["within_noise"], color="grey", linewidth=0.8, linestyle="-.")  # one noise floor below
        ax.set_xscale("log")
        ax.set_xlabel("wall time (h)")
        ax.set_title(f"{workers} worker(s)  (RecBole: serial)")
    axes[0].set_ylabel("best finished valid MRR@10")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


# --- measuring the costs ---------------------------------------------------------------------------

_MEASURE_ONE = """
import json, sys, time
from tuner.objective import StudySpec, run_trial, warm_up
spec = StudySpec("GRU4Rec", overrides={**json.loads(sys.argv[1]), "threads": int(sys.argv[2])})
warm_up(spec)
record = run_trial(spec, {}, 0)
print(json.dumps({"seconds": record.seconds, "curve": record.curve}))
"""


def measure_one(threads: int, concurrent: int) -> list[dict[str, Any]]:
    """``concurrent`` processes, each one 3-epoch trial at ``threads``; their (last-epoch) costs."""
    command = [sys.executable, "-c", _MEASURE_ONE, json.dumps(MEASURE_OVERRIDES), str(threads)]
    procs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(concurrent)]
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"measurement failed (exit {proc.returncode})")
        trial = json.loads(out.strip().splitlines()[-1])
        epochs = trial["curve"]
        # the trial's own seconds minus its epochs: set-up, data, the test evaluation
        rest = trial["seconds"] - sum(e["train_seconds"] + e["valid_seconds"] for e in epochs)
        warm = epochs[1:]  # the first epoch pays one-time warm-up
        results.append({"train": statistics.median(e["train_seconds"] for e in warm),
                        "valid": statistics.median(e["valid_seconds"] for e in warm),
                        "setup": max(0.0, rest - statistics.median(e["valid_seconds"] for e in warm))})
    return results


def measure() -> dict[str, Any]:
    speed = json.loads(SPEED.read_text())
    serial = measure_one(2, 1)[0]
    pair = measure_one(1, 2)
    parallel = {k: statistics.mean(r[k] for r in pair) for k in ("train", "valid", "setup")}
    ratios = speed["ratios"]
    recbole = {"train": serial["train"] / ratios["train_epoch"], "valid": serial["valid"] / ratios["eval"],
               "setup": RECBOLE_SETUP_S}
    costs = {"serial": serial, "parallel": parallel, "recbole": recbole, "parallel_runs": pair,
             "overrides": MEASURE_OVERRIDES, "recbole_ratios_from": str(SPEED.relative_to(ROOT)),
             "recbole_ratios": {"train_epoch": ratios["train_epoch"], "eval": ratios["eval"]},
             "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "command": "python bench/replay.py measure"}
    COSTS.write_text(json.dumps(costs, indent=1))
    return costs


# --- the replay against the real tool -----------------------------------------------------------------

# The two real studies' spaces, both sub-grids of the table's: the plain 8-point grid, and an 18-point grid
# (three learning rates x every dropout) for Hyperband; each is a full cross product, so the replay of a
# study on it has every point's curve.
CHECK_GRID = "learning_rate choice [0.005, 0.001]\ndropout_prob choice [0.0, 0.1, 0.2, 0.3]\n"
CHECK_HYPERBAND_GRID = ("learning_rate choice [0.005, 0.001, 0.0001]\n"
                        "dropout_prob choice [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]\n")


def truncated(points: list[Point], epochs: int) -> list[Point]:
    """The table as a study capped at ``epochs`` sees it. A capped trial computes exactly the table's
    first epochs (same seed, no learning-rate schedule, and RecBole's early stop cannot fire before
    stopping_step + 1 epochs); its test metric is not in the table (nan)."""
    return [Point(p.params, p.valid[:epochs], max(p.valid[:epochs]), math.nan) for p in points]


def real_study(space_file: Path, workers: int, epochs: int, pruner: str, seed: int, work: Path) -> dict[str, Any]:
    """Run the real tool on ``space_file`` with the table's fixed settings capped at ``epochs``."""
    import optuna
    from learning_curves import FIXED  # bench/ is this script's directory

    fixed = [f for f in FIXED if not f.startswith("--epochs=")] + [f"--epochs={epochs}"]
    storage = f"sqlite:///{work / 'study.db'}"
    command = [sys.executable, str(ROOT / "run_hyper.py"), "--model", "GRU4Rec", "--dataset", "ml-100k",
               "--params_file", str(space_file), *fixed, "--no-mlflow", "--workers", str(workers),
               "--storage", storage, "--study-name", "check", "--grid-order", "random", "--sampler-seed",
               str(seed), "--pruner", pruner, "--output_file", str(work / "hyper.result"), "--quiet"]
    tic = time.perf_counter()
    subprocess.run(command, cwd=work, check=True)
    command_s = time.perf_counter() - tic
    study = optuna.load_study(study_name="check", storage=storage)
    trials = [t for t in study.trials if t.datetime_start and t.datetime_complete]
    best = study.best_trial
    return {"command": " ".join(["python", "run_hyper.py", *command[2:]]),
            "wall_s": (max(t.datetime_complete for t in trials)
                       - min(t.datetime_start for t in trials)).total_seconds(),
            "command_s": command_s, "trials": len(trials),
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
            # epochs trained here: a trial that continued a saved fit reports its restored epochs again
            "epochs": sum(int(t.user_attrs.get("epochs_run", len(t.intermediate_values)))
                          - int(t.user_attrs.get("resumed_epochs") or 0) for t in trials),
            "chosen": best.user_attrs.get("config_params") or best.params, "chosen_valid": best.value}


CHECK_STUDIES = {"grid": "plain 8-point grid, 1 worker", "hyperband": "Hyperband over 18 points, 2 workers",
                 "sync-halving": "synchronous halving over 18 points, 2 workers"}


def check(epochs: int, seed: int, only: Sequence[str] = tuple(CHECK_STUDIES)) -> dict[str, Any]:
    """Real studies against their replays on this machine, costs measured first in the same session: a
    plain 8-point grid on one worker, Hyperband and synchronous halving over an 18-point grid on two
    workers (``only``: some of them; the others' earlier results are kept in replay_check.json)."""
    import tempfile

    costs_data = measure()
    costs = Costs.load()
    points, _ = load_table()
    capped = truncated(points, epochs)
    studies = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"grid": (CHECK_GRID, Strategy("grid", "grid"), 1),
                 "hyperband": (CHECK_HYPERBAND_GRID, Strategy("Hyperband", "grid", "hyperband"), 2),
                 "sync-halving": (CHECK_HYPERBAND_GRID, Strategy(SYNCHRONOUS, "grid", "sync-halving"), 2)}
        for key in only:
            name, (text, strategy, workers) = CHECK_STUDIES[key], cases[key]
            space_file = Path(tmp) / f"{strategy.name.lower()}.test"
            space_file.write_text(text)
            space = parse_space_file(space_file)
            in_grid = {params_key(space.to_config_values(p)) for p in space.grid()}
            subset = [p for p in capped if p.key in in_grid]
            if len(subset) != len(in_grid):
                raise SystemExit(f"{name}: the table has {len(subset)} of its {len(in_grid)} points")
            work = Path(tmp) / name.split(",")[0].replace(" ", "-")
            work.mkdir()
            cost = costs.for_workers(workers)
            predicted = (replay_rung_synchronous(subset, space, workers, seed, cost) if strategy.name == SYNCHRONOUS
                         else replay_tool(subset, space, strategy, workers, seed, cost, epochs))
            real = real_study(space_file, workers, epochs, strategy.pruner, seed, work)
            chosen = predicted.chosen()
            studies.append({
                "study": name, "real": real, "costs": costs_data,
                "replay": {"wall_s": predicted.wall, "trials": predicted.trials, "pruned": predicted.pruned,
                           "epochs": predicted.epochs, "chosen": chosen[3] if chosen else None,
                           "chosen_valid": chosen[1] if chosen else None},
                "real_over_replay": real["wall_s"] / predicted.wall,
                "same_config": chosen is not None and chosen[3] == real["chosen"],
            })
            print(f"{name}: real {real['wall_s']:.0f} s, replay {predicted.wall:.0f} s "
                  f"({real['wall_s'] / predicted.wall:.2f}x); chosen {real['chosen']} / "
                  f"{chosen[3] if chosen else None}", flush=True)
    path = ROOT / "bench" / "results" / "replay_check.json"
    earlier = json.loads(path.read_text())["studies"] if path.is_file() else []
    ran = {s["study"] for s in studies}
    studies = [s for s in earlier if s["study"] not in ran] + studies  # each study's latest check
    result = {"command": f"python bench/replay.py check --epochs {epochs} --check-seed {seed} --studies "
                         + " ".join(only), "epochs": epochs,
              "seed": seed, "costs": costs_data, "studies": studies,
              "within_15_percent": all(abs(s["real_over_replay"] - 1) <= 0.15 for s in studies),
              "same_configs": all(s["same_config"] for s in studies)}
    path.write_text(json.dumps(result, indent=1))
    return result


def markdown(result: dict[str, Any]) -> str:
    """docs/tuning.md's tables from a replay.json: every strategy, then the verdict."""
    def minutes(q: dict[str, float]) -> str:
        return "never" if math.isinf(q["median"]) else f"{q['median'] / 60:.0f} [{q['p25'] / 60:.0f}-" + (
            "never]" if math.isinf(q["p75"]) else f"{q['p75'] / 60:.0f}]")

    lines = ["| strategy | workers | to 1 % (min, median [p25-p75]) | reached | to the noise floor (min) | reached "
             "| study wall (min) | epochs trained | chosen config's test MRR@10 (median) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['strategy']} | {r['workers']} | {minutes(r['time_to_target_s'])} | "
                     f"{r['reached']}/{r['seeds']} | {minutes(r['time_to_target_noise_s'])} | "
                     f"{r['reached_noise']}/{r['seeds']} | {r['wall_s']['median'] / 60:.0f} | {r['epochs']:.0f} | "
                     f"{r['chosen_test_mrr']['median']:.4f} |")
    lines += ["", "| target | valid MRR@10 | fastest at 2 workers | reached | its time (min) | RecBole's (min) "
              "| speed-up | oracle (min) | the most any strategy could reach |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, (goal, _, verdict_key) in zip(("1 % below the best", "one noise floor below"), TARGETS, strict=True):
        v = result["verdict"][verdict_key]
        lines.append(f"| {name} | {result['targets_valid'][goal]:.4f} | {v['winner']} | {v['winner_reached']} | "
                     f"{v['winner_median_s'] / 60:.0f} | {v['recbole_median_s'] / 60:.0f} | "
                     f"{v['speedup_vs_recbole']:.2f}x | {v['oracle_s'] / 60:.0f} | {v['bound_speedup']:.1f}x |")
    return "\n".join(lines)


def defaults_findings(result: dict[str, Any]) -> str:
    """docs/tuning.md's list of the defaults taken from the replay (tuner/evidence.py holds them)."""
    rows = {(r["strategy"], r["workers"]): r for r in result["rows"]}
    chosen = result["defaults"]["budget_grid_pruner"]
    name = next(s.name for s in STRATEGIES if s.pruner == chosen)
    asha = rows[("ASHA (Ray)", 2)]["time_to_target_noise_s"]["median"]
    ours = rows[(name, 2)]["time_to_target_noise_s"]["median"]
    sync = rows[(SYNCHRONOUS, 2)]["time_to_target_noise_s"]["median"]
    ray = (f"ASHA, on Ray, is {(ours - asha) / 60:.0f} min faster ({asha / 60:.0f} min)" if asha < ours
           else f"ASHA, on Ray, takes {asha / 60:.0f} min")
    return "\n".join([
        f"- `EXPECTED_EPOCHS = {result['defaults']['expected_epochs']}`: the table's mean trial, for the plan.",
        f"- `PRUNED_EPOCH_FRACTION = {result['defaults']['pruned_epoch_fraction']}`: each pruner's share of the "
        "unpruned grid's epochs (1 worker). The plan uses it for pruned studies and for the `--budget 2h` "
        "alternative it names.",
        f"- `--budget` on a grid: `{chosen}`. It is the fastest Optuna pruner over the grid to the noise floor at "
        f"2 workers ({ours / 60:.0f} min) among those that finish a config while the first rung still runs. "
        f"{ray}; synchronous halving {sync / 60:.0f} min, but it finishes no config before every point has "
        "passed its rungs, and a budget can end sooner. On a sampled space: TPE with Hyperband, as the issue "
        "asks; on this grid, TPE does not beat the grid (item 7)."])


def splice(doc: str, blocks: dict[str, str]) -> str:
    """``doc`` with the text between each ``<!-- replay.py table: NAME -->`` marker and its closing one
    replaced by ``blocks[NAME]``; a missing marker is an error, never a silent skip."""
    for name, text in blocks.items():
        begin, end = f"<!-- replay.py table: {name} -->\n", f"<!-- /replay.py table: {name} -->"
        if begin not in doc or end not in doc:
            raise SystemExit(f"{DOC}: no block {name!r} (markers {begin.strip()} ... {end})")
        head, rest = doc.split(begin, 1)
        doc = head + begin + text + "\n" + end + rest.split(end, 1)[1]
    return doc


def table_findings(points: list[Point]) -> str:
    """docs/tuning.md's reading of the table: trial lengths, the best point's curve, valid against test,
    and the metric's noise floor."""
    best, goals = grid_best(points), targets(points)
    lengths = [len(p.valid) for p in points]
    early = min(11, len(best.valid) - 1)  # epoch 11 (from 0): where a pruner's later rungs look
    ahead_early = sum(len(p.valid) > early and p.valid[early] > best.valid[early] for p in points)
    floor = best.best_valid - goals["within_noise"]
    better_test = [p.test for p in points if p.test > best.test]
    return "\n".join([
        f"- **Trial length.** Trials run {min(lengths)} to {max(lengths)} epochs, mean "
        f"{statistics.mean(lengths):.1f}; {sum(n >= 50 for n in lengths)} of {len(points)} hit the 50-epoch cap.",
        f"- **The best valid point is a late, lone peak.** {_point(best)} reaches {best.best_valid:.4f} at epoch "
        f"{best.peak_epoch} (epochs from 0, as RecBole) of {len(best.valid)}. At epoch {early} it was "
        f"{best.valid[early]:.4f}, below {ahead_early} other point(s). "
        f"{sum(p.best_valid >= goals['within_1pct'] for p in points)} point(s) of {len(points)} are within 1 % of "
        f"it; {sum(p.best_valid >= goals['within_noise'] for p in points)} are within one noise floor (below).",
        f"- **Valid and test disagree.** The valid-best point's test MRR@10 ({best.test:.4f}) is below "
        f"{len(better_test)} other points' (up to {max(better_test, default=best.test):.4f}).",
        f"- **The noise floor.** Valid MRR@10 is a mean over {VALID_USERS} users, and a user's reciprocal rank is "
        "0 without a hit. By Cauchy-Schwarz, E[RR^2] >= E[RR]^2 / P(hit), so the standard error of the best "
        f"point's valid MRR@10 is at least {floor:.4f} ({floor / best.best_valid:.1%} of it; its Hit@10 is "
        f"{best.best_valid_hit:.4f}). The issue's 1 % target is {best.best_valid * WITHIN / floor:.2f} of that "
        "standard error: it asks a strategy to find one point that differs from others by less than the "
        "metric's own sampling noise."])


def _point(point: Point) -> str:
    return f"lr {point.params['learning_rate']}, dropout {point.params['dropout_prob']}"


def verdict_findings(result: dict[str, Any], points: list[Point]) -> str:
    """docs/tuning.md's reading of the replay ("What it says"), every number from ``result``."""
    rows = {(r["strategy"], r["workers"]): r for r in result["rows"]}
    costs, v1, vn = result["costs"], result["verdict"]["target_1pct"], result["verdict"]["target_noise"]
    design = SYNCHRONOUS
    best = grid_best(points)

    def minutes(seconds: float) -> str:
        return "never" if math.isinf(seconds) else f"{seconds / 60:.0f} min"

    def at(name: str, workers: int, key: str) -> float:
        return rows[(name, workers)][key]["median"]

    def reached(name: str, suffix: str = "") -> str:
        row = rows[(name, 2)]
        return f"{row[f'reached{suffix}']}/{row['seeds']}"

    pruners = [s.name for s in STRATEGIES if s.pruner != "none"]
    ours = [s.name for s in STRATEGIES if not s.recbole]
    by_noise = sorted((at(n, 2, "time_to_target_noise_s"), n) for n in ours)
    finite = [f"{n} {minutes(t)}" for t, n in by_noise if math.isfinite(t)]
    epoch_ratio = costs["recbole"]["train"] / costs["serial"]["train"]
    second_worker = 2 * costs["serial"]["train"] / costs["parallel"]["train"]
    pruned_tests = [rows[(n, 2)]["chosen_test_mrr"]["median"] for n in pruners]
    halving8 = at("successive halving", 8, "time_to_target_noise_s")
    oracle_share = 20 * v1["oracle_s"] / v1["recbole_median_s"]
    items = [
        f"1. **The issue's line (<= 1/20 of RecBole's time, 2 workers, 1 % target) does not hold, and on this "
        f"table only an oracle could make it hold.** The oracle trains a qualifying point first and alone and "
        f"finishes it in {minutes(v1['oracle_s'])}; RecBole's median is {minutes(v1['recbole_median_s'])}, so "
        f"{v1['bound_speedup']:.1f}x is the most any strategy could reach at these costs. To reach 20x, a strategy "
        f"would have to come within {1 / oracle_share - 1:.0%} of the oracle: train that point first and almost "
        f"nothing else, which is guessing, not search. The best built strategy at 2 workers is {v1['winner']} "
        f"({minutes(v1['winner_median_s'])}, {v1['speedup_vs_recbole']:.2f}x, reached in {v1['winner_reached']} "
        "orders). The pruners reach the 1 % target in "
        + ", ".join(f"{reached(n)} ({n})" for n in pruners) + " orders: they stop the late peak early.",
        f"2. **The 20x arithmetic assumed factors this machine does not have.** Our epoch is {epoch_ratio:.1f}x "
        f"faster than RecBole's, as assumed. The second worker is {second_worker:.2f}x, not 1.5x: on 2 cores, two "
        f"1-thread workers each train an epoch in {costs['parallel']['train']:.1f} s against "
        f"{costs['serial']['train']:.1f} s for one 2-thread worker. The strategy factor is bounded by the table: "
        f"the target is {_point(best)}, whose peak comes at epoch {best.peak_epoch}.",
        "3. **At the noise floor, multi-fidelity wins.** Median time at 2 workers: " + ", ".join(finite)
        + f", against RecBole's {minutes(vn['recbole_median_s'])} ({vn['winner']}: {vn['speedup_vs_recbole']:.2f}x; "
        f"the oracle bound there is {vn['bound_speedup']:.1f}x). Successive halving trains "
        f"{rows[('successive halving', 2)]['epochs']:.0f} epochs where the grid trains "
        f"{rows[('grid', 2)]['epochs']:.0f}.",
        f"4. **The chosen config.** The pruning strategies return configs whose test MRR@10 (median "
        f"{statistics.median(pruned_tests):.4f}) is at or above the grid best's ({best.test:.4f}): within "
        "RecBole's seed spread or above, as the issue asks. The valid-best point is a valid-noise winner.",
        f"5. **RecBole's early stop** returns a config more than 1 % below the grid's best in "
        f"{result['verdict']['recbole_returns_below_target']} orders, and below the noise floor in "
        f"{result['verdict']['recbole_returns_below_noise_target']}.",
        f"6. **Workers.** On this 2-core machine a second worker adds little ({second_worker:.2f}x throughput) and "
        f"lengthens each trial. At 8 workers on an 8-core machine, successive halving reaches the noise floor in "
        f"{minutes(halving8)} ({vn['recbole_median_s'] / halving8:.1f}x RecBole's serial run) and the grid in "
        f"{minutes(at('grid', 8, 'time_to_target_noise_s'))}.",
        f"7. **TPE** does not help on a 30-point grid of two choices: it reaches the noise floor in "
        f"{minutes(at('TPE', 2, 'time_to_target_noise_s'))} at 2 workers, against the plain grid's "
        f"{minutes(at('grid', 2, 'time_to_target_noise_s'))}; TPE + Hyperband "
        f"{minutes(at('TPE + Hyperband', 2, 'time_to_target_noise_s'))}.",
        f"8. **Synchronous halving** (`--pruner sync-halving`: every point's first epoch before any trial goes "
        f"on; the promoted continue their saved fit): the "
        f"whole study takes {minutes(rows[(design, 2)]['wall_s']['median'])} at 2 workers and chooses a config with "
        f"test MRR@10 {rows[(design, 2)]['chosen_test_mrr']['median']:.4f}. It reaches the 1 % target in "
        f"{reached(design)} orders and the noise floor in {reached(design, '_noise')} "
        f"({minutes(at(design, 2, 'time_to_target_noise_s'))}): its barrier screens every point on its first "
        "epochs, where the late-peaking best looks weak. It is the shape a short budget needs (every point "
        "screened before any goes deep). It is not `--budget`'s default: it finishes no config before every "
        "point has passed its rungs, so a budget that ends sooner leaves none (the defaults below)."]
    return "\n".join(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["measure", "run", "check", "table"])
    parser.add_argument("--epochs", type=int, default=3, help="check: the real studies' epochs cap")
    parser.add_argument("--check-seed", type=int, default=0, help="check: grid order and sampler seed")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 8])
    parser.add_argument("--partial", action="store_true", help="replay an unfinished table (development)")
    parser.add_argument("--write", action="store_true", help="table: write the blocks into docs/tuning.md")
    parser.add_argument("--studies", nargs="+", choices=list(CHECK_STUDIES), default=list(CHECK_STUDIES),
                        help="check: which real studies to run (sync-halving ~15 min, hyperband ~20, grid ~11)")
    parser.add_argument("--costs", type=Path, default=COSTS, help="the costs 'measure' wrote")
    args = parser.parse_args()
    if args.action == "measure":
        costs = measure()
        print(json.dumps({k: costs[k] for k in ("serial", "parallel", "recbole")}, indent=1))
        return
    if args.action == "check":
        check(args.epochs, args.check_seed, args.studies)
        return
    if args.action == "table":
        result = json.loads(OUT.read_text())
        points, _ = load_table()
        blocks = {"tables": markdown(result), "table-findings": table_findings(points),
                  "verdict-findings": verdict_findings(result, points), "defaults": defaults_findings(result)}
        if args.write:
            DOC.write_text(splice(DOC.read_text(), blocks))
            print(f"{DOC.relative_to(ROOT)}: {', '.join(blocks)} written from {OUT.relative_to(ROOT)}")
            return
        print("\n\n".join(f"<{name}>\n{text}" for name, text in blocks.items()))
        return
    points, table = load_table()
    if table["points_done"] < table["points_total"] and not args.partial:
        raise SystemExit(f"the table has {table['points_done']}/{table['points_total']} points: finish it "
                         "(python bench/learning_curves.py run) or pass --partial")
    costs = Costs.load(args.costs)
    seeds = list(range(args.seeds))
    tic = time.perf_counter()
    runs = replay_all(points, costs, seeds, args.workers)
    rows = summarize(runs, points)
    best = grid_best(points)
    result = {"command": "python bench/replay.py run " + " ".join(sys.argv[2:]), "table": str(TABLE.relative_to(ROOT)),
              "points": len(points), "points_total": table["points_total"], "seeds": seeds,
              "costs": json.loads(args.costs.read_text()),
              "grid_best": {"params": best.params, "valid": best.best_valid, "test": best.test},
              "targets_valid": targets(points), "rows": rows, "verdict": verdict(rows, points, costs),
              "defaults": defaults(rows, points),
              "replay_seconds": round(time.perf_counter() - tic, 1),
              "runs": [asdict(r) for r in runs]}
    OUT.write_text(json.dumps(result, indent=1))
    anytime_png(runs, points, args.workers)
    for row in rows:
        t, n = row["time_to_target_s"], row["time_to_target_noise_s"]
        print(f"{row['strategy']:32s} w={row['workers']}  to 1%: {t['median'] / 60:7.1f} min "
              f"reached {row['reached']:2d}/{row['seeds']}  to noise: {n['median'] / 60:7.1f} min "
              f"reached {row['reached_noise']:2d}/{row['seeds']}  wall {row['wall_s']['median'] / 60:7.1f} min  "
              f"pruned {row['pruned']:.0f}/{row['trials']:.0f}  test gap {row['chosen_test_gap_median']:+.1%}")
    print(json.dumps({"verdict": result["verdict"], "defaults (tuner/evidence.py)": result["defaults"]}, indent=1))


if __name__ == "__main__":
    main()
