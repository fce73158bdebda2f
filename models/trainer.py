"""Training and evaluation with RecBole's protocol: Adam, per-epoch validation, early stopping on
``valid_metric``, then the test set scored with the best-validation weights.

RecBole's sources of randomness are reproduced in the same order, so a seed gives RecBole's
initial weights, batch order and dropout masks: ``init_seed`` before the data and again before
the model; a dedicated ``torch.Generator(seed)`` shuffles the training set (one int64 draw and two
permutations per epoch, as torch's DataLoader + RandomSampler consume it); BPR negatives come
from numpy's global RNG, redrawn where they equal the target.
"""

from __future__ import annotations

import copy
import ctypes
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import fit_state
from models.base import SequentialRecommender
from models.config import Config
from models.data.samples import Batch, SampleSet, SequentialData
from models.data.sequential import load_sequential_data
from models.errors import ConfigError
from models.metrics import TopKAccumulator
from models.registry import create_model
from models.utils import atomic_path, init_seed, resolve_device, to_plain


@dataclass
class EpochReport:
    """What the per-epoch callback receives."""

    epoch: int  # 0-based, as RecBole logs it
    train_loss: float  # sum of batch losses over the epoch (RecBole's "train loss")
    train_seconds: float
    valid_result: dict[str, float] | None  # None on epochs without evaluation (eval_step)
    valid_score: float | None
    valid_seconds: float
    best_valid_score: float
    best_epoch: int
    improved: bool
    restored: bool = False  # an epoch of an earlier, stopped fit that this one continues (models.fit_state)


@dataclass
class TrainResult:
    model: str
    best_valid_score: float
    valid_score_bigger: bool
    best_valid_result: dict[str, float]
    test_result: dict[str, float]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    stopped_by_callback: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    checkpoint: str | None = None
    data_summary: dict[str, int] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)  # models with a pretraining stage (S3Rec)
    resumed_epochs: int = 0  # epochs continued from a saved state rather than trained here
    resume_state: str | None = None  # the state this fit left to continue from (stopped by its callback)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EpochCallback = Callable[[EpochReport], "bool | None"]


@dataclass(frozen=True)
class EpochCost:
    """What one training epoch and one validation of a config cost on this machine (a few warm batches)."""

    train_samples: int
    seconds_per_sample: float
    eval_seconds: float  # one full-sort evaluation of the validation users
    threads: int

    @property
    def epoch_seconds(self) -> float:
        return self.train_samples * self.seconds_per_sample + self.eval_seconds

_ALLOCATOR_TUNED: str | None = None


LOW_MEMORY_MMAP_BYTES = 8 << 20


def tune_allocator(low_memory: bool = False) -> None:
    """Keep freed memory in glibc's heap instead of returning it to the OS.

    A training step allocates tensors of tens of MB; by default glibc maps each one fresh and the
    kernel zero-fills every page on first touch, which cost ~25 % of an epoch here. The heap's price
    is fragmentation: the peak RSS grows past the live tensors (S3Rec's pretraining step: 5.5 GB of
    RSS for 1.8 GB live). ``low_memory`` maps buffers of 8 MB and more fresh again (so they return to
    the OS when freed) and keeps the heap for the small ones. Either way this changes how fast memory
    is obtained and how much is held, never what is computed. Process-wide: the last call decides.
    """
    global _ALLOCATOR_TUNED
    policy = "low" if low_memory else "fast"
    if policy == _ALLOCATOR_TUNED or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        libc.mallopt(m_mmap_threshold, LOW_MEMORY_MMAP_BYTES if low_memory else 2**31 - 1)
        libc.mallopt(m_trim_threshold, 2**31 - 1)
        libc.mallopt(m_top_pad, 256 << 20)
    except (OSError, AttributeError):
        pass
    _ALLOCATOR_TUNED = policy


class TrainShuffler:
    """RecBole's training order: DataLoader(shuffle=True, generator=Generator().manual_seed(seed))."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)

    def epoch_order(self) -> torch.Tensor:
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)  # DataLoader's base seed
        order = torch.randperm(self.n, generator=self.generator)
        torch.randperm(self.n, generator=self.generator)  # RandomSampler's trailing n % n draw
        return order


def sample_negatives(target: np.ndarray, n_items: int) -> np.ndarray:
    """One uniform negative in [1, n_items) per row, redrawn while it equals the row's target."""
    negatives = np.random.randint(1, n_items, len(target))
    redraw = np.flatnonzero(negatives == target)
    while len(redraw):
        negatives[redraw] = np.random.randint(1, n_items, len(redraw))
        redraw = redraw[negatives[redraw] == target[redraw]]
    return negatives


def progress(iterable: Any, enabled: bool, **kwargs: Any) -> Any:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, leave=False, dynamic_ncols=True, **kwargs)


def show_progress(config: Config) -> bool:
    setting = config.get("show_progress", "auto")
    if setting == "auto":
        return sys.stderr.isatty()
    return bool(setting)


def eval_users_per_batch(eval_batch_size: int, score_mb: int, n_items: int) -> int:
    """Users per full-sort batch: RecBole's eval_batch_size, fewer when their [B, N] float32 scores and
    topk's working copy would exceed ``score_mb`` (a catalogue of millions of items); at least one."""
    per_user = n_items * 4 * 2  # the scores and topk's working copy, in bytes
    return max(1, min(eval_batch_size, score_mb * 2**20 // per_user))


class Trainer:
    def __init__(self, config: Config, model: SequentialRecommender, data: SequentialData) -> None:
        self.config = config
        self.model = model
        self.data = data
        self.device = torch.device(resolve_device(config.get("device")))
        self.model.to(self.device)
        learner = str(config["learner"]).lower()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizers = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad,
                      "rmsprop": torch.optim.RMSprop, "adamw": torch.optim.AdamW}
        if learner not in optimizers:
            known = ", ".join(optimizers)
            raise ConfigError(f"{config.sources.get('learner')}: unknown learner {learner!r}; one of {known}")
        self.optimizer = optimizers[learner](params, lr=config["learning_rate"], weight_decay=config["weight_decay"])
        self.shuffler = TrainShuffler(len(data.train), config["seed"])
        self.bigger = bool(config["valid_metric_bigger"])
        self.valid_key = str(config["valid_metric"]).lower()
        self.show_progress = show_progress(config)

    # -- one epoch -------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> float:
        self.model.train()
        train = self.data.train
        order = self.shuffler.epoch_order()
        batch_size = self.config["train_batch_size"]
        clip = self.config.get("clip_grad_norm")
        total = 0.0
        starts = range(0, len(train), batch_size)
        for start in progress(starts, self.show_progress, desc=f"epoch {epoch}", unit="batch"):
            total += self.train_step(train.batch(order[start : start + batch_size]), clip)
            if not math.isfinite(total):
                raise FloatingPointError(f"training loss is {total} at epoch {epoch}")
        return total

    def train_step(self, batch: Batch, clip: dict[str, Any] | None) -> float:
        """One optimizer step on one batch; returns its loss."""
        if self.model.needs_negatives:
            batch.neg_item = torch.from_numpy(sample_negatives(batch.target.numpy(), self.data.n_items))
        batch = batch.to(self.device)
        self.optimizer.zero_grad()
        loss = self.model.calculate_loss(batch)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), **clip)
        self.optimizer.step()
        return loss.item()

    @torch.no_grad()
    def evaluate(self, samples: SampleSet) -> dict[str, float]:
        self.model.eval()
        cfg = self.config
        accumulator = TopKAccumulator(cfg["metrics"], cfg["topk"], cfg["metric_decimal_place"])
        for batch in samples.batches(eval_users_per_batch(cfg["eval_batch_size"], cfg["eval_score_mb"],
                                                          self.data.n_items)):
            batch = batch.to(self.device)
            scores = self.model.full_sort_predict(batch)  # [B, N]
            scores[:, 0] = -torch.inf
            accumulator.add(scores, batch.target)
        return accumulator.result()

    # -- the loop --------------------------------------------------------------------------
    def fit(self, callback: EpochCallback | None = None, checkpoint_path: Path | None = None,
            resume_dir: Path | None = None) -> TrainResult:
        """Train to early stop (or ``epochs``, or until ``callback`` returns True), then test the best weights.

        ``resume_dir``: keep the fit's state there (``fit_state.SAVE_EVERY_SECONDS``) and continue a state
        of this same computation found there (``models.fit_state``): its epochs go to ``callback`` first, marked
        ``restored``, and training goes on from the next one. The state is removed when the fit ends on
        its own and kept (``resume_state``) when the callback stopped it."""
        cfg = self.config
        loop: dict[str, Any] = {"next_epoch": 0, "best_score": -math.inf if self.bigger else math.inf,
                                "best_result": None, "best_epoch": -1, "bad_evals": 0, "history": [],
                                "train_seconds": 0.0, "eval_seconds": 0.0}
        best_state: dict[str, torch.Tensor] | None = None
        stopped_early = stopped_by_callback = False
        state_path = fit_state.state_path(resume_dir, cfg, self.data, self.model) if resume_dir else None
        saved = fit_state.load(state_path) if state_path is not None else None
        if saved is not None and saved["loop"]["next_epoch"] <= cfg["epochs"]:  # else past this fit's end
            loop = fit_state.restore(saved, self)
            best_state = loop.pop("best_state")
            for entry in loop["history"]:  # the callback hears every epoch once, in order
                if callback is not None and callback(EpochReport(**{**entry, "restored": True})):
                    stopped_by_callback = True  # it already ran past here: it stops after them
            stopped_early = loop["bad_evals"] > cfg["stopping_step"]
        resumed_epochs = loop["next_epoch"]
        saved_at = time.monotonic()
        eval_step = cfg["eval_step"]
        epochs = range(loop["next_epoch"], cfg["epochs"]) if not (stopped_by_callback or stopped_early) else ()
        for epoch in epochs:
            tic = time.perf_counter()
            loss = self.train_epoch(epoch)
            train_time = time.perf_counter() - tic
            loop["train_seconds"] += train_time
            valid_result, valid_score, valid_time, improved = None, None, 0.0, False
            if eval_step > 0 and (epoch + 1) % eval_step == 0 and len(self.data.valid):
                tic = time.perf_counter()
                valid_result = self.evaluate(self.data.valid)
                valid_time = time.perf_counter() - tic
                loop["eval_seconds"] += valid_time
                valid_score = valid_result[self.valid_key]
                # RecBole's early_stopping: ties count as improvements
                best_score = loop["best_score"]
                improved = valid_score >= best_score if self.bigger else valid_score <= best_score
                if improved:
                    loop.update(best_score=valid_score, best_result=valid_result, best_epoch=epoch, bad_evals=0)
                    best_state = copy.deepcopy(self.model.state_dict())
                else:
                    loop["bad_evals"] += 1
            elif eval_step <= 0 or not len(self.data.valid):  # RecBole keeps the last epoch
                best_state, improved = copy.deepcopy(self.model.state_dict()), True
                loop["best_epoch"] = epoch
            report = EpochReport(epoch, loss, train_time, valid_result, valid_score, valid_time,
                                 loop["best_score"], loop["best_epoch"], improved)
            loop["history"].append(asdict(report))
            loop["next_epoch"] = epoch + 1
            stop = callback is not None and bool(callback(report))
            if state_path is not None and (stop or time.monotonic() - saved_at >= fit_state.SAVE_EVERY_SECONDS):
                fit_state.save(state_path, self, loop, best_state)  # a stop continues from here
                saved_at = time.monotonic()
            if stop:
                stopped_by_callback = True
                break
            if loop["bad_evals"] > cfg["stopping_step"]:
                stopped_early = True
                break
        if state_path is not None and not stopped_by_callback:
            state_path.unlink(missing_ok=True)  # finished: nothing to continue
        if best_state is not None:
            self.model.load_state_dict(best_state)
        if checkpoint_path is not None and best_state is not None:
            save_checkpoint(checkpoint_path, self.model, cfg, loop["best_epoch"])
        tic = time.perf_counter()
        test_result = self.evaluate(self.data.test)
        loop["eval_seconds"] += time.perf_counter() - tic
        best_result = loop["best_result"]
        return TrainResult(
            model=cfg.model,
            best_valid_score=loop["best_score"] if best_result is not None else float("nan"),
            valid_score_bigger=self.bigger,
            best_valid_result=best_result or {},
            test_result=test_result,
            best_epoch=loop["best_epoch"],
            epochs_run=loop["next_epoch"],
            stopped_early=stopped_early,
            stopped_by_callback=stopped_by_callback,
            history=loop["history"],
            train_seconds=loop["train_seconds"],
            eval_seconds=loop["eval_seconds"],
            checkpoint=str(checkpoint_path) if checkpoint_path is not None and best_state is not None else None,
            data_summary=self.data.summary(),
            resumed_epochs=resumed_epochs,
            resume_state=str(state_path) if state_path is not None and stopped_by_callback else None,
        )


def save_checkpoint(path: Path, model: torch.nn.Module, config: Config, epoch: int) -> None:
    """Write the weights and the plain config atomically; loadable with weights_only=True."""
    state = {"state_dict": model.state_dict(), "epoch": epoch, "config": to_plain(config.to_dict())}
    with atomic_path(Path(path)) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, model: torch.nn.Module) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["state_dict"])
    return state


def prepare(config: Config, data: SequentialData | None = None) -> tuple[SequentialData, SequentialRecommender]:
    """Seed, load (cached) data and build the model, in RecBole's order of RNG use."""
    tune_allocator(bool(config.get("low_memory")))  # a model's key (S3Rec's): see tune_allocator
    threads = int(config.get("threads") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    init_seed(config["seed"], config["reproducibility"])
    if data is None:
        data = load_sequential_data(config)
    init_seed(config["seed"], config["reproducibility"])
    model = create_model(config.model, config, data)
    return data, model


def seconds_per_train_sample(trainer: Trainer, size: int, batches: int) -> float:
    """Time ``batches`` training steps of ``size`` random rows (after one to warm up): seconds per sample.
    Random rows, as an epoch's shuffled batches: a sample's cost grows with its history's length."""
    train = trainer.data.train
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    steps = [train.batch(order[(i * size) % len(order):][:size]) for i in range(batches + 1)]
    trainer.model.train()
    trainer.train_step(steps[0], None)
    tic = time.perf_counter()
    for batch in steps[1:]:
        trainer.train_step(batch, None)
    return (time.perf_counter() - tic) / sum(len(b) for b in steps[1:])


def measure_epoch_cost(config: Config, batches: int = 3) -> EpochCost:
    """Time ``batches`` training steps (after one to warm up) and one validation pass (after one), with
    the config's own model, batch size and threads. A model's separate stage (S3Rec's pretraining) is
    not included: this is the cost of the epochs that train and validate."""
    data, model = prepare(config)
    model.epochs_stage()
    trainer = Trainer(config, model, data)
    per_sample = seconds_per_train_sample(trainer, min(int(config["train_batch_size"]), len(data.train)), batches)
    trainer.evaluate(data.valid)
    tic = time.perf_counter()
    trainer.evaluate(data.valid)
    return EpochCost(len(data.train), per_sample, time.perf_counter() - tic, torch.get_num_threads())


def train(
    config: Config,
    data: SequentialData | None = None,
    callback: EpochCallback | None = None,
    checkpoint_path: str | Path | None = None,
    resume_dir: str | Path | None = None,
) -> TrainResult:
    """The library's one entry point: train a config, reporting each epoch, and return the result.
    ``resume_dir``: continue a stopped fit of the same computation, and keep this one's state (``Trainer.fit``)."""
    data, model = prepare(config, data)
    checkpoint = Path(checkpoint_path) if checkpoint_path else None
    resume = Path(resume_dir) if resume_dir else None
    staged_fit = getattr(model, "staged_fit", None)  # a model with stages of its own (S3Rec's pretraining)
    if staged_fit is not None:
        return staged_fit(data, callback, checkpoint, resume)
    return Trainer(config, model, data).fit(callback, checkpoint, resume)
