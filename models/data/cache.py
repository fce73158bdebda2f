"""The prepared data on disk (``cache_root()/tensors``, keyed by the source files' content and the
protocol's settings) and in memory (one per process): a torn or stale file is rebuilt, never trusted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from models.data.samples import SampleSet, SequentialData

CACHE_FORMAT = 3  # 3: histories as windows of one flat item array
MEMORY: dict[str, SequentialData] = {}


def to_state(data: SequentialData) -> dict[str, Any]:
    return {
        "name": data.name,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "max_len": data.max_len,
        "items": data.train.items,
        "train": data.train.to_dict(),
        "valid": data.valid.to_dict(),
        "test": data.test.to_dict(),
        "item_tokens": data.item_tokens,
        "user_tokens": data.user_tokens,
        "checksum": data.checksum,
        "extras": data.extras,
    }


def load_cached(path: Path, dataset: str, directory: Path, checksum: str) -> SequentialData | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, weights_only=True)
    except Exception:  # a torn or stale cache file is rebuilt, never trusted
        return None
    if state.get("checksum") != checksum:
        return None
    return SequentialData(
        name=state["name"],
        n_users=state["n_users"],
        n_items=state["n_items"],
        max_len=state["max_len"],
        train=SampleSet(state["items"], **state["train"], max_len=state["max_len"]),
        valid=SampleSet(state["items"], **state["valid"], max_len=state["max_len"]),
        test=SampleSet(state["items"], **state["test"], max_len=state["max_len"]),
        item_tokens=state["item_tokens"],
        user_tokens=state["user_tokens"],
        source_dir=directory,
        checksum=checksum,
        extras=state.get("extras", {}),
    )
