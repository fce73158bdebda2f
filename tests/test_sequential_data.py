from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.config import build_config
from models.data.sequential import load_sequential_data
from models.errors import DataError
from tests.conftest import write_atomic

INTER_HEADER = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]


def _config(data_path: Path, dataset: str = "toy", **overrides):
    return build_config("GRU4Rec", dataset, overrides={"data_path": str(data_path), **overrides})


def test_id_mapping_padding_and_prefix_samples(tmp_path: Path) -> None:
    rows = [  # user a: x, y, z, w in time order; user b: y, x, q
        ["b", "y", 1, 10], ["a", "x", 1, 1], ["a", "z", 1, 3], ["a", "y", 1, 2],
        ["b", "x", 1, 11], ["a", "w", 1, 4], ["b", "q", 1, 12],
    ]
    write_atomic(tmp_path / "toy" / "toy.inter", INTER_HEADER, rows)
    data = load_sequential_data(_config(tmp_path, MAX_ITEM_LIST_LENGTH=2))
    # ids in order of first appearance in the file, 0 = padding
    assert data.user_tokens == ["[PAD]", "b", "a"]
    assert data.item_tokens == ["[PAD]", "y", "x", "z", "w", "q"]
    assert (data.n_users, data.n_items) == (3, 6)
    tok = {t: i for i, t in enumerate(data.item_tokens)}
    # user a has 3 samples: targets y (train), z (valid), w (test); history capped at L = 2
    a = 2
    test_row = (data.test.user == a).nonzero().item()
    assert data.test.target[test_row] == tok["w"]
    assert data.test.item_seq[test_row].tolist() == [tok["y"], tok["z"]]
    assert data.test.item_length[test_row] == 2
    valid_row = (data.valid.user == a).nonzero().item()
    assert data.valid.target[valid_row] == tok["z"]
    assert data.valid.item_seq[valid_row].tolist() == [tok["x"], tok["y"]]
    train_rows = (data.train.user == a).nonzero().flatten()
    assert data.train.item_seq[train_rows].tolist() == [[tok["x"], 0]]  # right-padded with 0
    assert data.train.item_length[train_rows].tolist() == [1]


def test_split_last_is_test_second_last_valid_no_leakage(synthetic_dir: Path) -> None:
    data = load_sequential_data(_config(synthetic_dir))
    assert len(data.test) == data.n_users - 1  # every user has >= 2 samples here
    for user in data.test.user.tolist():
        test = (data.test.user == user).nonzero().item()
        valid = (data.valid.user == user).nonzero().flatten()
        train = (data.train.user == user).nonzero().flatten()
        test_len = int(data.test.item_length[test])
        history = data.test.item_seq[test, :test_len].tolist()
        if len(valid):
            v = valid.item()
            # the valid target is the last item of the test history; train targets precede it
            assert history[-1] == data.valid.target[v]
            assert int(data.valid.item_length[v]) <= test_len
        # train targets are exactly the earlier history items, in time order: nothing from the future
        train_targets = data.train.target[train].tolist()
        if test_len < data.max_len:
            assert train_targets == history[1 : len(history) - len(valid)]
        assert set(train_targets) <= set(history) or test_len == data.max_len
    # no padding id among real history items, padding after them
    lengths = data.train.item_length
    mask = torch.arange(data.max_len)[None, :] < lengths[:, None]
    assert (data.train.item_seq[mask] > 0).all() and (data.train.item_seq[~mask] == 0).all()


def test_equal_timestamps_keep_file_order(tmp_path: Path) -> None:
    rows = [["a", "p", 1, 5], ["a", "q", 1, 5], ["a", "r", 1, 5], ["a", "s", 1, 5]]
    write_atomic(tmp_path / "toy" / "toy.inter", INTER_HEADER, rows)
    data = load_sequential_data(_config(tmp_path))
    tok = {t: i for i, t in enumerate(data.item_tokens)}
    assert data.test.item_seq[0, :3].tolist() == [tok["p"], tok["q"], tok["r"]]
    assert data.test.target.tolist() == [tok["s"]]


def test_cache_round_trip_gives_identical_tensors(synthetic_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from models.data import sequential

    first = load_sequential_data(_config(synthetic_dir))
    monkeypatch.setattr(sequential, "MEMORY", {})
    monkeypatch.setattr(sequential, "prepare", lambda *a, **k: pytest.fail("cache missed"))
    second = load_sequential_data(_config(synthetic_dir))
    for split in ("train", "valid", "test"):
        for name, tensor in getattr(first, split).to_dict().items():
            assert torch.equal(tensor, getattr(getattr(second, split), name))
    assert second.item_tokens == first.item_tokens


def test_bad_data_path_and_field_type(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no toy.inter"):
        load_sequential_data(_config(tmp_path))
    header = ["user_id:token", "item_id:token", "timestamp:token"]
    write_atomic(tmp_path / "toy" / "toy.inter", header, [["a", "b", "c"]])
    with pytest.raises(DataError, match="field 'timestamp' must be of type float"):
        load_sequential_data(_config(tmp_path))


def test_unknown_dataset_name() -> None:
    with pytest.raises(DataError, match=r"unknown dataset 'ml-10k' \(did you mean 'ml-100k'\?\)"):
        load_sequential_data(build_config("GRU4Rec", "ml-10k"))


def test_samples_hold_no_window_matrix(synthetic_dir: Path) -> None:
    """Memory O(interactions): one flat item array for all splits plus a few numbers per sample, no [n, L]."""
    data = load_sequential_data(_config(synthetic_dir))
    interactions = sum(1 for _ in (synthetic_dir / "toy" / "toy.inter").open()) - 1
    for split in (data.train, data.valid, data.test):
        tensors = [v for v in vars(split).values() if isinstance(v, torch.Tensor)]
        assert all(t.ndim == 1 for t in tensors)
        assert len(split.items) == interactions
    batch = data.train.batches(7)[1]
    assert torch.equal(batch.item_seq, data.train.item_seq[7:14])
    assert np.array_equal(batch.target.numpy(), data.train.target[7:14].numpy())


def _reference_samples(inter: Path, data, max_len: int) -> dict[tuple[int, int], tuple[list[int], int]]:
    """Every sample materialised the slow, obvious way: per user, items sorted by (float32 time, file
    order); for the k-th item (k >= 1) the up-to-max_len items before it, right-padded with 0, and the
    item itself. Keyed by (user id, k)."""
    import csv

    rows = list(csv.reader(inter.open(), delimiter="\t"))[1:]
    user_id = {t: i for i, t in enumerate(data.user_tokens)}
    item_id = {t: i for i, t in enumerate(data.item_tokens)}
    by_user: dict[int, list[tuple[np.float32, int, int]]] = {}
    for line, (user, item, _, time) in enumerate(rows):
        by_user.setdefault(user_id[user], []).append((np.float32(float(time)), line, item_id[item]))
    samples = {}
    for user, events in by_user.items():
        items = [item for *_, item in sorted(events)]
        for k in range(1, len(items)):
            history = items[max(0, k - max_len):k]
            samples[(user, k)] = (history + [0] * (max_len - len(history)), items[k])
    return samples


@pytest.mark.parametrize("max_len", [1, 3, 50])
def test_windows_gathered_on_the_fly_equal_materialised_windows(tmp_path: Path, max_len: int) -> None:
    from tests.conftest import synthetic_interactions

    write_atomic(tmp_path / "toy" / "toy.inter", INTER_HEADER,
                 synthetic_interactions(n_users=60, n_items=80, per_user=(2, 70), seed=3))
    data = load_sequential_data(_config(tmp_path, MAX_ITEM_LIST_LENGTH=max_len))
    reference = _reference_samples(tmp_path / "toy" / "toy.inter", data, max_len)
    splits = (data.train, data.valid, data.test)
    users = torch.cat([s.user for s in splits])
    ends = torch.cat([s.start + s.item_length for s in splits])  # a target's index in the item array
    first = {int(u): int(ends[users == u].min()) - 1 for u in users.unique()}  # the user's first item
    seen = set()
    for split in splits:
        assert split.items is data.train.items  # one item array for every split, O(interactions)
        windows = split.item_seq
        assert windows.shape == (len(split), max_len) and windows.dtype == torch.int64
        for row in range(len(split)):
            user = int(split.user[row])
            k = int(split.start[row] + split.item_length[row]) - first[user]
            history, target = reference[(user, k)]
            assert windows[row].tolist() == history and int(split.target[row]) == target
            seen.add((user, k))
        shuffled = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))
        batch = split.batch(shuffled)  # an epoch's shuffled batch gathers the same windows
        assert torch.equal(batch.item_seq, windows[shuffled]) and torch.equal(batch.target, split.target[shuffled])
    assert seen == set(reference)  # one sample per interaction that is not a user's first, none twice
