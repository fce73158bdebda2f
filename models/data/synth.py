"""Synthetic datasets at the size of the public ones, for cost and scale (never for accuracy claims).

    python -m models.data.synth --like ml-1m|amazon-beauty|ml-20m --seed 0 --out DIR

writes RecBole atomic files under ``DIR/synth-<like>/``: ``.inter`` (user_id, item_id, rating,
timestamp), ``.item`` (a ``class`` token_seq, for S3Rec) and ``.kg`` / ``.link`` (for the KG models),
and prints the statistics it aimed for beside those it reached. The targets are the preprocessed
datasets' characteristics in almightyGOSU/TheDatasetsDilemma (users, items, interactions, per-user and
per-item minimum, maximum, mean, and the user and item Gini coefficients).

How: per-user and per-item counts are drawn from shifted log-normals whose spread is solved from the
target Gini (a log-normal's Gini is 2 Phi(sigma / sqrt 2) - 1; the shift by the minimum lowers it by
mean_X / (min + mean_X)), clipped at the maximum and rescaled to the exact interaction count. The
interactions are the items repeated by their counts, shuffled and dealt to the users by theirs, so both
marginals hold exactly; a user may meet a popular item twice (the real sets rarely do: it changes no
cost). Each user's timestamps increase. Deterministic per seed.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np


@dataclass(frozen=True)
class Target:
    """A public dataset's characteristics (TheDatasetsDilemma, Datasets/Preprocessed/<name>/stats.txt)."""

    users: int
    items: int
    interactions: int
    user_min: int
    user_max: int
    user_mean: float
    item_min: int
    item_max: int
    item_mean: float
    user_gini: float
    item_gini: float
    classes: int = 18  # .item class tokens (ml: the 18 genres); items carry 1-3 of them
    triples_per_entity: float = 4.0  # .kg density: our choice, not a published figure


TARGETS = {
    "ml-1m": Target(6040, 3416, 999_611, 18, 2277, 165.499, 5, 3428, 292.626, 0.5285, 0.6033),
    "amazon-beauty": Target(22363, 12101, 198_502, 5, 204, 8.876, 5, 431, 16.404, 0.3104, 0.4986, classes=250),
    "ml-20m": Target(138_493, 18345, 19_984_024, 16, 8540, 144.296, 5, 67310, 1089.344, 0.5804, 0.8602, classes=20),
}


def gini(counts: np.ndarray) -> float:
    """The Gini coefficient of non-negative counts (0: all equal)."""
    x = np.sort(counts.astype(np.float64))
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1).dot(x) / (n * x.sum()))


def draw_counts(rng: np.random.Generator, n: int, low: int, high: int, mean: float, target_gini: float,
                total: int) -> np.ndarray:
    """n counts in [low, high] summing to ``total``, with about the target mean and Gini."""
    excess = mean - low  # the log-normal part's mean
    inner = min(0.98, target_gini * mean / excess)  # its Gini, before the shift by ``low``
    sigma = math.sqrt(2) * NormalDist().inv_cdf((inner + 1) / 2)
    mu = math.log(excess) - sigma**2 / 2
    counts = low + np.minimum(rng.lognormal(mu, sigma, n), high - low)
    counts = counts * (total / counts.sum())  # the exact total, then integers by largest remainder
    whole = np.clip(np.floor(counts).astype(np.int64), low, high)
    short = total - int(whole.sum())
    order = np.argsort(-(counts - np.floor(counts)), kind="stable")
    step = 1 if short > 0 else -1
    i = 0
    while short != 0:
        k = order[i % n]
        if low <= whole[k] + step <= high:
            whole[k] += step
            short -= step
        i += 1
    return whole


def generate(like: str, seed: int, out: Path, target: Target | None = None) -> dict:
    """Write ``out/synth-<like>/``; ``target`` overrides the published one (tests use a small one)."""
    target = target or TARGETS[like]
    rng = np.random.default_rng(seed)
    tic = time.perf_counter()
    user_counts = draw_counts(rng, target.users, target.user_min, target.user_max, target.user_mean,
                              target.user_gini, target.interactions)
    item_counts = draw_counts(rng, target.items, target.item_min, target.item_max, target.item_mean,
                              target.item_gini, target.interactions)
    items = rng.permutation(np.repeat(np.arange(target.items, dtype=np.int64), item_counts))  # [I]
    users = np.repeat(np.arange(target.users, dtype=np.int64), user_counts)  # [I], grouped by user
    # each user's timestamps increase from a random start: gaps of 1 s to ~1 day
    starts = rng.integers(900_000_000, 1_000_000_000, target.users)
    gaps = rng.integers(1, 86_400, len(users))
    first = np.concatenate(([0], np.cumsum(user_counts)[:-1]))
    cumulative = np.cumsum(gaps)
    timestamps = starts[users] + cumulative - (cumulative[first] - gaps[first])[users]
    ratings = rng.integers(1, 6, len(users))

    name = f"synth-{like}"
    directory = out / name
    directory.mkdir(parents=True, exist_ok=True)
    order = rng.permutation(len(users))  # a file in no particular order, as real dumps
    _write(directory / f"{name}.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float",
           [np.char.add("u", users[order].astype(str)), np.char.add("i", items[order].astype(str)),
            ratings[order].astype(str), timestamps[order].astype(str)])
    n_classes = rng.integers(1, 4, target.items)
    classes = [" ".join(f"c{c}" for c in rng.choice(target.classes, k, replace=False)) for k in n_classes]
    _write(directory / f"{name}.item", "item_id:token\tclass:token_seq",
           [np.char.add("i", np.arange(target.items).astype(str)), np.array(classes)])
    linked = np.flatnonzero(rng.random(target.items) < 0.9)  # most items have an entity, as KB4Rec's links
    _write(directory / f"{name}.link", "item_id:token\tentity_id:token",
           [np.char.add("i", linked.astype(str)), np.char.add("e", linked.astype(str))])
    entities = int(len(linked) * 1.5)  # the linked items' entities, and as many others again by half
    n_triples = int(entities * target.triples_per_entity)
    heads = np.concatenate([linked, rng.integers(0, entities, n_triples - len(linked))])
    _write(directory / f"{name}.kg", "head_id:token\trelation_id:token\ttail_id:token",
           [np.char.add("e", heads.astype(str)), np.char.add("r", rng.integers(0, 20, n_triples).astype(str)),
            np.char.add("e", rng.integers(0, entities, n_triples).astype(str))])
    reached = statistics(user_counts, item_counts)
    return {"like": like, "seed": seed, "directory": str(directory), "seconds": round(time.perf_counter() - tic, 1),
            "target": asdict(target), "reached": reached}


def statistics(user_counts: np.ndarray, item_counts: np.ndarray) -> dict:
    def describe(counts: np.ndarray) -> dict:
        return {"min": int(counts.min()), "max": int(counts.max()), "mean": round(float(counts.mean()), 3),
                "median": float(np.median(counts)), "p99": float(np.percentile(counts, 99)),
                "gini": round(gini(counts), 4)}

    return {"users": len(user_counts), "items": len(item_counts), "interactions": int(user_counts.sum()),
            "per_user": describe(user_counts), "per_item": describe(item_counts)}


def _write(path: Path, header: str, columns: list[np.ndarray]) -> None:
    """Tab-separated columns of strings, written in large blocks (millions of rows in seconds)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as handle:
        handle.write(header + "\n")
        rows = len(columns[0])
        for start in range(0, rows, 1_000_000):
            block = columns[0][start:start + 1_000_000]
            for column in columns[1:]:
                block = np.char.add(np.char.add(block, "\t"), column[start:start + 1_000_000])
            handle.write("\n".join(block.tolist()))
            handle.write("\n")
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--like", choices=sorted(TARGETS), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(json.dumps(generate(args.like, args.seed, args.out), indent=1))


if __name__ == "__main__":
    main()
