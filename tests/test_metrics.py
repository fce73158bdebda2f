from __future__ import annotations

import math

import pytest
import torch

from models.metrics import TopKAccumulator, format_result


def test_hand_computed_example() -> None:
    # 3 rows over 6 items (column 0 = padding, already -inf)
    scores = torch.tensor(
        [
            [-math.inf, 0.9, 0.8, 0.7, 0.1, 0.0],  # ranking 1,2,3,4,5 -> target 3 at rank 3
            [-math.inf, 0.1, 0.2, 0.3, 0.4, 0.5],  # ranking 5,4,3,2,1 -> target 5 at rank 1
            [-math.inf, 0.5, 0.4, 0.3, 0.2, 0.1],  # ranking 1,2,3,4,5 -> target 5 at rank 5 (> k)
        ]
    )
    target = torch.tensor([3, 5, 5])
    acc = TopKAccumulator(["Recall", "MRR", "NDCG", "Hit", "Precision"], [1, 3])
    acc.add(scores[:2], target[:2])  # two batches, equal weight per row
    acc.add(scores[2:], target[2:])
    result = acc.result()
    assert list(result) == [
        "recall@1", "recall@3", "mrr@1", "mrr@3", "ndcg@1", "ndcg@3", "hit@1", "hit@3", "precision@1", "precision@3",
    ]
    assert result["hit@1"] == round(1 / 3, 4) and result["recall@1"] == round(1 / 3, 4)
    assert result["hit@3"] == round(2 / 3, 4)
    assert result["mrr@3"] == round((1 / 3 + 1) / 3, 4)
    assert result["mrr@1"] == round(1 / 3, 4)
    assert result["ndcg@3"] == round((1 / math.log2(4) + 1) / 3, 4)
    assert result["precision@3"] == round((2 / 3) / 3, 4)
    assert result["precision@1"] == round(1 / 3, 4)


def test_padding_never_counts_and_format() -> None:
    scores = torch.tensor([[-math.inf, 1.0, 2.0]])
    acc = TopKAccumulator(["Hit", "MRR"], [2])
    acc.add(scores, torch.tensor([0]))
    assert acc.result() == {"hit@2": 0.0, "mrr@2": 0.0}
    assert format_result({"recall@10": 0.021, "mrr@10": 0.0813}) == "recall@10 : 0.021    mrr@10 : 0.0813"


def test_unknown_metric_rejected() -> None:
    with pytest.raises(ValueError):
        TopKAccumulator(["AUC"], [10])
