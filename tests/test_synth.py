"""The dataset generator on a small size: exact sizes and bounds, Gini near the target, deterministic
per seed, and files our data path reads."""

from __future__ import annotations

from pathlib import Path

from models.config import build_config
from models.data.sequential import load_sequential_data
from models.data.synth import TARGETS, Target, generate, gini

SMALL = Target(users=400, items=300, interactions=12_000, user_min=5, user_max=400, user_mean=30.0, item_min=3,
               item_max=600, item_mean=40.0, user_gini=0.45, item_gini=0.55, classes=10)


def test_sizes_bounds_and_skew_hold(tmp_path: Path) -> None:
    stats = generate("small", 0, tmp_path, SMALL)["reached"]
    assert (stats["users"], stats["items"], stats["interactions"]) == (400, 300, 12_000)
    assert stats["per_user"]["min"] >= 5 and stats["per_user"]["max"] <= 400
    assert stats["per_item"]["min"] >= 3 and stats["per_item"]["max"] <= 600
    assert abs(stats["per_user"]["gini"] - 0.45) < 0.04 and abs(stats["per_item"]["gini"] - 0.55) < 0.04
    inter = (tmp_path / "synth-small" / "synth-small.inter").read_text().splitlines()
    assert inter[0] == "user_id:token\titem_id:token\trating:float\ttimestamp:float" and len(inter) == 12_001


def test_deterministic_per_seed(tmp_path: Path) -> None:
    generate("small", 1, tmp_path / "a", SMALL)
    generate("small", 1, tmp_path / "b", SMALL)
    generate("small", 2, tmp_path / "c", SMALL)
    for suffix in ("inter", "item", "kg", "link"):
        a, b, c = ((tmp_path / d / "synth-small" / f"synth-small.{suffix}").read_bytes() for d in "abc")
        assert a == b and a != c


def test_the_files_load_as_a_dataset(tmp_path: Path) -> None:
    generate("small", 0, tmp_path, SMALL)
    data = load_sequential_data(build_config("GRU4Rec", "synth-small", overrides={"data_path": str(tmp_path)}))
    assert data.n_users == 401 and data.n_items == 301
    assert len(data.train) + len(data.valid) + len(data.test) == 12_000 - 400  # one sample per non-first


def test_gini_and_the_published_targets() -> None:
    import numpy as np

    assert gini(np.ones(10)) == 0.0 and abs(gini(np.array([0] * 99 + [1])) - 0.99) < 1e-9
    ml1m = TARGETS["ml-1m"]
    assert (ml1m.users, ml1m.items, ml1m.interactions) == (6040, 3416, 999_611)
