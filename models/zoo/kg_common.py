"""What both KG models share: loading the aligned pretrained entity and relation matrices."""

from __future__ import annotations

from typing import Any

import torch

from models.data.kg import aligned_vectors
from models.data.samples import SequentialData


def pretrained_kg_matrices(config: Any, data: SequentialData, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(entity matrix [N, dim] by item id, relation matrix [1 + R, dim]); TransE when no files exist."""
    from models.kg_embed import TransEParams, kg_vector_files
    from models.trainer import show_progress

    params = TransEParams.from_config(config, dim)
    ent_path, rel_path = kg_vector_files(data.name, data.source_dir, params, show_progress(config))
    entity, relation = aligned_vectors(data, dim, ent_path, rel_path)
    return torch.from_numpy(entity), torch.from_numpy(relation)
