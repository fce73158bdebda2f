"""Full-sort top-K metrics for leave-one-out evaluation, as RecBole 1.2.1 computes them.

Each evaluation row has exactly one positive (the target). Scores of the padding item are -inf;
nothing else is masked (RecBole does not mask history for sequential models). With r the 1-based
rank of the target in ``torch.topk(scores, max(topk))`` (r = inf if absent):
    hit@k = recall@k = [r <= k];  precision@k = hit@k / k;  mrr@k = hit@k / r;
    ndcg@k = hit@k / log2(r + 1)   (the ideal DCG of one positive is 1).
Results are means over rows, rounded to ``metric_decimal_place`` (4), keys lower-case in config order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_PER_ROW = {
    "recall": lambda hit, rank, k: hit,
    "hit": lambda hit, rank, k: hit,
    "precision": lambda hit, rank, k: hit / k,
    "mrr": lambda hit, rank, k: hit / rank,
    "ndcg": lambda hit, rank, k: hit / torch.log2(rank + 1.0),
}


class TopKAccumulator:
    """Sums per-row metric values over batches; ``result()`` gives the rounded means."""

    def __init__(self, metrics: Sequence[str], topk: Sequence[int], decimals: int = 4) -> None:
        self.metrics = [m.lower() for m in metrics]
        unknown = set(self.metrics) - set(_PER_ROW)
        if unknown:
            raise ValueError(f"unsupported metrics: {sorted(unknown)}")
        self.topk = list(topk)
        self.max_k = max(self.topk)
        self.decimals = decimals
        self.sums = {f"{m}@{k}": 0.0 for m in self.metrics for k in self.topk}
        self.rows = 0

    def add(self, scores: torch.Tensor, target: torch.Tensor) -> None:
        """scores [B, N] (padding column already -inf), target [B]."""
        k = min(self.max_k, scores.shape[1])
        top_idx = torch.topk(scores, k, dim=-1).indices  # [B, K], sorted descending
        hits = top_idx == target[:, None]  # [B, K]
        found = hits.any(dim=1)
        rank = (hits.to(torch.int64).argmax(dim=1) + 1).to(torch.float64)  # 1-based; garbage if not found
        for cut in self.topk:
            hit = (found & (rank <= cut)).to(torch.float64)
            for metric in self.metrics:
                self.sums[f"{metric}@{cut}"] += float(_PER_ROW[metric](hit, rank, cut).sum())
        self.rows += int(target.shape[0])

    def result(self) -> dict[str, float]:
        if self.rows == 0:
            return {key: 0.0 for key in self.sums}
        return {key: round(total / self.rows, self.decimals) for key, total in self.sums.items()}


def format_result(result: dict[str, float]) -> str:
    """RecBole's dict2str: ``key : value`` pairs joined by four spaces."""
    return "    ".join(f"{key} : {value}" for key, value in result.items())
