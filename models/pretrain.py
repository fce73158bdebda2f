"""Pretraining before fine-tuning (S3Rec), with RecBole's optimiser and data order and a shared cache.

RecBole pretrains in one run (``train_stage: pretrain``, a checkpoint every ``save_step`` epochs) and
fine-tunes in another (``train_stage: finetune``, ``pre_model_path``). ``train_stage: auto`` does
both in one call: the pretraining run exactly as RecBole's (same seeding, shuffling, optimiser,
``train_batch_size``/``learning_rate`` unless ``pretrain_batch_size``/``pretrain_learning_rate`` are
set), then ``init_seed`` again, as the fresh finetune process would, and RecBole's finetune run.

Pretrained weights are cached under ``cache_root()/s3rec/<dataset>-<key>/pretrain-<E>.pth`` (the
model's name in lower case). The key covers everything that changes them (the training samples and
item attributes by content, the model's ``pretrain_keys``, seed, optimiser, pretraining batch size
and learning rate, gradient clipping, device type, and the source of the model's code) but not
``pretrain_epochs``: each file holds the weights after E epochs plus the optimiser and RNG states at
that point, so a request for more epochs continues from the longest shorter run and ends
bit-identical to an uninterrupted run. Files are written every ``save_step`` epochs and at the end,
by atomic rename, under a per-key lock: concurrent trials with the same key pretrain once and never
read a half-written file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import re
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from models.config import Config
from models.data.datasets import cache_root
from models.data.samples import SequentialData
from models.fit_state import capture_rng, code_digest, restore_rng
from models.trainer import (
    EpochCallback,
    EpochCost,
    EpochReport,
    Trainer,
    TrainResult,
    prepare,
    seconds_per_train_sample,
)
from models.utils import atomic_path, file_lock, init_seed, resolve_device, to_plain

CACHE_FORMAT = 1
_FILE = re.compile(r"^pretrain-(\d+)\.pth$")


def pretrain_config(config: Config) -> Config:
    """The config the pretraining optimiser and loader read: the fine-tuning one, with the
    ``pretrain_*`` overrides applied when set."""
    values = dict(config.values)
    for key, target in (("pretrain_learning_rate", "learning_rate"), ("pretrain_batch_size", "train_batch_size")):
        if config.get(key) is not None:
            values[target] = config[key]
    return Config(config.model, config.dataset, values, dict(config.sources), list(config.warnings))


def data_digest(data: SequentialData) -> str:
    """What pretraining reads from the data, by content: training samples, attributes, sizes."""
    digest = hashlib.sha256()
    digest.update(json.dumps([data.n_items, data.max_len, len(data.train)]).encode())
    # the training histories by content: the item array and each sample's window of it
    for tensor in (data.train.items, data.train.start, data.train.item_length, data.extras.get("item_features")):
        if tensor is not None:
            digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_key(model: Any, config: Config, data: SequentialData) -> tuple[str, dict[str, Any]]:
    pre = pretrain_config(config)
    params = {
        "format": CACHE_FORMAT,
        "code": code_digest(model),
        "model": config.model,
        "data": data_digest(data),
        "data_checksum": data.checksum,
        **{k: config[k] for k in model.pretrain_keys},
        "seed": config["seed"],
        "reproducibility": bool(config["reproducibility"]),
        "learner": str(config["learner"]).lower(),
        "learning_rate": float(pre["learning_rate"]),
        "weight_decay": float(config["weight_decay"]),
        "train_batch_size": pre["train_batch_size"],
        "clip_grad_norm": config.get("clip_grad_norm"),
        "device": torch.device(resolve_device(config.get("device"))).type,
    }
    params = to_plain(params)
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    return key, params


def cache_dir(model: Any, config: Config, data: SequentialData) -> tuple[Path, dict[str, Any]]:
    key, params = cache_key(model, config, data)
    return cache_root() / config.model.lower() / f"{data.name}-{key}", params


def _read(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a stale or foreign file is retrained, never trusted
        return None
    return state if isinstance(state, dict) and state.get("format") == CACHE_FORMAT else None


def _cached_epochs(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _FILE.match(p.name)))


def cached_pretraining(model: Any, config: Config, data: SequentialData) -> tuple[str, list[int]]:
    """The pretraining cache key of ``config`` and the epoch counts already cached under it."""
    directory, _ = cache_dir(model, config, data)
    return directory.name, _cached_epochs(directory)


def epochs_to_pretrain(requested: Sequence[int], cached: Sequence[int], save_step: int) -> int:
    """The epochs that pretraining to each of ``requested`` costs under one cache key, run in ascending
    order: each continues from the longest cached shorter run, and leaves a file every ``save_step``
    epochs and at its end."""
    have, total = set(cached), 0
    for epochs in sorted(set(requested)):
        if epochs <= 0 or epochs in have:
            continue
        start = max((done for done in have if done < epochs), default=0)
        total += epochs - start
        have |= set(range(start - start % save_step + save_step, epochs, save_step)) | {epochs}
    return total


def measure_pretrain_cost(config: Config, batches: int = 2, max_batch: int = 512) -> EpochCost:
    """Time ``batches`` pretraining steps (after one to warm up) at the config's threads; the epoch is
    ``len(train)`` samples at that cost per sample. Steps of at most ``max_batch`` rows: a pretraining
    step at RecBole's 2048 takes ~20 s on 2 cores, and the cost per sample barely depends on the batch."""
    data, model = prepare(config)
    trainer = Trainer(pretrain_config(config), model, data)
    size = min(int(trainer.config["train_batch_size"]), max_batch, len(data.train))
    state = random.getstate()  # the masks draw from Python's random: leave it as it was
    try:
        per_sample = seconds_per_train_sample(trainer, size, batches)
    finally:
        random.setstate(state)
    return EpochCost(len(data.train), per_sample, 0.0, torch.get_num_threads())


def run_epochs(trainer: Trainer, start: int, stop: int, on_epoch: Any = None) -> list[float]:
    """Pretraining epochs ``start .. stop-1`` (no validation, as RecBole's PretrainTrainer)."""
    losses = []
    for epoch in range(start, stop):
        tic = time.perf_counter()
        loss = trainer.train_epoch(epoch)
        losses.append(loss)
        if on_epoch is not None and on_epoch(epoch, loss, time.perf_counter() - tic):
            break
    return losses


def pretrained_state(model: Any, config: Config, data: SequentialData) -> tuple[dict[str, torch.Tensor], dict]:
    """The weights after ``pretrain_epochs`` epochs: cached, continued from a shorter cached run, or
    trained from ``model`` (freshly initialised right after ``init_seed``)."""
    epochs = int(config["pretrain_epochs"])
    if epochs == 0:
        return copy.deepcopy(model.state_dict()), {"epochs": 0, "source": "init", "trained_epochs": 0}
    directory, params = cache_dir(model, config, data)
    target = directory / f"pretrain-{epochs}.pth"
    state = _read(target)
    if state is None:
        with file_lock(directory.parent / f".{directory.name}.lock"):
            state = _read(target)  # another trial may have finished it while we waited
            if state is None:
                return _pretrain_into_cache(model, config, data, directory, params, epochs)
    return state["state_dict"], {"epochs": epochs, "source": "cache", "path": str(target), "trained_epochs": 0,
                                 "losses": state.get("losses", [])}


def _pretrain_into_cache(model: Any, config: Config, data: SequentialData, directory: Path,
                         params: dict[str, Any], epochs: int) -> tuple[dict[str, torch.Tensor], dict]:
    trainer = Trainer(pretrain_config(config), model, data)
    start, resumed_from, losses = 0, None, []
    for done in reversed(_cached_epochs(directory)):
        if done < epochs and (state := _read(directory / f"pretrain-{done}.pth")) is not None:
            model.load_state_dict(state["state_dict"])
            trainer.optimizer.load_state_dict(state["optimizer"])
            restore_rng(state["rng"], trainer)
            start, resumed_from, losses = done, str(directory / f"pretrain-{done}.pth"), list(state.get("losses", []))
            break
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "params.json") as tmp:
        tmp.write_text(json.dumps(params, indent=1, sort_keys=True))
    save_step = int(config["save_step"])
    tic = time.perf_counter()

    def save(epoch: int, loss: float, seconds: float) -> None:
        done = epoch + 1
        losses.append(loss)  # every epoch's loss from epoch 0, so a cache hit still reports them
        if done % save_step == 0 or done == epochs:
            state = {"format": CACHE_FORMAT, "epochs": done, "state_dict": model.state_dict(),
                     "optimizer": trainer.optimizer.state_dict(), "rng": capture_rng(trainer), "params": params,
                     "losses": list(losses)}
            with atomic_path(directory / f"pretrain-{done}.pth") as tmp:
                torch.save(state, tmp)

    run_epochs(trainer, start, epochs, save)
    info = {"epochs": epochs, "source": "trained", "path": str(directory / f"pretrain-{epochs}.pth"),
            "resumed_from": resumed_from, "start_epoch": start, "trained_epochs": epochs - start,
            "losses": losses, "seconds": time.perf_counter() - tic}
    return copy.deepcopy(model.state_dict()), info


def finetune_model(model: Any, state: dict[str, torch.Tensor], data: SequentialData) -> Any:
    """The model RecBole's finetune run starts from: re-seeded as a fresh process, built on ``state``."""
    config = model.config
    init_seed(config["seed"], config["reproducibility"])
    return type(model)(config, data, state=state)


def finetune_after_pretraining(model: Any, data: SequentialData, callback: EpochCallback | None,
                               checkpoint_path: Path | None, resume_dir: Path | None = None) -> TrainResult:
    """``train_stage: auto``: pretrained (or cached) weights, then RecBole's finetune run on them (which
    continues from ``resume_dir`` as any fit: the pretraining settings are part of its fingerprint)."""
    config = model.config
    state, info = pretrained_state(model, config, data)
    result = Trainer(config, finetune_model(model, state, data), data).fit(callback, checkpoint_path, resume_dir)
    result.pretrain = info
    return result


def pretrain_only(model: Any, data: SequentialData, callback: EpochCallback | None) -> TrainResult:
    """``train_stage: pretrain``: RecBole's pretrain run. Every ``save_step`` epochs it writes
    ``{checkpoint_dir}/{model}-{dataset}-{epoch + 1}.pth`` ({config, epoch, state_dict, optimizer,
    other_parameter}, loadable with weights_only=True); no validation. The test result is computed
    with the last weights, as RecBole's run_recbole does: it means nothing for a pretrained model."""
    config = model.config
    trainer = Trainer(pretrain_config(config), model, data)
    save_step = int(config["save_step"])
    directory = Path(config["checkpoint_dir"])
    history: list[dict[str, Any]] = []
    saved: list[str] = []
    stopped = False

    def on_epoch(epoch: int, loss: float, seconds: float) -> bool:
        nonlocal stopped
        if (epoch + 1) % save_step == 0:
            path = directory / f"{config.model}-{config.dataset}-{epoch + 1}.pth"
            state = {"config": to_plain(config.to_dict()), "epoch": epoch, "state_dict": model.state_dict(),
                     "optimizer": trainer.optimizer.state_dict(), "other_parameter": {}}
            with atomic_path(path) as tmp:
                torch.save(state, tmp)
            saved.append(str(path))
        report = EpochReport(epoch, loss, seconds, None, None, 0.0, math.nan, -1, False)
        history.append(asdict(report))
        stopped = bool(callback is not None and callback(report))
        return stopped

    tic = time.perf_counter()
    losses = run_epochs(trainer, 0, int(config["pretrain_epochs"]), on_epoch)
    train_seconds = time.perf_counter() - tic
    tic = time.perf_counter()
    test_result = trainer.evaluate(data.test)
    return TrainResult(
        model=config.model, best_valid_score=math.nan, valid_score_bigger=trainer.bigger, best_valid_result={},
        test_result=test_result, best_epoch=-1, epochs_run=len(losses), stopped_early=False,
        stopped_by_callback=stopped, history=history, train_seconds=train_seconds,
        eval_seconds=time.perf_counter() - tic, checkpoint=saved[-1] if saved else None,
        data_summary=data.summary(),
        pretrain={"epochs": len(losses), "source": "trained", "saved": saved, "losses": losses},
    )
