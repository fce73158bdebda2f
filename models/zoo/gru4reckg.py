"""GRU4RecKG (RecBole 1.2.1): two GRUs, one over item embeddings and one over the (item-aligned)
pretrained KG entity embeddings, concatenated per step, projected, read at the last real item.
Candidates are scored with the item embeddings only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models.base import RecommenderConfig, SequentialRecommender, scores_and_loss
from models.config_types import Annotated, AtLeast, Probability
from models.data.samples import Batch, SequentialData
from models.kg_embed import TransEConfig
from models.nn.dropout import Dropout
from models.nn.packed_gru import PackedGRU, PackInfo
from models.registry import register_model
from models.zoo.kg_common import pretrained_kg_matrices


@dataclass
class GRU4RecKGConfig(RecommenderConfig, TransEConfig):
    """GRU4RecKG's keys; the defaults are GRU4RecKG.yaml's (and _transe.yaml's)."""

    embedding_size: Annotated[int, AtLeast(1)]
    hidden_size: Annotated[int, AtLeast(1)]
    num_layers: Annotated[int, AtLeast(1)]
    dropout_prob: Annotated[float, Probability()]
    freeze_kg: bool


@register_model
class GRU4RecKG(SequentialRecommender):
    config_type = GRU4RecKGConfig
    cfg: GRU4RecKGConfig

    def __init__(self, config: Any, data: SequentialData) -> None:
        super().__init__(config, data)
        cfg = self.cfg
        entity_matrix, _ = pretrained_kg_matrices(config, data, cfg.embedding_size)
        # RecBole's registration and init order: the same seed gives the same initial weights
        self.item_embedding = nn.Embedding(self.n_items, cfg.embedding_size, padding_idx=0)
        self.entity_embedding = nn.Embedding(self.n_items, cfg.embedding_size, padding_idx=0)
        self.item_emb_dropout = Dropout(cfg.dropout_prob)
        self.entity_emb_dropout = Dropout(cfg.dropout_prob)
        self.entity_embedding.weight.requires_grad = not cfg.freeze_kg
        self.item_gru_layers = PackedGRU(cfg.embedding_size, cfg.hidden_size, cfg.num_layers)
        self.entity_gru_layers = PackedGRU(cfg.embedding_size, cfg.hidden_size, cfg.num_layers)
        self.dense_layer = nn.Linear(cfg.hidden_size * 2, cfg.embedding_size)
        self.apply(_xavier_normal)  # GRUs keep PyTorch's default init, as in RecBole
        with torch.no_grad():
            self.entity_embedding.weight.copy_(entity_matrix[: self.n_items])

    def forward(self, item_seq: torch.Tensor, item_length: torch.Tensor) -> torch.Tensor:
        pack = PackInfo.from_lengths(item_length, item_seq.shape[1])
        if self.training:
            item_x = self.item_emb_dropout(self.item_embedding(item_seq))  # [B, L, E]
            entity_x = self.entity_emb_dropout(self.entity_embedding(item_seq))  # [B, L, E]
            h_item = self.item_gru_layers.last_hidden(item_x, pack)  # [B, H]
            h_entity = self.entity_gru_layers.last_hidden(entity_x, pack)  # [B, H]
        else:
            h_item = self.item_gru_layers.last_hidden(None, pack, self.item_embedding.weight, item_seq)
            h_entity = self.entity_gru_layers.last_hidden(None, pack, self.entity_embedding.weight, item_seq)
        return self.dense_layer(torch.cat([h_item, h_entity], dim=-1))  # [B, E]

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        seq_output = self.forward(batch.item_seq, batch.item_length)
        return scores_and_loss(seq_output, self.item_embedding.weight, batch, self.loss_type)

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        return self.forward(batch.item_seq, batch.item_length) @ self.item_embedding.weight.t()  # [B, N]


def _xavier_normal(module: nn.Module) -> None:
    """RecBole's xavier_normal_initialization: Embedding and Linear weights, Linear bias 0."""
    if isinstance(module, (nn.Embedding, nn.Linear)):
        nn.init.xavier_normal_(module.weight)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.constant_(module.bias, 0.0)
