"""The data a trial trains on, as a pipeline of stages, each in its own module and each entered once:

1. locate (here): the dataset's files for the model's data kind, their content checksum, the cache key;
2. cache (cache.py): the prepared data from memory or disk, else the stages below under a lock;
3. read (atomic.py, here): the ``.inter`` user, item and time columns, typed and checked;
4. filter: the interactions whose item has a KG entity (kg.py) or an ``.item`` row (attributes.py);
5. protocol (protocol.py): ids, history windows, the leave-one-out split;
6. extras: the KG's side data (kg.py) or the attribute matrix (attributes.py); then written to the cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from models.config import model_yaml
from models.data.atomic import read_atomic
from models.data.cache import CACHE_FORMAT, MEMORY, load_cached, to_state
from models.data.datasets import cache_root, resolve_dataset_dir, sha256_of
from models.data.protocol import build_sequential_data
from models.data.samples import SequentialData
from models.errors import ConfigError, DataError
from models.utils import atomic_path, file_lock


def data_kind(model: str) -> str:
    """'sequential', 'kg' (a knowledge graph) or 'item_attribute' (an ``.item`` field): the model YAML's data_kind."""
    return model_yaml(model).data_kind


@dataclass(frozen=True)
class DataSource:
    """Stage 1: what a config's data is made of, checked to exist, fingerprinted by content."""

    dataset: str
    directory: Path
    kind: str
    fields: dict[str, str]  # USER_ID_FIELD, ITEM_ID_FIELD, TIME_FIELD
    checksum: str  # of every file this kind reads
    recipe: dict[str, Any]  # everything the prepared data depends on

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.recipe, sort_keys=True).encode()).hexdigest()[:16]

    def path(self, suffix: str) -> Path:
        return self.directory / f"{self.dataset}.{suffix}"


def locate(config: Any) -> DataSource:
    dataset = config.dataset
    for key in ("rm_dup_inter", "user_inter_num_interval", "item_inter_num_interval"):
        if config.get(key) is not None:
            raise ConfigError(f"{config.sources.get(key, key)}: {key} filtering is not supported yet; leave it ~")
    directory = resolve_dataset_dir(dataset, config.get("data_path"))
    fields = {k: config[k] for k in ("USER_ID_FIELD", "ITEM_ID_FIELD", "TIME_FIELD")}
    kind = data_kind(config.model)
    checksum = sha256_of(directory / f"{dataset}.inter")
    recipe: dict[str, Any] = {"format": CACHE_FORMAT, "kind": kind, "fields": fields,
                              "max_len": config["MAX_ITEM_LIST_LENGTH"],
                              "normalize_all": bool(config.get("normalize_all", True))}
    needed = {"kg": ("kg", "link"), "item_attribute": ("item",)}.get(kind, ())
    for suffix in needed:
        path = directory / f"{dataset}.{suffix}"
        if not path.is_file():
            what = (f"the knowledge graph files {dataset}.kg and {dataset}.link" if kind == "kg" else
                    f"{dataset}.item with the item_attribute field {config['item_attribute']!r}")
            raise DataError(f"{path}: {config.model} needs {what}")
        checksum = hashlib.sha256((checksum + sha256_of(path)).encode()).hexdigest()
    if kind == "item_attribute":
        recipe.update(item_attribute=str(config["item_attribute"]),
                      filter_inter_by_user_or_item=bool(config.get("filter_inter_by_user_or_item", True)))
    recipe["inter"] = checksum
    return DataSource(dataset, directory, kind, fields, checksum, recipe)


def load_sequential_data(config: Any) -> SequentialData:
    """The dataset the config describes: from this process's memory, the disk cache, or built once."""
    source = locate(config)
    if source.key in MEMORY:
        return MEMORY[source.key]
    cache_file = cache_root() / "tensors" / f"{source.dataset}-{source.key}.pt"
    data = load_cached(cache_file, source.dataset, source.directory, source.checksum)
    if data is None:
        with file_lock(cache_file.with_suffix(".lock")):  # concurrent workers build it once
            data = load_cached(cache_file, source.dataset, source.directory, source.checksum)
            if data is None:
                data = prepare(source)
                with atomic_path(cache_file) as tmp:
                    torch.save(to_state(data), tmp)
    MEMORY[source.key] = data
    return data


def prepare(source: DataSource) -> SequentialData:
    """Stages 3-6: read, filter, the protocol, the kind's extras."""
    item_field = source.fields["ITEM_ID_FIELD"]
    frame = read_interactions(source.path("inter"), source.fields)
    extras: dict[str, Any] = {}
    attribute = None
    if source.kind == "kg":
        from models.data.kg import link_filter

        frame, extras = link_filter(source.directory, source.dataset, frame, item_field)
    elif source.kind == "item_attribute":
        from models.data.attributes import attribute_filter, read_item_attribute

        attribute = read_item_attribute(source.path("item"), item_field, source.recipe["item_attribute"])
        if source.recipe["filter_inter_by_user_or_item"]:
            frame = attribute_filter(frame, attribute, item_field)
    data = build_sequential_data(source.dataset, frame, source.fields, source.recipe["max_len"],
                                 source.recipe["normalize_all"], source.checksum, source.directory,
                                 extra_items=attribute.items if attribute is not None else ())
    data.extras.update(extras)
    if attribute is not None:
        from models.data.attributes import attribute_extras

        data.extras.update(attribute_extras(data, attribute))
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
