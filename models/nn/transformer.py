"""RecBole 1.2.1's ``TransformerEncoder`` (recbole/model/layers.py): a post-LN BERT-style encoder.

Module names and registration order are RecBole's, so state_dict keys match and a seeded
construction (and the ``apply`` re-init that follows) draws the same random numbers. As RecBole
does, one layer is built and deep-copied ``n_layers`` times: every layer starts from the same
weights until the owning model re-initialises them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.nn.dropout import Dropout

#: the extended mask value RecBole adds to forbidden attention scores
MASK_VALUE = -10000.0


def gelu(x: torch.Tensor) -> torch.Tensor:
    """The exact erf form (not the tanh approximation)."""
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": gelu,
    "relu": torch.relu,
    "swish": swish,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}


class MultiHeadAttention(nn.Module):
    def __init__(self, n_heads: int, hidden_size: int, hidden_dropout_prob: float, attn_dropout_prob: float,
                 layer_norm_eps: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_size = hidden_size // n_heads
        self.scale = math.sqrt(self.head_size)
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.softmax = nn.Softmax(dim=-1)
        self.attn_dropout = Dropout(attn_dropout_prob)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.out_dropout = Dropout(hidden_dropout_prob)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.n_heads, self.head_size)  # [B, L, h, d]

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """x: [B, L, H]; attention_mask: additive, broadcastable to [B, h, L, L]."""
        q = self._heads(self.query(x)).permute(0, 2, 1, 3)  # [B, h, L, d]
        k = self._heads(self.key(x)).permute(0, 2, 3, 1)  # [B, h, d, L]
        v = self._heads(self.value(x)).permute(0, 2, 1, 3)  # [B, h, L, d]
        scores = torch.matmul(q, k) / self.scale + attention_mask  # [B, h, L, L]
        probs = self.attn_dropout(self.softmax(scores))
        context = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()  # [B, L, h, d]
        context = context.view(*context.shape[:-2], -1)  # [B, L, H]
        return self.LayerNorm(self.out_dropout(self.dense(context)) + x)


class FeedForward(nn.Module):
    def __init__(self, hidden_size: int, inner_size: int, hidden_dropout_prob: float, hidden_act: str,
                 layer_norm_eps: float) -> None:
        super().__init__()
        self.dense_1 = nn.Linear(hidden_size, inner_size)
        self.act = ACTIVATIONS[hidden_act]
        self.dense_2 = nn.Linear(inner_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = Dropout(hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense_2(self.act(self.dense_1(x)))) + x)  # [B, L, H]


class TransformerLayer(nn.Module):
    def __init__(self, n_heads: int, hidden_size: int, inner_size: int, hidden_dropout_prob: float,
                 attn_dropout_prob: float, hidden_act: str, layer_norm_eps: float) -> None:
        super().__init__()
        self.multi_head_attention = MultiHeadAttention(n_heads, hidden_size, hidden_dropout_prob, attn_dropout_prob,
                                                       layer_norm_eps)
        self.feed_forward = FeedForward(hidden_size, inner_size, hidden_dropout_prob, hidden_act, layer_norm_eps)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.feed_forward(self.multi_head_attention(x, attention_mask))


class TransformerEncoder(nn.Module):
    """``recompute``: keep only the input of each block (attention, feed-forward) for the backward pass
    and run the block again there (activation checkpointing). A layer holds ~12 tensors of [B, L, H] to
    [B, L, inner] for its gradient, so at RecBole's batch of 2048 an encoder pass keeps ~0.8 GB per layer
    alive; with ``recompute`` it keeps 2 x 26 MB per layer and rebuilds one block at a time. The
    recomputation replays the forward's random state, so dropout masks, outputs, gradients and the
    generator state afterwards are the same as without it: it trades time (one more forward of the
    encoder) for memory, never the numbers."""

    def __init__(self, n_layers: int, n_heads: int, hidden_size: int, inner_size: int, hidden_dropout_prob: float,
                 attn_dropout_prob: float, hidden_act: str, layer_norm_eps: float, recompute: bool = False) -> None:
        super().__init__()
        layer = TransformerLayer(n_heads, hidden_size, inner_size, hidden_dropout_prob, attn_dropout_prob,
                                 hidden_act, layer_norm_eps)
        self.layer = nn.ModuleList([copy.deepcopy(layer) for _ in range(n_layers)])
        self.recompute = recompute

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The last layer's hidden states [B, L, H]."""
        if not (self.recompute and torch.is_grad_enabled() and self.training):
            for layer in self.layer:
                x = layer(x, attention_mask)
            return x
        for layer in self.layer:  # per block: only one block's activations are ever rebuilt at once
            x = checkpoint(layer.multi_head_attention, x, attention_mask, use_reentrant=False, preserve_rng_state=True)
            x = checkpoint(layer.feed_forward, x, use_reentrant=False, preserve_rng_state=True)
        return x


def padding_mask(item_seq: torch.Tensor, causal: bool) -> torch.Tensor:
    """Additive attention mask: a key is visible iff its id != 0 (and, when causal, it is not in the future).

    Returns [B, 1, 1, L] (bidirectional) or [B, 1, L, L] (causal), 0.0 where visible, -10000.0 elsewhere.
    """
    visible = (item_seq > 0)[:, None, None, :]  # [B, 1, 1, L]
    if causal:
        length = item_seq.shape[1]
        lower = torch.ones(length, length, dtype=torch.bool, device=item_seq.device).tril()
        visible = visible & lower  # [B, 1, L, L]
    return (~visible).to(torch.float32) * MASK_VALUE
