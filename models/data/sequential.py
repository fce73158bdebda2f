"""RecBole's sequential protocol, built once per dataset as tensors (no per-sample Python).

Steps, as RecBole 1.2.1 does them (see shared/spec/data.md):
1. read ``.inter``; map tokens to contiguous ids in order of first appearance, 0 = ``[PAD]``;
2. min-max normalise the timestamp (``normalize_all``) and keep it as float32, because RecBole sorts
   by that float32 key (distinct raw times can collide, which changes a few targets);
3. stable sort by (user, time) and emit one sample per prefix: history = up to L previous items,
   right-padded with 0, target = the next item;
4. stable sort the samples by target time, group by user in order of first appearance, and send
   each user's last sample to test, the second-to-last to valid and the rest to train.

Models that read an item attribute (S3Rec's ``item_attribute: class``) also load ``.item``: as in
RecBole, interactions whose item has no ``.item`` row are dropped (``filter_inter_by_user_or_item``)
and items that only ``.item`` lists get ids after the interactions' items.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.config import model_yaml
from models.data.atomic import FieldType, read_atomic
from models.data.datasets import cache_root, resolve_dataset_dir, sha256_of
from models.errors import ConfigError, DataError
from models.utils import atomic_path, file_lock

CACHE_FORMAT = 3  # 3: histories as windows of one flat item array
_MEMORY_CACHE: dict[str, SequentialData] = {}


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


def data_kind(model: str) -> str:
    """'sequential', 'kg' (a knowledge graph) or 'item_attribute' (an ``.item`` field): the model YAML's data_kind."""
    return model_yaml(model).data_kind


def load_sequential_data(config: Any) -> SequentialData:
    """Build (or load from the memory or disk cache) the dataset the config describes."""
    dataset = config.dataset
    for key in ("rm_dup_inter", "user_inter_num_interval", "item_inter_num_interval"):
        if config.get(key) is not None:
            raise ConfigError(f"{config.sources.get(key, key)}: {key} filtering is not supported yet; leave it ~")
    directory = resolve_dataset_dir(dataset, config.get("data_path"))
    inter_path = directory / f"{dataset}.inter"
    fields = {k: config[k] for k in ("USER_ID_FIELD", "ITEM_ID_FIELD", "TIME_FIELD")}
    kind = data_kind(config.model)
    checksum = sha256_of(inter_path)
    if kind == "kg":
        for suffix in ("kg", "link"):
            path = directory / f"{dataset}.{suffix}"
            if not path.is_file():
                raise DataError(f"{path}: {config.model} needs the knowledge graph files "
                                f"{dataset}.kg and {dataset}.link")
            checksum = hashlib.sha256((checksum + sha256_of(path)).encode()).hexdigest()
    recipe = {
        "format": CACHE_FORMAT,
        "kind": kind,
        "inter": checksum,
        "fields": fields,
        "max_len": config["MAX_ITEM_LIST_LENGTH"],
        "normalize_all": bool(config.get("normalize_all", True)),
    }
    if kind == "item_attribute":
        item_path = directory / f"{dataset}.item"
        if not item_path.is_file():
            raise DataError(f"{item_path}: {config.model} needs {dataset}.item with the item_attribute field "
                            f"{config['item_attribute']!r}")
        checksum = hashlib.sha256((checksum + sha256_of(item_path)).encode()).hexdigest()
        recipe.update(inter=checksum, item_attribute=str(config["item_attribute"]),
                      filter_inter_by_user_or_item=bool(config.get("filter_inter_by_user_or_item", True)))
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    if key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]
    cache_file = cache_root() / "tensors" / f"{dataset}-{key}.pt"
    data = _load_cached(cache_file, dataset, directory, checksum)
    if data is None:
        with file_lock(cache_file.with_suffix(".lock")):
            data = _load_cached(cache_file, dataset, directory, checksum)
            if data is None:
                frame = read_interactions(inter_path, fields)
                extras: dict[str, Any] = {}
                attribute: ItemAttribute | None = None
                if kind == "kg":
                    from models.data.kg import link_filter

                    frame, extras = link_filter(directory, dataset, frame, fields["ITEM_ID_FIELD"])
                elif kind == "item_attribute":
                    attribute = read_item_attribute(item_path, fields["ITEM_ID_FIELD"], recipe["item_attribute"])
                    if recipe["filter_inter_by_user_or_item"]:
                        frame = frame[frame[fields["ITEM_ID_FIELD"]].isin(set(attribute.items))]
                        if len(frame) == 0:
                            raise DataError(f"{item_path}: no interaction's item has a row here")
                data = build_sequential_data(dataset, frame, fields, config["MAX_ITEM_LIST_LENGTH"],
                                             recipe["normalize_all"], checksum, directory,
                                             extra_items=attribute.items if attribute is not None else ())
                data.extras.update(extras)
                if attribute is not None:
                    data.extras.update(attribute_extras(data, attribute))
                with atomic_path(cache_file) as tmp:
                    torch.save(_to_state(data), tmp)
    _MEMORY_CACHE[key] = data
    return data


def read_interactions(inter_path: Path, fields: dict[str, str]) -> pd.DataFrame:
    """The user, item and time columns of ``.inter``, type-checked, rows with missing ids dropped."""
    user_field, item_field, time_field = fields["USER_ID_FIELD"], fields["ITEM_ID_FIELD"], fields["TIME_FIELD"]
    inter = read_atomic(inter_path, columns=[user_field, item_field, time_field])
    for name, kind in inter.types.items():
        expected = "float" if name == time_field else "token"
        if kind.value != expected:
            raise DataError(f"{inter_path}:1: field {name!r} must be of type {expected}, found {kind.value}")
    frame = inter.frame
    frame = frame[(frame[user_field] != "") & (frame[item_field] != "") & frame[time_field].notna()]
    if len(frame) == 0:
        raise DataError(f"{inter_path}: no interactions")
    return frame


def build_sequential_data(
    dataset: str,
    frame: pd.DataFrame,
    fields: dict[str, str],
    max_len: int,
    normalize: bool,
    checksum: str,
    source_dir: Path,
    extra_items: Sequence[str] = (),
) -> SequentialData:
    """Prefix samples and the leave-one-out split from interaction rows (in file order).

    ``extra_items`` (the ``.item`` ids, in row order) join the item id space after the interactions'
    items, as RecBole remaps ``.inter`` then ``.item`` tokens in order of first appearance.
    """
    user_field, item_field, time_field = fields["USER_ID_FIELD"], fields["ITEM_ID_FIELD"], fields["TIME_FIELD"]
    user_codes, user_uniques = pd.factorize(frame[user_field], sort=False)
    all_items = pd.concat([frame[item_field], pd.Series(list(extra_items), dtype=object)], ignore_index=True)
    item_codes, item_uniques = pd.factorize(all_items, sort=False)
    item_codes = item_codes[: len(frame)]
    users = user_codes.astype(np.int64) + 1
    items = item_codes.astype(np.int64) + 1
    times = frame[time_field].to_numpy(dtype=np.float64)
    if normalize:
        low, high = times.min(), times.max()
        times = (times - low) / (high - low) if high > low else np.ones_like(times)
    times32 = times.astype(np.float32)

    samples = _prefix_samples(users, items, times32, max_len)
    train_idx, valid_idx, test_idx = _leave_one_out(samples["user"], samples["time"])

    flat_items = torch.from_numpy(samples["items"])

    def subset(index: np.ndarray) -> SampleSet:
        return SampleSet(
            items=flat_items,
            start=torch.from_numpy(samples["start"][index]),
            item_length=torch.from_numpy(samples["item_length"][index]),
            target=torch.from_numpy(samples["target"][index]),
            user=torch.from_numpy(samples["user"][index]),
            max_len=max_len,
        )

    return SequentialData(
        name=dataset,
        n_users=len(user_uniques) + 1,
        n_items=len(item_uniques) + 1,
        max_len=max_len,
        train=subset(train_idx),
        valid=subset(valid_idx),
        test=subset(test_idx),
        item_tokens=["[PAD]", *map(str, item_uniques)],
        user_tokens=["[PAD]", *map(str, user_uniques)],
        source_dir=source_dir,
        checksum=checksum,
    )


@dataclass
class ItemAttribute:
    """One field of ``.item``: rows deduplicated on the item id (first kept), empty ids dropped."""

    path: Path
    name: str
    items: list[str]  # item tokens in row order
    values: list[list[str]]  # the field's tokens per row (a token field: one token, or none when empty)
    is_sequence: bool  # token_seq (multi-valued) or token


def read_item_attribute(path: Path, item_field: str, attribute: str) -> ItemAttribute:
    table = read_atomic(path, columns=[item_field, attribute])
    if table.types[item_field] is not FieldType.TOKEN:
        raise DataError(f"{path}:1: field {item_field!r} must be of type token, found {table.types[item_field].value}")
    kind = table.types[attribute]
    if kind not in (FieldType.TOKEN, FieldType.TOKEN_SEQ):
        raise DataError(f"{path}:1: item_attribute {attribute!r} must be of type token or token_seq, "
                        f"found {kind.value}")
    frame = table.frame
    frame = frame[frame[item_field] != ""].drop_duplicates(subset=item_field, keep="first")
    is_sequence = kind is FieldType.TOKEN_SEQ
    values = [list(v) if is_sequence else ([v] if v else []) for v in frame[attribute]]
    return ItemAttribute(path, attribute, [str(t) for t in frame[item_field]], values, is_sequence)


def attribute_extras(data: SequentialData, attribute: ItemAttribute) -> dict[str, Any]:
    """The item-indexed multi-hot attribute matrix [N, F] S3Rec predicts, and the attribute's tokens.

    Attribute tokens get their own ids in order of first appearance in ``.item`` (RecBole's remap),
    column c = token id c + 1. RecBole builds the vector of item i as "every index >= 0 of
    ``attr[i] - 1``"; for a single ``token`` field an item without a token has index -1, which
    Python's ``features[-1] = 1`` turns into the *last* column: reproduced here.
    """
    tokens = list(dict.fromkeys(t for row in attribute.values for t in row))
    if not tokens:
        raise DataError(f"{attribute.path}: item_attribute {attribute.name!r} has no values")
    column = {t: c for c, t in enumerate(tokens)}
    item_id = {t: i for i, t in enumerate(data.item_tokens)}
    features = torch.zeros(data.n_items, len(tokens), dtype=torch.bool)
    if not attribute.is_sequence:
        features[1:, -1] = True  # items without a token (overwritten below for those with one)
    for token, row in zip(attribute.items, attribute.values, strict=True):
        if token in item_id:
            if row:
                features[item_id[token]] = False
            for value in row:
                features[item_id[token], column[value]] = True
    return {"item_attribute": attribute.name, "attribute_tokens": tokens, "item_features": features}


def _prefix_samples(users: np.ndarray, items: np.ndarray, times32: np.ndarray, max_len: int) -> dict[str, np.ndarray]:
    """One sample per interaction that is not a user's first, in (user, time) order: its target, and
    its history as a window [start, start + length) of the items in that order (``items``)."""
    order = np.lexsort((times32, users))  # stable: user first, then float32 time, then file order
    users, items, times32 = users[order], items[order], times32[order]
    n = len(users)
    is_first = np.ones(n, dtype=bool)
    is_first[1:] = users[1:] != users[:-1]
    block_start = np.maximum.accumulate(np.where(is_first, np.arange(n), 0))
    rows = np.flatnonzero(~is_first)  # every row that is a target
    start = np.maximum(block_start[rows], rows - max_len)
    return {
        "items": items.astype(np.int64),
        "start": start.astype(np.int64),
        "item_length": (rows - start).astype(np.int64),  # [S], 1..max_len
        "target": items[rows].astype(np.int64),
        "user": users[rows].astype(np.int64),
        "time": times32[rows],
    }


def _leave_one_out(sample_users: np.ndarray, sample_times: np.ndarray) -> tuple[np.ndarray, ...]:
    """RecBole's LS valid_and_test split after its TO ordering, keeping RecBole's sample order.

    Samples arrive grouped by user in time order. After a stable sort by target time, RecBole
    groups by user in order of first appearance: so each split lists users in the order their
    earliest sample appears in time, each user's samples in time order.
    """
    n = len(sample_users)
    time_rank = np.empty(n, dtype=np.int64)
    time_rank[np.argsort(sample_times, kind="stable")] = np.arange(n)
    first_rank = np.full(sample_users.max() + 1, n, dtype=np.int64)
    np.minimum.at(first_rank, sample_users, time_rank)
    order = np.lexsort((np.arange(n), first_rank[sample_users]))  # users by first appearance
    users = sample_users[order]
    is_last = np.ones(n, dtype=bool)
    is_last[:-1] = users[:-1] != users[1:]
    counts = np.bincount(users)[users]
    last_pos = np.flatnonzero(is_last)
    block_end = np.repeat(last_pos, np.diff(np.concatenate(([-1], last_pos))))
    from_end = block_end - np.arange(n)  # 0 = user's last sample, 1 = second-to-last, ...
    test = from_end == 0
    valid = (from_end == 1) & (counts >= 3)
    train = ~(test | valid)
    return order[train], order[valid], order[test]


def _to_state(data: SequentialData) -> dict[str, Any]:
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


def _load_cached(path: Path, dataset: str, directory: Path, checksum: str) -> SequentialData | None:
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
