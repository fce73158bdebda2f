"""The base class every sequential recommender derives from (RecBole's SequentialRecommender API)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models.data.sequential import Batch, SequentialData
from models.errors import ConfigError


class SequentialRecommender(nn.Module):
    """A model maps a batch of histories to scores over every item id.

    Subclasses implement ``calculate_loss(batch)`` and ``full_sort_predict(batch) -> [B, N]``.
    The trainer never looks inside a model beyond these two methods.
    """

    #: config keys whose value must be an integer (quniform gives floats such as 64.0)
    int_keys: tuple[str, ...] = ()

    def __init__(self, config: Any, data: SequentialData) -> None:
        super().__init__()
        self.config = config
        self.n_items = data.n_items
        self.max_seq_length = data.max_len
        for key in self.int_keys:
            value = config[key]
            if isinstance(value, float) and value.is_integer():
                config[key] = int(value)
            elif not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{config.sources.get(key, key)}: {key} must be a positive integer, got {value!r}")
        self.loss_type = str(config["loss_type"]).upper()
        if self.loss_type not in {"CE", "BPR"}:
            raise ConfigError(
                f"{config.sources.get('loss_type')}: loss_type must be CE or BPR, got {config['loss_type']!r}"
            )
        if self.loss_type == "BPR" and not config.get("train_neg_sample_args"):
            raise ConfigError(
                "loss_type BPR needs train_neg_sample_args: {distribution: uniform, sample_num: 1}"
            )
        if self.loss_type == "CE" and config.get("train_neg_sample_args"):
            raise ConfigError("loss_type CE takes no negative samples: set train_neg_sample_args: ~")

    @property
    def needs_negatives(self) -> bool:
        return self.loss_type == "BPR"

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError


def embedding_and_gru_init(module: nn.Module) -> None:
    """RecBole's GRU4Rec/KSR init: xavier_normal_ on embeddings, xavier_uniform_ on the first GRU layer
    (hh then ih, RecBole's order, so the RNG stream matches); other layers keep PyTorch's init."""
    if isinstance(module, nn.Embedding):
        nn.init.xavier_normal_(module.weight)
    elif isinstance(module, nn.GRU):
        nn.init.xavier_uniform_(module.weight_hh_l0)
        nn.init.xavier_uniform_(module.weight_ih_l0)


def bpr_loss(pos_score: torch.Tensor, neg_score: torch.Tensor, gamma: float = 1e-10) -> torch.Tensor:
    """RecBole's BPRLoss: mean of -log(gamma + sigmoid(pos - neg))."""
    return -torch.log(gamma + torch.sigmoid(pos_score - neg_score)).mean()


def scores_and_loss(seq_output: torch.Tensor, candidates: torch.Tensor, batch: Batch, loss_type: str) -> torch.Tensor:
    """CE over every candidate row (padding included, as RecBole) or BPR against one negative."""
    if loss_type == "BPR":
        assert batch.neg_item is not None
        pos = (seq_output * candidates[batch.target]).sum(-1)
        neg = (seq_output * candidates[batch.neg_item]).sum(-1)
        return bpr_loss(pos, neg)
    logits = seq_output @ candidates.t()  # [B, N]
    return nn.functional.cross_entropy(logits, batch.target)
