"""Data: RecBole atomic files, dataset fetching and caching, and the sequential protocol."""

from models.data.atomic import AtomicFile, FieldType, read_atomic
from models.data.samples import SampleSet, SequentialData
from models.data.sequential import load_sequential_data

__all__ = [
    "AtomicFile",
    "FieldType",
    "SampleSet",
    "SequentialData",
    "load_sequential_data",
    "read_atomic",
]
