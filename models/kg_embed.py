"""TransE embeddings of a dataset's knowledge graph, written as RecBole's ``.ent``/``.rel`` files.

RecBole's KG models need pretrained entity and relation vectors that ml-100k does not ship. When a
dataset has no ``<dataset>.ent``/``<dataset>.rel``, we train TransE (Bordes et al., 2013): margin
ranking loss on ||h + r - t||, negatives by corrupting the head or the tail, entity vectors
renormalised to unit length before every batch. The files are cached under
``~/.cache/seqtune/kg/<key>/`` keyed by the graph's checksum, the dimension and every TransE
parameter, built under a lock and published by an atomic rename, so concurrent trials share one copy.

    python -m models.kg_embed --dataset ml-100k --dim 64 [--evaluate]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models.config import Config, read_yaml
from models.config_types import Above, Annotated, AtLeast, TypedConfig
from models.data.datasets import cache_root, resolve_dataset_dir, sha256_of
from models.data.kg import HEAD, RELATION, TAIL, read_kg
from models.registry import ZOO_DIR
from models.utils import file_lock


@dataclass
class TransEConfig(TypedConfig):
    """The TransE keys of the KG models (their config types derive from this one); the defaults are
    zoo/_transe.yaml's, which GRU4RecKG.yaml and KSR.yaml include."""

    transe_epochs: Annotated[int, AtLeast(1)]
    transe_learning_rate: Annotated[float, Above(0)]
    transe_margin: Annotated[float, Above(0)]
    transe_batch_size: Annotated[int, AtLeast(1)]
    transe_seed: int


def _shared_defaults(path: Path = ZOO_DIR / "_transe.yaml") -> TransEConfig:
    values = read_yaml(path)
    return TransEConfig.from_values(values, dict.fromkeys(values, path.name))


_DEFAULTS = _shared_defaults()


@dataclass(frozen=True)
class TransEParams:
    """One TransE training run (its fields key the vector cache); unset ones take _transe.yaml's values."""

    dim: int = 64  # the KG models' embedding size; the models always pass theirs
    epochs: int = _DEFAULTS.transe_epochs
    learning_rate: float = _DEFAULTS.transe_learning_rate
    margin: float = _DEFAULTS.transe_margin
    batch_size: int = _DEFAULTS.transe_batch_size
    seed: int = _DEFAULTS.transe_seed

    @staticmethod
    def from_config(config: Config, dim: int) -> TransEParams:
        cfg = TransEConfig.from_config(config)
        return TransEParams(dim=dim, epochs=cfg.transe_epochs, learning_rate=cfg.transe_learning_rate,
                            margin=cfg.transe_margin, batch_size=cfg.transe_batch_size, seed=cfg.transe_seed)


@dataclass
class TransEModel:
    entities: list[str]
    relations: list[str]
    entity_vectors: np.ndarray  # [n_entities, dim]
    relation_vectors: np.ndarray  # [n_relations, dim]
    losses: list[float]


def _index_triples(kg: pd.DataFrame) -> tuple[list[str], list[str], np.ndarray]:
    entity_codes, entities = pd.factorize(pd.concat([kg[HEAD], kg[TAIL]], ignore_index=True), sort=False)
    relation_codes, relations = pd.factorize(kg[RELATION], sort=False)
    n = len(kg)
    triples = np.stack([entity_codes[:n], relation_codes, entity_codes[n:]], axis=1).astype(np.int64)
    return list(map(str, entities)), list(map(str, relations)), triples


def train_transe(triples: np.ndarray, n_entities: int, n_relations: int, params: TransEParams,
                 show_progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    generator = torch.Generator().manual_seed(params.seed)
    bound = 6 / params.dim**0.5
    entity = (torch.rand(n_entities, params.dim, generator=generator) * 2 - 1) * bound
    relation = (torch.rand(n_relations, params.dim, generator=generator) * 2 - 1) * bound
    relation = torch.nn.functional.normalize(relation, dim=1)
    entity.requires_grad_(True)
    relation.requires_grad_(True)
    optimizer = torch.optim.Adam([entity, relation], lr=params.learning_rate)
    data = torch.from_numpy(triples)
    losses = []
    epochs = range(params.epochs)
    if show_progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc="TransE", unit="epoch", leave=False)
    for _ in epochs:
        order = torch.randperm(len(data), generator=generator)
        total = 0.0
        for start in range(0, len(data), params.batch_size):
            batch = data[order[start : start + params.batch_size]]  # [b, 3]
            head, rel, tail = batch[:, 0], batch[:, 1], batch[:, 2]
            corrupt = torch.randint(0, n_entities, (len(batch),), generator=generator)
            replace_head = torch.rand(len(batch), generator=generator) < 0.5
            neg_head = torch.where(replace_head, corrupt, head)
            neg_tail = torch.where(replace_head, tail, corrupt)
            with torch.no_grad():
                entity.div_(entity.norm(dim=1, keepdim=True).clamp_min(1e-12))
            r = relation[rel]
            positive = (entity[head] + r - entity[tail]).norm(dim=1)  # [b]
            negative = (entity[neg_head] + r - entity[neg_tail]).norm(dim=1)
            loss = torch.relu(params.margin + positive - negative).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        losses.append(total / len(data))
    with torch.no_grad():
        entity.div_(entity.norm(dim=1, keepdim=True).clamp_min(1e-12))
    return entity.detach(), relation.detach(), losses


def fit_transe(kg: pd.DataFrame, params: TransEParams, show_progress: bool = False) -> TransEModel:
    entities, relations, triples = _index_triples(kg)
    entity, relation, losses = train_transe(triples, len(entities), len(relations), params, show_progress)
    return TransEModel(entities, relations, entity.numpy(), relation.numpy(), losses)


def write_vectors(path: Path, id_field: str, vec_field: str, tokens: Sequence[str], vectors: np.ndarray) -> None:
    with path.open("w") as handle:
        handle.write(f"{id_field}:token\t{vec_field}:float_seq\n")
        for token, vector in zip(tokens, vectors, strict=True):
            handle.write(token + "\t" + " ".join(f"{v:.6g}" for v in vector) + "\n")


def kg_vector_files(
    dataset: str, directory: Path, params: TransEParams, show_progress: bool = False
) -> tuple[Path, Path]:
    """The .ent/.rel files to use: the dataset's own, else cached TransE ones (trained on first use)."""
    own = directory / f"{dataset}.ent", directory / f"{dataset}.rel"
    if own[0].is_file() and own[1].is_file():
        return own
    checksum = sha256_of(directory / f"{dataset}.kg")
    key = hashlib.sha256(json.dumps({"kg": checksum, **asdict(params)}, sort_keys=True).encode()).hexdigest()[:16]
    target = cache_root() / "kg" / f"{dataset}-transe-{key}"
    files = target / f"{dataset}.ent", target / f"{dataset}.rel"
    if all(f.is_file() for f in files):
        return files
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{target.name}.lock"):
        if all(f.is_file() for f in files):  # another trial trained them while we waited
            return files
        model = fit_transe(read_kg(directory, dataset), params, show_progress)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
        write_vectors(staging / files[0].name, "ent_id", "ent_emb", model.entities, model.entity_vectors)
        write_vectors(staging / files[1].name, "rel_id", "rel_emb", model.relations, model.relation_vectors)
        (staging / "transe.json").write_text(json.dumps({**asdict(params), "losses": model.losses}, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    return files


def held_out_split(kg: pd.DataFrame, seed: int, held_out: int = 1000
                   ) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """The graph's entities and relations, and its id triples split into training and ``held_out`` test
    triples (a seeded permutation): the link-prediction protocol of ``--evaluate``."""
    entities, relations, triples = _index_triples(kg)
    order = np.random.default_rng(seed).permutation(len(triples))
    return entities, relations, triples[order[held_out:]], triples[order[:held_out]]


def link_prediction(model: TransEModel, train: np.ndarray, test: np.ndarray, k: int = 10) -> dict[str, float]:
    """Filtered MRR and Hits@k over head and tail prediction of the test triples."""
    entity = torch.from_numpy(model.entity_vectors)
    relation = torch.from_numpy(model.relation_vectors)
    known = np.concatenate([train, test])
    tails: dict[tuple[int, int], set[int]] = {}
    heads: dict[tuple[int, int], set[int]] = {}
    for h, r, t in known.tolist():
        tails.setdefault((h, r), set()).add(t)
        heads.setdefault((r, t), set()).add(h)
    reciprocal, hits = [], []
    for h, r, t in test.tolist():
        for predict_tail in (True, False):
            if predict_tail:
                scores = (entity[h] + relation[r] - entity).norm(dim=1)
                truth, others = t, tails[(h, r)]
            else:
                scores = (entity + relation[r] - entity[t]).norm(dim=1)
                truth, others = h, heads[(r, t)]
            filtered = scores.clone()
            filtered[list(others - {truth})] = float("inf")
            rank = int((filtered < filtered[truth]).sum()) + 1
            reciprocal.append(1 / rank)
            hits.append(rank <= k)
    return {"mrr": float(np.mean(reciprocal)), f"hits@{k}": float(np.mean(hits)), "test_triples": len(test)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.kg_embed", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    defaults = TransEParams()
    parser.add_argument("--dim", type=int, default=defaults.dim)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--margin", type=float, default=defaults.margin)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--evaluate", action="store_true",
                        help="also hold out 1000 triples, train on the rest and report filtered MRR / Hits@10")
    args = parser.parse_args(argv)
    params = TransEParams(args.dim, args.epochs, args.learning_rate, args.margin, args.batch_size, args.seed)
    directory = resolve_dataset_dir(args.dataset, args.data_path)
    tic = time.perf_counter()
    ent, rel = kg_vector_files(args.dataset, directory, params, show_progress=sys.stderr.isatty())
    print(f"entity vectors: {ent}\nrelation vectors: {rel}  ({time.perf_counter() - tic:.1f}s)")
    if args.evaluate:
        entities, relations, train, test = held_out_split(read_kg(directory, args.dataset), args.seed)
        entity, relation, losses = train_transe(train, len(entities), len(relations), params)
        model = TransEModel(entities, relations, entity.numpy(), relation.numpy(), losses)
        quality = link_prediction(model, train, test)
        print(json.dumps({"params": asdict(params), "first_loss": losses[0], "last_loss": losses[-1], **quality}))
    return 0


if __name__ == "__main__":
    from models.cli import run_cli

    run_cli(lambda: main())
