from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def write_atomic(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def synthetic_interactions(n_users: int = 30, n_items: int = 40, per_user: tuple[int, int] = (3, 25), seed: int = 0):
    """Rows of (user token, item token, rating, timestamp) with some repeated timestamps."""
    rng = random.Random(seed)
    rows = []
    for u in range(n_users):
        t = rng.randint(1_000, 5_000)
        for _ in range(rng.randint(*per_user)):
            t += rng.choice([0, 1, 5, 60])  # 0 gives equal timestamps: file order must decide
            rows.append([f"u{u}", f"i{rng.randint(0, n_items - 1)}", rng.randint(1, 5), t])
    rng.shuffle(rows)
    return rows


@pytest.fixture
def synthetic_dir(tmp_path: Path) -> Path:
    """A small dataset 'toy' in RecBole atomic format."""
    directory = tmp_path / "toy"
    write_atomic(
        directory / "toy.inter",
        ["user_id:token", "item_id:token", "rating:float", "timestamp:float"],
        synthetic_interactions(),
    )
    return tmp_path


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tensor caches go to a temp dir; the fetched ml-100k files are shared across tests."""
    shared = os.environ.get("SEQTUNE_TEST_DATA_CACHE", str(Path.home() / ".cache" / "seqtune"))
    cache = tmp_path_factory.mktemp("cache")
    (cache / "datasets").symlink_to(Path(shared) / "datasets", target_is_directory=True) if (
        Path(shared) / "datasets"
    ).exists() else None
    monkeypatch.setenv("SEQTUNE_CACHE", str(cache))
    from models.data import sequential

    monkeypatch.setattr(sequential, "_MEMORY_CACHE", {})
