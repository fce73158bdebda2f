"""Knowledge-graph side data for GRU4RecKG and KSR, aligned the way RecBole 1.2.1 aligns it.

* ``.link`` maps items to KG entities. Link rows whose item has no interaction or whose entity is
  not in the graph are dropped, then every interaction whose item has no link (ml-100k: 100000 ->
  97554 interactions, 1598 items). Item ids are then assigned as usual, so every item is linked.
* Entity vectors (``.ent``: ``ent_id:token ent_emb:float_seq``) become an item-indexed matrix [N, d]
  (row 0 and items without a vector are zero); relation vectors (``.rel``: ``rel_id:token
  rel_emb:float_seq``) a matrix [1 + R, d] whose row 0 is RecBole's all-zero [PAD] relation and
  whose rows follow the relations' first appearance in ``.kg``.
* Without ``.ent``/``.rel`` files the vectors are trained with TransE (models/kg_embed.py) and cached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.data.atomic import FieldType, read_atomic
from models.errors import DataError

HEAD, RELATION, TAIL = "head_id", "relation_id", "tail_id"


def read_kg(directory: Path, dataset: str) -> pd.DataFrame:
    path = directory / f"{dataset}.kg"
    kg = read_atomic(path, columns=[HEAD, RELATION, TAIL])
    _expect_tokens(kg.types, path)
    frame = kg.frame
    empty = (frame[HEAD] == "") | (frame[RELATION] == "") | (frame[TAIL] == "")
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        raise DataError(f"{path}:{row + 2}: a triple with an empty head, relation or tail")
    return frame


def read_link(directory: Path, dataset: str, item_field: str) -> pd.DataFrame:
    path = directory / f"{dataset}.link"
    link = read_atomic(path, columns=[item_field, "entity_id"])
    _expect_tokens(link.types, path)
    return link.frame


def _expect_tokens(types: dict[str, FieldType], path: Path) -> None:
    for name, kind in types.items():
        if kind is not FieldType.TOKEN:
            raise DataError(f"{path}:1: field {name!r} must be of type token, found {kind.value}")


def link_filter(directory: Path, dataset: str, frame: pd.DataFrame, item_field: str) -> tuple[pd.DataFrame, dict]:
    """Keep the interactions of KG-linked items; return them and the item -> entity map."""
    link = read_link(directory, dataset, item_field)
    kg = read_kg(directory, dataset)
    link_path = directory / f"{dataset}.link"
    known_items = set(frame[item_field])
    missing = ~link[item_field].isin(known_items)
    if missing.any():
        row = int(np.flatnonzero(missing.to_numpy())[0])
        raise DataError(f"{link_path}:{row + 2}: item {link[item_field].iloc[row]!r} has no interaction in "
                        f"{dataset}.inter")
    duplicated = link[item_field].duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise DataError(f"{link_path}:{row + 2}: item {link[item_field].iloc[row]!r} is linked twice; "
                        "expected one entity per item")
    entities = set(kg[HEAD]) | set(kg[TAIL])
    link = link[link["entity_id"].isin(entities)]
    item_to_entity = dict(zip(link[item_field], link["entity_id"], strict=True))
    kept = frame[frame[item_field].isin(item_to_entity)]
    if len(kept) == 0:
        raise DataError(f"{link_path}: no linked item has an entity in {dataset}.kg")
    return kept, {"item_entity": item_to_entity, "item_field": item_field}


def relation_order(kg: pd.DataFrame) -> list[str]:
    return list(pd.unique(kg[RELATION]))


def read_vectors(path: Path, id_field: str, vec_field: str, dim: int) -> dict[str, np.ndarray]:
    table = read_atomic(path, columns=[id_field, vec_field])
    if table.types[vec_field] is not FieldType.FLOAT_SEQ:
        raise DataError(f"{path}:1: field {vec_field!r} must be of type float_seq")
    vectors: dict[str, np.ndarray] = {}
    for row, (token, vector) in enumerate(zip(table.frame[id_field], table.frame[vec_field], strict=True)):
        if len(vector) != dim:
            raise DataError(f"{path}:{row + 2}: vector of {token!r} has dimension {len(vector)}, "
                            f"but the model expects {dim}")
        vectors[token] = np.asarray(vector, dtype=np.float32)
    return vectors


def aligned_vectors(data: Any, dim: int, ent_path: Path, rel_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(entity matrix [N, dim] indexed by item id, relation matrix [1 + R, dim] with a zero PAD row)."""
    directory, dataset = data.source_dir, data.name
    kg = read_kg(directory, dataset)
    entity_vectors = read_vectors(ent_path, "ent_id", "ent_emb", dim)
    relation_vectors = read_vectors(rel_path, "rel_id", "rel_emb", dim)
    kg_path = directory / f"{dataset}.kg"
    for column, known, what, vec_path in ((HEAD, entity_vectors, "entity", ent_path),
                                          (TAIL, entity_vectors, "entity", ent_path),
                                          (RELATION, relation_vectors, "relation", rel_path)):
        unknown = ~kg[column].isin(known)
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0])
            raise DataError(f"{kg_path}:{row + 2}: {what} {kg[column].iloc[row]!r} has no vector in {vec_path.name}")
    item_entity: dict[str, str] = data.extras["item_entity"]
    entity_matrix = np.zeros((data.n_items, dim), dtype=np.float32)
    for item_id, token in enumerate(data.item_tokens):
        entity = item_entity.get(token)
        if entity is not None and entity in entity_vectors:
            entity_matrix[item_id] = entity_vectors[entity]
    relations = relation_order(kg)
    relation_matrix = np.zeros((len(relations) + 1, dim), dtype=np.float32)
    for index, token in enumerate(relations, start=1):
        relation_matrix[index] = relation_vectors[token]
    return entity_matrix, relation_matrix
