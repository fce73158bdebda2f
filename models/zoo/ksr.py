"""KSR (Huang et al., SIGIR 2018) as RecBole 1.2.1 defines it: a GRU over items plus a key-value
memory with one slot per KG relation, written by a gated TransE-style update at every item and read
with attention from the GRU state. Candidates combine item and entity embeddings.

Differences in how, not what: the memory is written only up to each row's last real item (RecBole
writes through the padding and keeps a snapshot), and everything runs in float32 (RecBole's relation
matrix is float64 and fails in the read, see shared/spec/models.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models.base import RecommenderConfig, SequentialRecommender, bpr_loss, embedding_and_gru_init
from models.config_types import Annotated, AtLeast, Probability
from models.data.samples import Batch, SequentialData
from models.kg_embed import TransEConfig
from models.nn.dropout import Dropout
from models.nn.packed_gru import PackedGRU, PackInfo
from models.registry import register_model
from models.zoo.kg_common import pretrained_kg_matrices


@dataclass
class KSRConfig(RecommenderConfig, TransEConfig):
    """KSR's keys; the defaults are KSR.yaml's (and _transe.yaml's)."""

    embedding_size: Annotated[int, AtLeast(1)]
    kg_embedding_size: Annotated[int, AtLeast(1)]
    hidden_size: Annotated[int, AtLeast(1)]
    num_layers: Annotated[int, AtLeast(1)]
    dropout_prob: Annotated[float, Probability()]
    freeze_kg: bool
    gamma: float  # the attention's softmax temperature over the relations


def memory_write(heads: torch.Tensor, relations: torch.Tensor, pack: PackInfo) -> torch.Tensor:
    """Gated key-value memory after each row's last real item.

    heads: [T, K] packed entity embeddings of the history items; relations: [R, K].
    Per step, for the active rows: tails = head + relations [b, R, K];
    z = sigmoid(<M, tails>) per slot; M <- M + z * (tails - M)  (= (1 - z) M + z tails).
    Returns [B, R, K] in the batch's original row order.
    """
    if not torch.is_grad_enabled():
        return _memory_write_inference(heads, relations, pack)
    n_rel, dim = relations.shape
    memory = heads.new_zeros(pack.batch_sizes[0], n_rel, dim)
    finished: list[torch.Tensor] = []
    steps = len(pack.batch_sizes)
    for step, rows in enumerate(pack.batch_sizes):
        start = pack.offsets[step]
        tails = heads[start : start + rows, None, :] + relations[None, :, :]  # [b, R, K]
        gate = torch.sigmoid((memory * tails).sum(-1, keepdim=True))  # [b, R, 1]
        memory = memory + gate * (tails - memory)
        continuing = pack.batch_sizes[step + 1] if step + 1 < steps else 0
        if continuing < rows:  # rows whose last real item is this step
            finished.append(memory[continuing:])
        memory = memory[:continuing]
    last_sorted = torch.cat(finished[::-1])  # longest rows first = the sorted order
    return last_sorted.index_select(0, pack.unsort)


# Rows per block of the inference path: a block's [rows, R, K] memory and its two work buffers stay in
# the cores' L2 caches through all L steps (at R = 21, K = 64: 3 x 0.7 MB), instead of streaming the
# whole batch's memory from RAM once per operation per step.
MEMORY_BLOCK_ROWS = 128


def _memory_write_inference(heads: torch.Tensor, relations: torch.Tensor, pack: PackInfo) -> torch.Tensor:
    """``memory_write`` without autograd: the same operations on every element in the same order
    (bit for bit, tests/test_kg.py), in place, one block of rows at a time. Rows are sorted by length,
    so a finished row simply stops being updated and its memory stays in place."""
    n_rel, dim = relations.shape
    total = pack.batch_sizes[0]
    memory = heads.new_zeros(total, n_rel, dim)
    block = min(MEMORY_BLOCK_ROWS, total)
    tails_buf, work_buf = heads.new_empty(block, n_rel, dim), heads.new_empty(block, n_rel, dim)
    gate_buf = heads.new_empty(block, n_rel, 1)
    relations_ = relations[None, :, :]
    for first in range(0, total, block):
        for step, rows in enumerate(pack.batch_sizes):
            last = min(first + block, rows)  # active rows of this block: [first, last)
            if last <= first:
                break  # later steps have fewer rows still
            b, start = last - first, pack.offsets[step]
            mem = memory[first:last]
            tails = torch.add(heads[start + first : start + last, None, :], relations_, out=tails_buf[:b])
            gate = torch.sum(torch.mul(mem, tails, out=work_buf[:b]), -1, keepdim=True, out=gate_buf[:b])
            gate.sigmoid_()
            mem.add_(torch.sub(tails, mem, out=work_buf[:b]).mul_(gate))  # M + z * (tails - M)
    return memory.index_select(0, pack.unsort)


def memory_read(memory: torch.Tensor, query: torch.Tensor, relations: torch.Tensor, gamma: float) -> torch.Tensor:
    """The user's KG preference: memory slots [B, R, K] weighted by softmax(gamma * <query, r>) over R."""
    attention = torch.softmax(gamma * (query @ relations.t()), dim=-1)  # [B, R]
    return (memory * attention.unsqueeze(-1)).sum(1)  # [B, K]


@register_model
class KSR(SequentialRecommender):
    config_type = KSRConfig
    cfg: KSRConfig
    relation_matrix: torch.Tensor  # a buffer: [R, K]

    def __init__(self, config: Any, data: SequentialData) -> None:
        super().__init__(config, data)
        cfg = self.cfg
        entity_matrix, relation_matrix = pretrained_kg_matrices(config, data, cfg.kg_embedding_size)
        # registration and init order as RecBole, so a seed gives RecBole's initial weights
        self.item_embedding = nn.Embedding(self.n_items, cfg.embedding_size, padding_idx=0)
        self.entity_embedding = nn.Embedding(self.n_items, cfg.kg_embedding_size, padding_idx=0)
        self.entity_embedding.weight.requires_grad = not cfg.freeze_kg
        self.emb_dropout = Dropout(cfg.dropout_prob)
        self.gru_layers = PackedGRU(cfg.embedding_size, cfg.hidden_size, cfg.num_layers)
        self.dense = nn.Linear(cfg.hidden_size, cfg.kg_embedding_size)
        self.dense_layer_u = nn.Linear(cfg.hidden_size + cfg.kg_embedding_size, cfg.embedding_size)
        self.dense_layer_i = nn.Linear(cfg.embedding_size + cfg.kg_embedding_size, cfg.embedding_size)
        self.apply(embedding_and_gru_init)
        with torch.no_grad():
            self.entity_embedding.weight.copy_(entity_matrix[: self.n_items])
        # [R, K]: PAD row + the KG's relations ([UI-Relation] excluded, as RecBole); fixed, not trained
        self.register_buffer("relation_matrix", relation_matrix, persistent=False)

    def forward(self, item_seq: torch.Tensor, item_length: torch.Tensor) -> torch.Tensor:
        pack = PackInfo.from_lengths(item_length, item_seq.shape[1])
        if self.training:
            x = self.emb_dropout(self.item_embedding(item_seq))  # [B, L, E]
            h = self.gru_layers.last_hidden(x, pack)  # [B, H]
        else:
            h = self.gru_layers.last_hidden(None, pack, self.item_embedding.weight, item_seq)
        packed_items = item_seq.reshape(-1).index_select(0, pack.flat_index)  # [T]
        memory = memory_write(self.entity_embedding(packed_items), self.relation_matrix, pack)  # [B, R, K]
        read = memory_read(memory, self.dense(h), self.relation_matrix, self.cfg.gamma)  # [B, K]
        return self.dense_layer_u(torch.cat([h, read], dim=-1))  # [B, E]

    def candidate_table(self) -> torch.Tensor:
        """q_i = dense_layer_i([item_emb(i); entity_emb(i)]) for every item: [N, E]."""
        return self.dense_layer_i(torch.cat([self.item_embedding.weight, self.entity_embedding.weight], -1))

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        user = self.forward(batch.item_seq, batch.item_length)  # [B, E]
        if self.loss_type == "BPR":
            assert batch.neg_item is not None
            pos = (user * self._candidates(batch.target)).sum(-1)
            neg = (user * self._candidates(batch.neg_item)).sum(-1)
            return bpr_loss(pos, neg)
        return nn.functional.cross_entropy(user @ self.candidate_table().t(), batch.target)

    def _candidates(self, items: torch.Tensor) -> torch.Tensor:
        return self.dense_layer_i(torch.cat([self.item_embedding(items), self.entity_embedding(items)], -1))

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        return self.forward(batch.item_seq, batch.item_length) @ self.candidate_table().t()  # [B, N]
