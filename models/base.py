"""The base class every sequential recommender derives from (RecBole's SequentialRecommender API)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from models.config_types import Annotated, OneOf, TypedConfig
from models.data.samples import Batch, SequentialData
from models.errors import ConfigError


@dataclass
class RecommenderConfig(TypedConfig):
    """The keys every model takes; a model's config type derives from this one."""

    loss_type: Annotated[str, OneOf("CE", "BPR", ignore_case=True)]

    def check(self, values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
        negatives = values.get("train_neg_sample_args")
        if self.loss_type == "BPR" and not negatives:
            raise ConfigError(f"{sources.get('loss_type')}: loss_type BPR needs train_neg_sample_args: "
                              "{distribution: uniform, sample_num: 1}")
        if self.loss_type == "CE" and negatives:
            raise ConfigError(f"{sources.get('train_neg_sample_args')}: loss_type CE takes no negative samples: "
                              "set train_neg_sample_args: ~")


class SequentialRecommender(nn.Module):
    """A model maps a batch of histories to scores over every item id.

    Subclasses implement ``calculate_loss(batch)`` and ``full_sort_predict(batch) -> [B, N]``.
    The trainer never looks inside a model beyond these two methods.
    """

    #: the model's keys, types and allowed values; build_config checks them, the model reads ``self.cfg``
    config_type: ClassVar[type[RecommenderConfig]]

    def __init__(self, config: Any, data: SequentialData) -> None:
        super().__init__()
        self.config = config
        self.cfg = self.config_type.from_config(config)
        self.n_items = data.n_items
        self.max_seq_length = data.max_len
        self.loss_type = self.cfg.loss_type

    @property
    def needs_negatives(self) -> bool:
        return self.loss_type == "BPR"

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def epochs_stage(self) -> None:
        """Switch to the stage whose epochs train and validate, after any stage of the model's own
        (S3Rec: fine-tuning, after pretraining); the weights stay as they are. A cost measurement uses
        it; a model with one stage has nothing to switch."""

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError


def embedding_and_gru_init(module: nn.Module) -> None:
    """RecBole's GRU4Rec/KSR init: xavier_normal_ on embeddings, xavier_uniform_ on the first GRU layer
    (hh then ih, RecBole's order, so the RNG stream matches); other layers keep PyTorch's init."""
    if isinstance(module, nn.Embedding):
        nn.init.xavier_normal_(module.weight)
    elif isinstance(module, nn.GRU):
        nn.init.xavier_uniform_(module.get_parameter("weight_hh_l0"))
        nn.init.xavier_uniform_(module.get_parameter("weight_ih_l0"))


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
