"""The study plan, shown before anything runs: trials, strategy, workers x threads, and the wall time
the study will take, from a measured cost model.

An epoch's cost is measured on this machine for the study's own model, data and shapes
(``models.trainer.measure_epoch_cost``: a few warm training batches and one validation pass, at the
threads each worker will get) and cached per model, dataset, shape and thread count, so the plan costs
seconds once and nothing after. A measurement during which other processes kept more than a quarter of
the cores busy is used for this plan only, said so, and not cached: a busy moment must not stand for the
machine in every later plan. A trial is ``expected_epochs`` of those (the learning-curve table's trials
under the study's early stop and cap, less the share a pruner stops: tuner/evidence.py); the study is its
trials spread over the workers. Above two hours the plan says so and names what would fit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.data.datasets import cache_root
from models.utils import atomic_path
from tuner.evidence import budget_pruner, pruned_epoch_fraction, trial_epochs
from tuner.proctree import machine_busy_seconds, tree_cpu_seconds
from tuner.reporting.progress import format_duration
from tuner.request import StudyRequest, cpu_count

if TYPE_CHECKING:
    from models.trainer import EpochCost

LONG_STUDY_SECONDS = 2 * 3600
BUSY_SHARE = 0.25  # of the cores, kept busy by other processes: above it a measurement is not cached
NOISE_SECONDS = 0.2  # of other processes' CPU time: below it, /proc's tick rounding (see OthersLoad)
SHAPE_KEYS = ("train_batch_size", "eval_batch_size", "MAX_ITEM_LIST_LENGTH")  # besides a model's int keys


@dataclass(frozen=True)
class StudyEstimate:
    trials: int
    workers: int
    threads: int
    epoch_seconds: float  # mean over the study's points: one training epoch and one validation
    epochs_per_trial: float
    test_seconds: float = 0.0  # a finished trial's test evaluation (one more full-sort pass)
    finished: int = 0  # trials a resumed study already has (COMPLETE or PRUNED): not run again
    pretrain: PretrainEstimate | None = None  # a model's pretraining stage, where it has one
    work: StudyWork | None = field(default=None, repr=False, compare=False)  # what it was computed from
    # the most cores other processes used while this estimate measured (0: cached): how, not what, it measured
    busy_cores: float = field(default=0.0, compare=False)
    crowding: float = 1.0  # threads of all workers per core, where above 1: each epoch takes that much longer

    @property
    def trial_seconds(self) -> float:
        return self.epoch_seconds * self.epochs_per_trial + self.test_seconds

    @property
    def measured_busy(self) -> bool:
        """Measured while other processes kept the cores busy: the times are that busy machine's."""
        return self.busy_cores > BUSY_SHARE * cpu_count()

    @property
    def to_run(self) -> int:
        return max(0, self.trials - self.finished)

    @property
    def study_seconds(self) -> float:
        """What is left of the study: the trials still to run, spread over the workers, and the
        pretrainings they need (distinct keys train in parallel, one key's trials wait for it)."""
        pretrain = 0.0
        if self.pretrain is not None and self.pretrain.keys:
            pretrain = self.pretrain.seconds / min(self.workers, self.pretrain.keys)
        return math.ceil(self.to_run / self.workers) * self.trial_seconds + pretrain


def busy_measurement(e: StudyEstimate) -> str:
    return f"other processes kept ~{e.busy_cores:.1f} of the {cpu_count()} cores busy while the cost was measured"


def expected_epochs(request: StudyRequest) -> float:
    """Epochs per trial on average: the table's trials under this early stop and cap, less what the
    pruner stops."""
    base = request.base
    cap = int(base["epochs"])
    return (trial_epochs(int(base["stopping_step"]), cap, int(base["eval_step"]))
            * pruned_epoch_fraction(request.pruner, cap))


def shape_of(request: StudyRequest, params: dict[str, Any]) -> dict[str, Any]:
    """The values that decide an epoch's cost (sizes, not rates): a model's integer keys and the batch
    and sequence lengths; not its counts (``pretrain_epochs``, ``save_step``: how many, not how big)."""
    from models.config import config_fields

    config = request.spec.config(params)
    ints = {f.name for f in config_fields(request.spec.model)
            if f.kind is int and not f.name.endswith(("epochs", "_step"))}
    return {key: config[key] for key in sorted(ints | set(SHAPE_KEYS)) if key in config and key != "seed"}


class OthersLoad:
    """The cores that other processes kept busy, on average, while the block ran: the machine's busy
    CPU time (/proc/stat) less this command's own (this process, its threads and every descendant, such
    as the workers' fork server, which imports while the plan measures). None where /proc is missing."""

    cores: float | None = None

    def __enter__(self) -> OthersLoad:
        self._start = (machine_busy_seconds(), tree_cpu_seconds(os.getpid()), time.monotonic())
        return self

    def __exit__(self, *exc: object) -> None:
        machine, own, tic = self._start
        while True:
            now, own_now = machine_busy_seconds(), tree_cpu_seconds(os.getpid())
            if machine is None or now is None or own is None or own_now is None:
                return
            others = (now - machine) - (own_now - own)
            elapsed = max(time.monotonic() - tic, 1e-6)
            # a block too short for a busy machine's share to rise above the noise (a toy dataset's
            # epoch: 40 ms) is watched on until it is long enough: else it reads "quiet" and is cached
            if exc[0] is not None or others >= NOISE_SECONDS or elapsed >= min_window_seconds():
                break
            time.sleep(min(0.05, min_window_seconds() - elapsed))
        # /proc counts CPU time in clock ticks (10 ms), per process: over a short block that rounding alone
        # reads as whole cores (a 20 ms block read 0-2.9 on an idle machine), so less than NOISE_SECONDS
        # of others' time counts as none
        self.cores = others / elapsed if others >= NOISE_SECONDS else 0.0


def min_window_seconds() -> float:
    """How long OthersLoad watches at least: long enough that others keeping ``BUSY_SHARE`` of the cores
    busy add up to NOISE_SECONDS of CPU time (0.4 s on 2 cores)."""
    return NOISE_SECONDS / (BUSY_SHARE * cpu_count())


def epoch_cost(request: StudyRequest, params: dict[str, Any], threads: int,
               stage: str = "train") -> tuple[EpochCost, float]:
    """The measured cost of one epoch of ``params`` at ``threads``, cached per machine and shape:
    ``stage`` "train" (training and validation) or "pretrain" (a model's pretraining stage). With it, the
    cores other processes kept busy while it was measured (0.0 when read from the cache)."""
    import torch

    from models.pretrain import measure_pretrain_cost
    from models.trainer import measure_epoch_cost

    shape = shape_of(request, params)
    key = {"model": request.spec.model, "dataset": request.spec.dataset,
           "data_path": str(request.base.get("data_path")), "shape": shape, "threads": threads,
           "machine": [platform.machine(), platform.processor(), platform.node()], "torch": torch.__version__,
           **({"stage": stage} if stage != "train" else {})}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=repr).encode()).hexdigest()[:16]
    path = cache_root() / "costs" / f"{request.spec.model}-{digest}.json"
    cached = read_cached_cost(path)
    if cached is not None:
        return cached, 0.0
    measure = measure_pretrain_cost if stage == "pretrain" else measure_epoch_cost
    before = torch.get_num_threads()
    try:
        with OthersLoad() as load:
            cost = measure(request.spec.config({**params, "threads": threads}))
    finally:
        torch.set_num_threads(before)  # the driver's own threads stay as they were
    busy = load.cores or 0.0
    if busy <= BUSY_SHARE * cpu_count():
        with atomic_path(path) as tmp:  # plans running at once never read half a file
            tmp.write_text(json.dumps({"key": key, "cost": cost.__dict__, "others_cores": round(busy, 2)}, indent=1,
                                      default=repr))
    return cost, busy


def read_cached_cost(path: Path) -> EpochCost | None:
    """A cached measurement; None (measure again) where there is none or it cannot be read as one, e.g.
    written by another version."""
    from models.trainer import EpochCost

    try:
        return EpochCost(**json.loads(path.read_text())["cost"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class PretrainEstimate:
    """A model's pretraining stage over the study (S3Rec): each distinct pretraining cache key trains
    once, up to the longest ``pretrain_epochs`` its points ask for, less what the cache already holds."""

    seconds: float
    keys: int  # distinct pretrainings that still train
    epochs: int  # their epochs, all keys together
    busy_cores: float = field(default=0.0, compare=False)  # as StudyEstimate's


@dataclass(frozen=True)
class PretrainGroup:
    """One pretraining cache key among the study's points: the epochs its points ask for, what the cache
    holds, its save step and the first point's parameters (whose shape the cost is measured on)."""

    requested: tuple[int, ...]
    cached: tuple[int, ...]
    save_step: int
    params: dict[str, Any]


def pretrain_groups(request: StudyRequest, points: list[dict[str, Any]]) -> list[PretrainGroup]:
    """The study's points grouped by pretraining cache key (``train_stage: auto`` only; none for models
    without a pretraining stage). Loads the data and builds each model: done once per plan."""
    from models.data.sequential import load_sequential_data
    from models.pretrain import cached_pretraining
    from models.registry import create_model

    groups: dict[str, PretrainGroup] = {}
    for params in points:
        config = request.spec.config(params)
        if str(config.get("train_stage", "")).lower() != "auto" or not config.get("pretrain_epochs"):
            continue
        data = load_sequential_data(config)
        key, cached = cached_pretraining(create_model(config.model, config, data), config, data)
        group = groups.get(key) or PretrainGroup((), tuple(cached), int(config["save_step"]), params)
        groups[key] = PretrainGroup((*group.requested, int(config["pretrain_epochs"])), group.cached,
                                    group.save_step, group.params)
    return list(groups.values())


def pretraining(request: StudyRequest, groups: Sequence[PretrainGroup], threads: int) -> PretrainEstimate:
    """What the study's points still have to pretrain at ``threads``. A sampled space has no points to
    group: every trial is counted as its own pretraining when the space searches anything the cache key
    holds, else one for the study."""
    from models.pretrain import epochs_to_pretrain

    repeat = 1
    if request.algo != "grid" and request.space.parameters:
        repeat = request.n_trials  # a sampled space: assume every trial pretrains a key of its own
    seconds = busy = 0.0
    keys = epochs = 0
    for group in groups:
        todo = epochs_to_pretrain(group.requested, group.cached, group.save_step)
        if todo:
            cost, others = epoch_cost(request, group.params, threads, stage="pretrain")
            seconds += todo * cost.epoch_seconds * repeat
            keys += repeat
            epochs += todo * repeat
            busy = max(busy, others)
    return PretrainEstimate(seconds, keys, epochs, busy)


def finished_trials(request: StudyRequest) -> int:
    """Trials the stored study already finished (a resume runs only the rest); 0 for a new study. A plan
    creates nothing (stored_trials only reads)."""
    from tuner.backends.optuna.storage import stored_trials

    trials = stored_trials(request.storage, request.study_name) or []
    return sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)


@dataclass(frozen=True)
class StudyWork:
    """What a plan is computed from that does not depend on the workers: the points grouped by shape
    (one measurement each), the trials a resumed study already finished, the pretrainings it needs."""

    points: int
    by_shape: tuple[tuple[dict[str, Any], int], ...]  # (a point of that shape, how many points have it)
    finished: int
    pretrain_groups: tuple[PretrainGroup, ...]


def study_work(request: StudyRequest) -> StudyWork:
    from tuner.space import decode_value

    points = [{k: decode_value(v) for k, v in point.items()}
              for point in request.grid_points or (request.space.grid() if request.algo == "grid" else [{}])]
    by_shape: dict[str, tuple[dict[str, Any], int]] = {}
    for params in points:
        shape = json.dumps(shape_of(request, params), sort_keys=True, default=repr)
        first, count = by_shape.get(shape, (params, 0))
        by_shape[shape] = (first, count + 1)
    return StudyWork(len(points), tuple(by_shape.values()), finished_trials(request),
                     tuple(pretrain_groups(request, points)))


def estimate(request: StudyRequest, workers: int | None = None, work: StudyWork | None = None) -> StudyEstimate:
    """The study's wall time with ``workers`` (default: the request's), each at its share of the cores;
    ``work`` from an earlier estimate of the same request skips reading the storage and the data again."""
    workers = workers or request.workers
    threads = max(1, cpu_count() // workers) if workers > 1 else (request.threads_per_worker or cpu_count())
    work = work or study_work(request)
    measured = [(*epoch_cost(request, params, threads), n) for params, n in work.by_shape]
    # more workers' threads than cores: each was measured alone, and shares its core with the others
    crowding = max(1.0, workers * threads / cpu_count())
    epoch = crowding * sum(cost.epoch_seconds * n for cost, _, n in measured) / work.points
    test = crowding * sum(cost.eval_seconds * n for cost, _, n in measured) / work.points  # test users = valid
    pretrain = pretraining(request, work.pretrain_groups, threads)
    busy = max([pretrain.busy_cores, *(others for _, others, _ in measured)])
    return StudyEstimate(request.n_trials, workers, threads, epoch, expected_epochs(request), test,
                         work.finished, pretrain, work, busy, crowding)


def describe(request: StudyRequest, plan_estimate: StudyEstimate) -> list[str]:
    """The plan as the user reads it, with alternatives when the study is long."""
    e = plan_estimate
    pruning = "" if request.pruner == "none" else f", {request.pruner} pruning (less: weak trials stop early)"
    resumed = f", {e.finished} finished before: {e.to_run} to run" if e.finished else ""
    lines = [f"plan: {e.trials} trials ({request.algo}{pruning}{resumed}) on {e.workers} worker(s) x "
             f"{e.threads} thread(s); "
             f"an epoch ~{format_duration(e.epoch_seconds)} (measured here), ~{e.epochs_per_trial:.0f} epochs per "
             f"trial (early stop or the epochs cap), a trial ~{format_duration(e.trial_seconds)}: "
             f"the study ~{format_duration(e.study_seconds)}"]
    if e.pretrain is not None and e.pretrain.keys:
        lines[0] += (f" (pretraining included: {e.pretrain.keys} distinct pretraining(s), {e.pretrain.epochs} "
                     f"epochs, ~{format_duration(e.pretrain.seconds)} of training; cached epochs are not counted)")
    if e.crowding > 1:
        lines.append(f"note: {e.workers} worker(s) x {e.threads} thread(s) on {cpu_count()} cores share them: each "
                     f"epoch takes ~{e.crowding:.3g}x as long as alone (counted above), so the study is no faster "
                     f"than with --workers {cpu_count()}, which holds less memory")
    if e.measured_busy:
        lines.append(f"note: {busy_measurement(e)}: the times above are for a machine that busy; the measurement "
                     "is not kept, the next plan measures again")
    if e.study_seconds <= LONG_STUDY_SECONDS:
        return lines
    per_trial = e.study_seconds / e.to_run
    fit = max(1, int(LONG_STUDY_SECONDS / per_trial))
    left = "this study takes" if not e.finished else "what is left of this study takes"
    lines.append(f"note: {left} about {format_duration(e.study_seconds)}, over 2 h. What fits in 2 h:")
    if request.algo == "grid":
        lines.append(f"  - {fit} of the {e.to_run} points: --timeout 7200 --grid-order random runs an unbiased "
                     "sample of the grid (the same command later resumes it), or a smaller space")
    else:  # a sampled space has no grid to sample: fewer trials of the same search
        lines.append(f"  - {fit} of the {e.to_run} trials: --n-trials {e.finished + fit} or --timeout 7200 (the same "
                     f"command with more later continues the {request.algo} search)")
    for workers in sorted({2, max(2, cpu_count())} - {e.workers}):
        other = estimate(request, workers, plan_estimate.work)
        lines.append(f"  - --workers {workers}: ~{format_duration(other.study_seconds)}")
    if request.pruner == "none":
        pruner = budget_pruner(request.algo, request.tool)
        share = pruned_epoch_fraction(pruner, int(request.base["epochs"]))
        if share < 1:
            pruned = replace(e, epochs_per_trial=e.epochs_per_trial * share)
            lines.append(f"  - --budget 2h: {pruner} pruning over epochs (weak trials stop after a few), the "
                         f"best config found within 2 h; all of it with {pruner}: ~"
                         f"{format_duration(pruned.study_seconds)} (the learning-curve table's share of epochs)")
    return lines

