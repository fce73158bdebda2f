"""An item attribute from ``.item`` (S3Rec's ``item_attribute: class``): read, filter, multi-hot.

As in RecBole, interactions whose item has no ``.item`` row are dropped (``filter_inter_by_user_or_item``)
and items that only ``.item`` lists get ids after the interactions' items.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from models.data.atomic import FieldType, read_atomic
from models.data.samples import SequentialData
from models.errors import DataError


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


def attribute_filter(frame: pd.DataFrame, attribute: ItemAttribute, item_field: str) -> pd.DataFrame:
    """The interactions whose item has a ``.item`` row."""
    kept = frame[frame[item_field].isin(set(attribute.items))]
    if len(kept) == 0:
        raise DataError(f"{attribute.path}: no interaction's item has a row here")
    return kept
