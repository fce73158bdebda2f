"""A fit's state between two epochs, saved so that a stopped fit continues exactly where it stopped.

A fit (``Trainer.fit``) given a ``resume_dir`` writes, after its epochs (``SAVE_EVERY_SECONDS``),
everything an uninterrupted run carries into the next one: the weights, the optimizer, every RNG it
draws from (Python's, numpy's global one for BPR negatives, torch's for dropout, the shuffling
generator, CUDA's), the early-stop counters, the best weights so far and the history. A later fit of
the same computation reads it and goes on from the next epoch: its numbers are those of the run that was never stopped.

"The same computation" is a fingerprint of the config (without the keys that only change how it runs:
threads, progress bars; nor epochs: a longer run passes through the same states), the data's content,
the weights it starts from and the model's code, so any fit of it, in any trial or process, may
continue any state of it that is not past its last epoch; a state of anything else is never read.
S3Rec's pretraining has its own cache (``models.pretrain``) and shares the RNG capture below.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from models.utils import atomic_path, to_plain

if TYPE_CHECKING:
    from models.config import Config
    from models.data.samples import SequentialData
    from models.trainer import Trainer

FIT_STATE_FORMAT = 1
# A state is written after an epoch when the last one is this old, and whenever the callback stops the
# fit (the budget, a rung's end): on ml-100k that is every epoch or every other (27-120 s epochs), so a
# kill loses at most 30 s of finished epochs and the epoch it interrupts; a toy fit of 20 ms epochs writes
# only when it is stopped (a write costs ~25 ms there, more than the epoch: the suite ran 20 % longer).
SAVE_EVERY_SECONDS = 30.0
# config keys that change how a fit runs, never what it computes: threads schedule the same operations;
# evaluation batches give the same metrics at any size (test_trainer)
RUNTIME_KEYS = frozenset({"threads", "show_progress", "checkpoint_dir", "eval_score_mb"})
# ... and, for a state to continue, these too: a longer run of the same fit passes through the same states
# (epochs), and the data's content is in the fingerprint, not its folder
CONTINUABLE_KEYS = frozenset({"epochs", "data_path"})

def code_digest(model: Any) -> str:
    """The source of the model's module and of the layers it is built from: an edit starts over."""
    import models.nn.dropout
    import models.nn.transformer

    digest = hashlib.sha256()
    for module in (inspect.getmodule(type(model)), models.nn.transformer, models.nn.dropout):
        source = inspect.getsourcefile(module) if module is not None else None
        if source:
            digest.update(Path(source).read_bytes())
    return digest.hexdigest()[:16]


def weights_digest(model: torch.nn.Module) -> str:
    """The weights by content: taken before the first epoch, they carry what the config cannot name
    (pretrained KG vectors from a data folder, S3Rec's pretraining, the seed's initialisation)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def computed_values(config: Config, ignore: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The config's values that decide what it computes (``RUNTIME_KEYS`` and ``ignore`` left out)."""
    return {k: v for k, v in to_plain(config.to_dict()).items() if k not in RUNTIME_KEYS | ignore}


def config_digest(config: Config) -> str:
    """The config by what it computes: equal digests, equal runs (epochs included)."""
    text = json.dumps([config.model, computed_values(config)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def fingerprint(config: Config, data: SequentialData, model: Any) -> str:
    """One name for one computation: its config, the data, the weights it starts from, and the code.
    ``model`` must be as built, before any training."""
    values = computed_values(config, CONTINUABLE_KEYS)
    text = json.dumps([FIT_STATE_FORMAT, config.model, values, data.checksum, weights_digest(model),
                       code_digest(model)], sort_keys=True, default=str)  # as written since the first states
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def state_path(resume_dir: str | Path, config: Config, data: SequentialData, model: Any) -> Path:
    return Path(resume_dir) / f"{config.model.lower()}-{fingerprint(config, data, model)}.pt"


# -- RNG state: what an uninterrupted run would carry from one epoch into the next -----------------
def capture_rng(trainer: Trainer) -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": torch.tensor(internal, dtype=torch.int64),
        "python_version": version,
        "python_gauss": gauss,
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "shuffle": trainer.shuffler.generator.get_state(),
    }
    if trainer.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], trainer: Trainer) -> None:
    random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))
    if "numpy" in state:  # pretraining caches written before numpy's state was kept: pretraining draws none
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    trainer.shuffler.generator.set_state(state["shuffle"])
    if "cuda" in state and trainer.device.type == "cuda":
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, trainer: Trainer, loop: dict[str, Any], best_state: dict[str, torch.Tensor] | None) -> None:
    """Write the state after an epoch, atomically (a stop mid-write leaves the previous epoch's)."""
    state = {"format": FIT_STATE_FORMAT, "fingerprint": path.stem, "model": trainer.model.state_dict(),
             "optimizer": trainer.optimizer.state_dict(), "rng": capture_rng(trainer), "loop": loop,
             "best_state": best_state, "config": to_plain(trainer.config.to_dict())}  # config: for people
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: Path) -> dict[str, Any] | None:
    """The state at ``path``, or None: missing, unreadable, or of another format or computation."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a torn or foreign file: start over (exact too, only slower)
        return None
    ok = isinstance(state, dict) and state.get("format") == FIT_STATE_FORMAT and state.get("fingerprint") == path.stem
    return state if ok else None


def restore(state: dict[str, Any], trainer: Trainer) -> dict[str, Any]:
    """Put the weights, optimizer and RNGs back; return the loop's counters and history."""
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    restore_rng(state["rng"], trainer)
    return {**state["loop"], "best_state": state["best_state"]}
