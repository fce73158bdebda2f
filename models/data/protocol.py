"""RecBole's sequential protocol, built once per dataset as arrays (no per-sample Python).

Steps, as RecBole 1.2.1 does them (see shared/spec/data.md):
1. map tokens to contiguous ids in order of first appearance, 0 = ``[PAD]``;
2. min-max normalise the timestamp (``normalize_all``) and keep it as float32, because RecBole sorts
   by that float32 key (distinct raw times can collide, which changes a few targets);
3. stable sort by (user, time) and emit one sample per prefix: history = up to L previous items
   (a window of the sorted item array, right-padded with 0 when gathered), target = the next item;
4. stable sort the samples by target time, group by user in order of first appearance, and send
   each user's last sample to test, the second-to-last to valid and the rest to train.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models.data.samples import SampleSet, SequentialData


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

    samples = prefix_windows(users, items, times32, max_len)
    train_idx, valid_idx, test_idx = leave_one_out(samples["user"], samples["time"])

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


def prefix_windows(users: np.ndarray, items: np.ndarray, times32: np.ndarray, max_len: int) -> dict[str, np.ndarray]:
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


def leave_one_out(sample_users: np.ndarray, sample_times: np.ndarray) -> tuple[np.ndarray, ...]:
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
