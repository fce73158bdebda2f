"""S3Rec (Zhou et al., CIKM 2020) as RecBole 1.2.1 defines it: a bidirectional transformer pretrained
with four self-supervised losses (AAP, MIP, MAP, SP) on item attributes, then fine-tuned as a causal
next-item model (SASRec-style).

Stages (``train_stage``):

* ``auto`` (seqtune's default): pretrain ``pretrain_epochs`` epochs, or take the weights from the
  keyed pretraining cache (models/pretrain.py), then fine-tune them; one run is RecBole's pretrain
  run followed by its finetune run (re-seeded as a fresh process would be).
* ``pretrain``: RecBole's pretrain run: ``pretrain_epochs`` epochs, no validation, a checkpoint
  ``{checkpoint_dir}/S3Rec-{dataset}-{epoch}.pth`` every ``save_step`` epochs.
* ``finetune``: RecBole's finetune run from ``pre_model_path`` (loaded with weights_only=True).

Per-batch pretraining inputs draw from Python's ``random`` in RecBole's order (mask decisions and
negatives for every row, then the segment draws for every row), so a seed masks as RecBole does;
the tensors are then built without per-position Python work.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from models.base import RecommenderConfig, SequentialRecommender, scores_and_loss
from models.config_types import Above, Annotated, AtLeast, OneOf, Probability
from models.data.samples import Batch, SequentialData
from models.errors import ConfigError, DataError
from models.nn.dropout import Dropout
from models.nn.transformer import ACTIVATIONS, TransformerEncoder, padding_mask
from models.registry import register_model

if TYPE_CHECKING:
    from models.trainer import EpochCallback, TrainResult


@dataclass
class S3RecConfig(RecommenderConfig):
    """S3Rec's keys; the defaults are S3Rec.yaml's. Floats stay floats (1 -> 1.0), so 1 and 1.0 give
    one pretraining cache key."""

    n_layers: Annotated[int, AtLeast(1)]
    n_heads: Annotated[int, AtLeast(1)]
    hidden_size: Annotated[int, AtLeast(1)]
    inner_size: Annotated[int, AtLeast(1)]
    hidden_dropout_prob: Annotated[float, Probability()]
    attn_dropout_prob: Annotated[float, Probability()]
    hidden_act: Annotated[str, OneOf(*ACTIVATIONS)]  # case-sensitive, as RecBole's lookup
    layer_norm_eps: Annotated[float, Above(0)]
    initializer_range: Annotated[float, Above(0)]
    item_attribute: str
    mask_ratio: Annotated[float, Probability()]
    aap_weight: Annotated[float, AtLeast(0)]
    mip_weight: Annotated[float, AtLeast(0)]
    map_weight: Annotated[float, AtLeast(0)]
    sp_weight: Annotated[float, AtLeast(0)]
    train_stage: Annotated[str, OneOf("auto", "pretrain", "finetune", ignore_case=True)]
    pretrain_epochs: Annotated[int, AtLeast(0)]
    save_step: Annotated[int, AtLeast(1)]
    pre_model_path: str
    pretrain_batch_size: Annotated[int | None, AtLeast(1)]  # ~: train_batch_size
    pretrain_learning_rate: Annotated[float | None, Above(0)]  # ~: learning_rate
    low_memory: bool  # recompute the encoder's blocks, big buffers back to the OS: less memory, same numbers

    def check(self, values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
        """The rules between keys: the heads split the hidden size; pre_model_path goes with finetune."""
        super().check(values, sources)
        if self.hidden_size % self.n_heads:
            raise ConfigError(f"{sources.get('n_heads')}: hidden_size {self.hidden_size} is not a multiple of "
                              f"n_heads {self.n_heads}")
        where, path = sources.get("pre_model_path"), self.pre_model_path
        if self.train_stage == "finetune":
            if not path:
                raise ConfigError(f"{where}: train_stage finetune needs pre_model_path "
                                  "(a pretrained S3Rec checkpoint); train_stage auto pretrains first")
            if not Path(path).is_file():
                raise ConfigError(f"{where}: pre_model_path {path!r} is not a file")
        elif path:
            raise ConfigError(f"{where}: pre_model_path is only read with train_stage finetune, but train_stage "
                              f"is {self.train_stage}")


@dataclass
class PretrainInputs:
    """RecBole's reconstructed pretraining batch; every sequence is LEFT-padded with 0 to L."""

    features: torch.Tensor  # [B, L, F] float multi-hot attributes of the original items (0 at padding)
    masked_items: torch.Tensor  # [B, L] items with MASK at masked positions
    pos_items: torch.Tensor  # [B, L] the original items
    neg_items: torch.Tensor  # [B, L] the original items with a sampled negative at masked positions
    masked_segment: torch.Tensor  # [B, L] items with MASK over the segment
    pos_segment: torch.Tensor  # [B, L] MASK except the segment
    neg_segment: torch.Tensor  # [B, L] MASK except a random span of the batch's items at the segment


@register_model
class S3Rec(SequentialRecommender):
    config_type = S3RecConfig
    cfg: S3RecConfig
    item_features: torch.Tensor  # a buffer: [items, F]
    #: config keys that change the pretrained weights (the cache key adds data, optimizer and seed)
    pretrain_keys = ("n_layers", "n_heads", "hidden_size", "inner_size", "hidden_dropout_prob", "attn_dropout_prob",
                     "hidden_act", "layer_norm_eps", "initializer_range", "item_attribute", "mask_ratio",
                     "aap_weight", "mip_weight", "map_weight", "sp_weight")

    def __init__(self, config: Any, data: SequentialData, state: dict[str, torch.Tensor] | None = None) -> None:
        """``state``: pretrained weights to fine-tune (the ``auto`` pipeline); otherwise the stage decides:
        pretrain/auto -> RecBole's init, finetune -> the weights in ``pre_model_path``."""
        super().__init__(config, data)
        cfg = self.cfg
        if data.extras.get("item_attribute") != cfg.item_attribute or "item_features" not in data.extras:
            raise DataError(f"S3Rec needs the item attribute {cfg.item_attribute!r} from {data.name}.item; load the "
                            "data with load_sequential_data for model S3Rec")
        self.stage = "finetune" if cfg.train_stage == "finetune" or state is not None else "pretrain"
        self.mask_token = self.n_items  # one row after the last item id: the table has N + 1 rows
        item_features: torch.Tensor = data.extras["item_features"]  # [N, F] bool
        self.n_features = int(item_features.shape[1])
        H = cfg.hidden_size
        # registration order as RecBole: construction and the re-init below draw RecBole's numbers
        self.item_embedding = nn.Embedding(self.n_items + 1, H, padding_idx=0)
        self.position_embedding = nn.Embedding(self.max_seq_length, H)
        self.feature_embedding = nn.Embedding(self.n_features, H, padding_idx=0)  # read only via .weight
        self.trm_encoder = TransformerEncoder(cfg.n_layers, cfg.n_heads, H, cfg.inner_size, cfg.hidden_dropout_prob,
                                              cfg.attn_dropout_prob, cfg.hidden_act, cfg.layer_norm_eps,
                                              recompute=cfg.low_memory)
        self.LayerNorm = nn.LayerNorm(H, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout_prob)
        self.aap_norm = nn.Linear(H, H)
        self.mip_norm = nn.Linear(H, H)
        self.map_norm = nn.Linear(H, H)
        self.sp_norm = nn.Linear(H, H)
        self.register_buffer("item_features", item_features.to(torch.float32), persistent=False)
        if state is not None:
            self._load_weights(state, "the pretrained weights")
        elif self.stage == "pretrain":
            self.apply(self._init_weights)
        else:  # RecBole's finetune run: modules built (drawing their default inits), then replaced
            self._load_weights(_read_pretrained(cfg.pre_model_path), cfg.pre_model_path)

    def _init_weights(self, module: nn.Module) -> None:
        """RecBole's pretrain init: N(0, initializer_range) on every Linear/Embedding weight (padding rows
        included), zero biases, LayerNorm (1, 0)."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.cfg.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def _load_weights(self, state: dict[str, torch.Tensor], where: str) -> None:
        try:
            self.load_state_dict(state)
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())
            raise ConfigError(f"{where}: does not fit this S3Rec configuration ({detail[:300]})") from None

    @property
    def needs_negatives(self) -> bool:
        return self.stage == "finetune" and self.loss_type == "BPR"

    # -- encoder ---------------------------------------------------------------------------------
    def forward(self, item_seq: torch.Tensor, causal: bool) -> torch.Tensor:
        """item_seq [B, L] (0 = padding, MASK allowed) -> hidden states [B, L, H]."""
        # absolute column, any padding side; looked up per row (not broadcast) as RecBole does, so the
        # position table's gradient is summed in RecBole's order
        positions = torch.arange(item_seq.shape[1], device=item_seq.device).expand_as(item_seq)  # [B, L]
        x = self.item_embedding(item_seq) + self.position_embedding(positions)  # [B, L, H]
        x = self.dropout(self.LayerNorm(x))
        return self.trm_encoder(x, padding_mask(item_seq, causal))

    def sequence_output(self, item_seq: torch.Tensor, item_length: torch.Tensor) -> torch.Tensor:
        """Causal encoding of right-padded histories, taken at each row's last real item: [B, H]."""
        hidden = self.forward(item_seq, causal=True)  # [B, L, H]
        return hidden[torch.arange(len(item_length), device=hidden.device), item_length - 1]

    # -- fine-tuning -----------------------------------------------------------------------------
    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        if self.stage == "pretrain":
            losses = self.pretrain_losses(self.pretrain_inputs(batch.item_seq, batch.item_length))
            cfg = self.cfg
            return (cfg.aap_weight * losses["aap"] + cfg.mip_weight * losses["mip"]
                    + cfg.map_weight * losses["map"] + cfg.sp_weight * losses["sp"])
        seq_output = self.sequence_output(batch.item_seq, batch.item_length)  # [B, H]
        # CE over all N + 1 rows (PAD and MASK included), as RecBole
        return scores_and_loss(seq_output, self.item_embedding.weight, batch, self.loss_type)

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        seq_output = self.sequence_output(batch.item_seq, batch.item_length)  # [B, H]
        return seq_output @ self.item_embedding.weight[: self.n_items].t()  # [B, N]: MASK row dropped

    # -- pretraining -----------------------------------------------------------------------------
    def pretrain_inputs(self, item_seq: torch.Tensor, item_length: torch.Tensor) -> PretrainInputs:
        """RecBole's per-batch reconstruction, with Python ``random`` drawn in RecBole's order."""
        device = item_seq.device
        n_rows, max_len = item_seq.shape
        mask_token, ratio = self.mask_token, self.cfg.mask_ratio
        lengths = item_length.tolist()
        rows = [row[:n] for row, n in zip(item_seq.tolist(), lengths, strict=True)]
        draw, randint = random.random, random.randint
        masked: list[bool] = []  # per real item, rows concatenated
        negatives: list[int] = []  # per masked item
        for row in rows:
            seen = set(row)
            for _ in row:
                if draw() < ratio:
                    masked.append(True)
                    negative = randint(1, mask_token)  # inclusive: may even be the MASK id, as RecBole
                    while negative in seen:
                        negative = randint(1, mask_token)
                    negatives.append(negative)
                else:
                    masked.append(False)
        total = sum(lengths)  # the batch's "long sequence" of all real items
        segments = [0] * n_rows, [0] * n_rows, [0] * n_rows  # length, start, negative start (0: no segment)
        for b, n in enumerate(lengths):
            if n >= 2:
                length = randint(1, n // 2)
                segments[0][b] = length
                segments[1][b] = randint(0, n - length)
                segments[2][b] = randint(0, total - length)

        # left padding: row b's item k sits at column offset_b + k
        lengths_t = item_length.to(device)
        rel = torch.arange(max_len, device=device)[None, :] - (max_len - lengths_t)[:, None]  # [B, L]
        real = rel >= 0  # [B, L]
        pos_items = torch.where(real, item_seq.gather(1, rel.clamp(min=0)), 0)  # [B, L]
        is_masked = torch.zeros_like(real)
        is_masked[real] = torch.tensor(masked, dtype=torch.bool, device=device)  # row-major = RecBole's order
        masked_items = torch.where(is_masked, mask_token, pos_items)
        neg_items = pos_items.clone()
        neg_items[is_masked] = torch.tensor(negatives, dtype=torch.long, device=device)
        features = self.item_features[pos_items] * real[..., None]  # [B, L, F]

        seg_len, seg_start, neg_start = (torch.tensor(s, dtype=torch.long, device=device)[:, None] for s in segments)
        in_segment = real & (rel >= seg_start) & (rel < seg_start + seg_len)  # [B, L]
        long_sequence = item_seq[torch.arange(max_len, device=device)[None, :] < lengths_t[:, None]]  # [T]
        from_long = long_sequence[(neg_start + rel - seg_start).clamp(0, total - 1)]  # [B, L]
        mask_or_pad = torch.where(real, mask_token, 0)
        has_segment = (seg_len > 0).expand_as(real)  # rows shorter than 2 keep their sequence thrice
        masked_segment = torch.where(in_segment, mask_token, pos_items)
        pos_segment = torch.where(has_segment, torch.where(in_segment, pos_items, mask_or_pad), pos_items)
        neg_segment = torch.where(has_segment, torch.where(in_segment, from_long, mask_or_pad), pos_items)
        return PretrainInputs(features, masked_items, pos_items, neg_items, masked_segment, pos_segment, neg_segment)

    @staticmethod
    def _attribute_scores(projected: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        """[B, L, H] x [F, H] -> [B, L, F] scores, computed as RecBole's matmul(attributes, [B*L, H, 1])."""
        n_rows, max_len, hidden = projected.shape
        scores = torch.matmul(attributes, projected.reshape(-1, hidden, 1))  # [B*L, F, 1]
        return scores.view(n_rows, max_len, -1)

    def pretrain_losses(self, inputs: PretrainInputs) -> dict[str, torch.Tensor]:
        """The four unweighted pretraining losses, each a sum (RecBole sums, so they grow with B)."""
        hidden = self.forward(inputs.masked_items, causal=False)  # [B, L, H]
        attributes = self.feature_embedding.weight  # [F, H]
        is_mask = (inputs.masked_items == self.mask_token).float()  # [B, L]
        is_seen = (inputs.masked_items != self.mask_token).float() * (inputs.masked_items != 0).float()

        # AAP: the attributes of every visible item from its own position. The scores are RecBole's
        # batched [F, H] x [B*L, H, 1] product (not hidden @ attributes.T) so they round as RecBole's do
        aap_logits = self._attribute_scores(self.aap_norm(hidden), attributes)  # [B, L, F]
        aap = F.binary_cross_entropy_with_logits(aap_logits, inputs.features, reduction="none")
        aap = (aap * is_seen[..., None]).sum()

        # MIP: the masked item against a sampled negative; the scores are sigmoids, as RecBole (double sigmoid)
        mip_hidden = self.mip_norm(hidden)  # [B, L, H]
        pos = torch.sigmoid((mip_hidden * self.item_embedding(inputs.pos_items)).sum(-1))  # [B, L]
        neg = torch.sigmoid((mip_hidden * self.item_embedding(inputs.neg_items)).sum(-1))
        mip = F.binary_cross_entropy_with_logits(pos - neg, torch.ones_like(pos), reduction="none")
        mip = (mip * is_mask).sum()

        # MAP: the attributes of each masked item
        map_logits = self._attribute_scores(self.map_norm(hidden), attributes)  # [B, L, F]
        map_ = F.binary_cross_entropy_with_logits(map_logits, inputs.features, reduction="none")
        map_ = (map_ * is_mask[..., None]).sum()

        # SP: the masked-out segment against a random span; left padding puts the last item at column -1
        context = self.sp_norm(self.forward(inputs.masked_segment, causal=False)[:, -1])  # [B, H]
        pos_segment = self.forward(inputs.pos_segment, causal=False)[:, -1]  # [B, H]
        neg_segment = self.forward(inputs.neg_segment, causal=False)[:, -1]
        pos_sp = torch.sigmoid((context * pos_segment).sum(-1))  # [B]
        neg_sp = torch.sigmoid((context * neg_segment).sum(-1))
        sp = F.binary_cross_entropy_with_logits(pos_sp - neg_sp, torch.ones_like(pos_sp), reduction="none").sum()
        return {"aap": aap, "mip": mip, "map": map_, "sp": sp}

    # -- the stages ------------------------------------------------------------------------------
    def epochs_stage(self) -> None:
        self.stage = "finetune"

    def staged_fit(self, data: SequentialData, callback: EpochCallback | None = None,
                   checkpoint_path: Path | None = None, resume_dir: Path | None = None) -> TrainResult:
        """What ``models.trainer.train`` runs for S3Rec (see the module docstring)."""
        from models.pretrain import finetune_after_pretraining, pretrain_only
        from models.trainer import Trainer

        stage = self.cfg.train_stage
        if stage == "pretrain":
            return pretrain_only(self, data, callback)
        if stage == "finetune":
            result = Trainer(self.config, self, data).fit(callback, checkpoint_path, resume_dir)
            result.pretrain = {"source": "pre_model_path", "path": str(self.cfg.pre_model_path)}
            return result
        return finetune_after_pretraining(self, data, callback, checkpoint_path, resume_dir)


def _read_pretrained(path: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # RecBole's own files pickle its Config and need weights_only=False
        detail = " ".join(str(exc).split())
        raise ConfigError(f"{path}: cannot load pre_model_path with weights_only=True ({detail[:200]})") from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise ConfigError(f"{path}: pre_model_path holds no 'state_dict' (expected an S3Rec pretraining checkpoint)")
    return state["state_dict"]
