"""The prepared data's types: a dataset under the sequential protocol, its splits and their batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class Batch:
    """One batch of samples: slices of preallocated tensors."""

    item_seq: torch.Tensor  # [B, L] int64, right-padded with 0
    item_length: torch.Tensor  # [B] int64, 1..L
    target: torch.Tensor  # [B] int64
    neg_item: torch.Tensor | None = None  # [B] int64, BPR only

    def to(self, device: torch.device | str) -> Batch:
        if str(device) == "cpu":
            return self
        neg = None if self.neg_item is None else self.neg_item.to(device, non_blocking=True)
        return Batch(
            self.item_seq.to(device, non_blocking=True),
            self.item_length.to(device, non_blocking=True),
            self.target.to(device, non_blocking=True),
            neg,
        )

    def __len__(self) -> int:
        return int(self.target.shape[0])


@dataclass
class SampleSet:
    """All samples of one split. A sample's history is a window of one flat item array that the splits
    share (every user's items in time order), so memory is O(interactions), not O(interactions x L);
    ``batch`` gathers the [B, L] windows it needs, equal to materialised ones bit for bit."""

    items: torch.Tensor  # [N] int64: every interaction's item, grouped by user in time order (shared)
    start: torch.Tensor  # [n] int64: where each sample's history starts in ``items``
    item_length: torch.Tensor  # [n] int64, 1..max_len
    target: torch.Tensor  # [n]
    user: torch.Tensor  # [n]
    max_len: int

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def windows(self, index: torch.Tensor | slice) -> torch.Tensor:
        """The histories of ``index``: [B, max_len] int64, right-padded with 0."""
        offsets = torch.arange(self.max_len)
        positions = self.start[index][:, None] + offsets  # [B, L]
        inside = offsets < self.item_length[index][:, None]  # [B, L]
        return torch.where(inside, self.items[positions.clamp_(max=len(self.items) - 1)], 0)

    @property
    def item_seq(self) -> torch.Tensor:
        """Every sample's history at once ([n, L]): for small sets and checks, never the training path."""
        return self.windows(slice(None))

    def batch(self, index: torch.Tensor | slice) -> Batch:
        return Batch(self.windows(index), self.item_length[index], self.target[index])

    def batches(self, batch_size: int) -> list[Batch]:
        return [self.batch(slice(i, i + batch_size)) for i in range(0, len(self), batch_size)]

    def to_dict(self) -> dict[str, torch.Tensor]:
        """The split's own tensors (the shared item array is stored once, beside the splits)."""
        return {"start": self.start, "item_length": self.item_length, "target": self.target, "user": self.user}


@dataclass
class SequentialData:
    """A dataset under the sequential protocol: id maps, sizes and the three splits."""

    name: str
    n_users: int  # including [PAD]
    n_items: int  # including [PAD]
    max_len: int
    train: SampleSet
    valid: SampleSet
    test: SampleSet
    item_tokens: list[str]  # id -> raw token; index 0 is "[PAD]"
    user_tokens: list[str]
    source_dir: Path
    checksum: str
    extras: dict[str, Any] = field(default_factory=dict)  # model-specific side data (KG, attributes)

    def summary(self) -> dict[str, int]:
        return {
            "n_users": self.n_users,
            "n_items": self.n_items,
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
        }
