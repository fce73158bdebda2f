"""GRU4Rec (Hidasi et al., 2016) as RecBole 1.2.1 defines it: embedding -> dropout -> GRU -> dense.

The one deviation is how, not what: RecBole applies ``dense`` to all L outputs and runs the GRU
over the padding; here the GRU runs only the real steps and ``dense`` only the gathered output,
which is the same function of the same parameters (see models/nn/packed_gru.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models.base import RecommenderConfig, SequentialRecommender, embedding_and_gru_init, scores_and_loss
from models.config_types import Annotated, AtLeast, Probability
from models.data.samples import Batch, SequentialData
from models.nn.dropout import Dropout
from models.nn.packed_gru import PackedGRU, PackInfo
from models.registry import register_model


@dataclass
class GRU4RecConfig(RecommenderConfig):
    """GRU4Rec's keys; the defaults are GRU4Rec.yaml's."""

    embedding_size: Annotated[int, AtLeast(1)]
    hidden_size: Annotated[int, AtLeast(1)]
    num_layers: Annotated[int, AtLeast(1)]
    dropout_prob: Annotated[float, Probability()]


@register_model
class GRU4Rec(SequentialRecommender):
    config_type = GRU4RecConfig
    cfg: GRU4RecConfig

    def __init__(self, config: Any, data: SequentialData) -> None:
        super().__init__(config, data)
        cfg = self.cfg
        # registration order and init order as RecBole, so a seed gives RecBole's initial weights
        self.item_embedding = nn.Embedding(self.n_items, cfg.embedding_size, padding_idx=0)
        self.emb_dropout = Dropout(cfg.dropout_prob)
        self.gru_layers = PackedGRU(cfg.embedding_size, cfg.hidden_size, cfg.num_layers)
        self.dense = nn.Linear(cfg.hidden_size, cfg.embedding_size)
        self.apply(embedding_and_gru_init)

    def forward(self, item_seq: torch.Tensor, item_length: torch.Tensor) -> torch.Tensor:
        pack = PackInfo.from_lengths(item_length, item_seq.shape[1])
        if self.training:
            x = self.emb_dropout(self.item_embedding(item_seq))  # [B, L, E], mask drawn as RecBole
            h = self.gru_layers.last_hidden(x, pack)  # [B, H]
        else:  # no dropout: project each item once instead of once per occurrence
            h = self.gru_layers.last_hidden(None, pack, self.item_embedding.weight, item_seq)
        return self.dense(h)  # [B, E]

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        seq_output = self.forward(batch.item_seq, batch.item_length)
        return scores_and_loss(seq_output, self.item_embedding.weight, batch, self.loss_type)

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        seq_output = self.forward(batch.item_seq, batch.item_length)
        return seq_output @ self.item_embedding.weight.t()  # [B, N]
