from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.config import build_config
from models.data.sequential import load_sequential_data
from models.trainer import Trainer, TrainShuffler, load_checkpoint, prepare, sample_negatives, train


def _config(data_path: Path, **overrides):
    base = {"data_path": str(data_path), "epochs": 3, "train_batch_size": 64, "hidden_size": 16,
            "embedding_size": 8, "show_progress": False}
    return build_config("GRU4Rec", "toy", overrides={**base, **overrides})


def _scripted_trainer(config, scores: list[float]) -> Trainer:
    data, model = prepare(config)
    trainer = Trainer(config, model, data)
    remaining = iter(scores)
    trainer.train_epoch = lambda epoch: 1.0  # type: ignore[method-assign]
    original = trainer.evaluate

    def evaluate(samples):
        if samples is data.valid:
            return {"mrr@10": next(remaining)}
        return original(samples)

    trainer.evaluate = evaluate  # type: ignore[method-assign]
    return trainer


def test_early_stopping_counts_like_recbole(synthetic_dir: Path) -> None:
    # best at epoch 1 (0.5); ties count as improvement (epoch 2); then stopping_step + 1 = 3 bad evals
    config = _config(synthetic_dir, epochs=50, stopping_step=2)
    trainer = _scripted_trainer(config, [0.1, 0.5, 0.5, 0.4, 0.3, 0.2, 0.9, 0.9])
    result = trainer.fit()
    assert result.stopped_early
    assert result.epochs_run == 6
    assert result.best_epoch == 2 and result.best_valid_score == 0.5


def test_smaller_is_better_direction(synthetic_dir: Path) -> None:
    config = _config(synthetic_dir, epochs=4, stopping_step=5)
    config["valid_metric_bigger"] = False
    trainer = _scripted_trainer(config, [0.5, 0.2, 0.3, 0.4])
    result = trainer.fit()
    assert result.best_epoch == 1 and result.best_valid_score == 0.2


def test_callback_can_stop_and_sees_every_epoch(synthetic_dir: Path) -> None:
    seen = []

    def callback(report):
        seen.append((report.epoch, report.valid_score is not None))
        return report.epoch == 1

    result = train(_config(synthetic_dir, epochs=5), callback=callback)
    assert seen == [(0, True), (1, True)]
    assert result.stopped_by_callback and result.epochs_run == 2
    assert set(result.test_result) == {"recall@10", "mrr@10", "ndcg@10", "hit@10", "precision@10"}


def test_training_learns_and_is_deterministic(synthetic_dir: Path) -> None:
    config = _config(synthetic_dir, epochs=8, learning_rate=0.01)
    first = train(config)
    losses = [h["train_loss"] for h in first.history]
    assert losses[-1] < losses[0]
    second = train(_config(synthetic_dir, epochs=8, learning_rate=0.01))
    assert [h["train_loss"] for h in second.history] == losses
    assert second.test_result == first.test_result


def test_checkpoint_round_trip(synthetic_dir: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt" / "best.pth"
    config = _config(synthetic_dir, epochs=2)
    data, model = prepare(config)
    trainer = Trainer(config, model, data)
    result = trainer.fit(checkpoint_path=checkpoint)
    assert result.checkpoint == str(checkpoint) and checkpoint.is_file()
    _, fresh = prepare(_config(synthetic_dir, epochs=2, seed=7))
    pairs = zip(fresh.state_dict().values(), model.state_dict().values(), strict=True)
    assert not all(torch.equal(a, b) for a, b in pairs)
    state = load_checkpoint(checkpoint, fresh)
    assert state["epoch"] == result.best_epoch and state["config"]["model"] == "GRU4Rec"
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)
    assert Trainer(config, fresh, data).evaluate(data.test) == result.test_result


def test_bpr_and_negative_sampling(synthetic_dir: Path) -> None:
    np.random.seed(0)
    target = np.random.randint(1, 5, 10_000)
    negatives = sample_negatives(target, 5)
    assert ((negatives >= 1) & (negatives < 5)).all() and (negatives != target).all()
    negative_args = {"distribution": "uniform", "sample_num": 1}
    config = _config(synthetic_dir, loss_type="BPR", train_neg_sample_args=negative_args)
    result = train(config)
    assert np.isfinite(result.history[-1]["train_loss"])


def test_shuffler_matches_torch_dataloader() -> None:
    loader = torch.utils.data.DataLoader(list(range(10)), batch_size=4, shuffle=True,
                                         generator=torch.Generator().manual_seed(3))
    shuffler = TrainShuffler(10, 3)
    for _ in range(3):
        assert [i for batch in loader for i in batch.tolist()] == shuffler.epoch_order().tolist()


def test_ce_with_negatives_is_rejected(synthetic_dir: Path) -> None:
    from models.errors import ConfigError

    with pytest.raises(ConfigError, match="CE takes no negative samples"):
        prepare(_config(synthetic_dir, train_neg_sample_args={"distribution": "uniform", "sample_num": 1}))


@pytest.mark.slow
def test_ml100k_one_epoch_matches_recbole_first_epoch() -> None:
    """RecBole 1.2.1 seed 2020 logs 340.6757 for GRU4Rec's first epoch on these 48 batches."""
    config = build_config("GRU4Rec", "ml-100k", overrides={"epochs": 1, "show_progress": False})
    data = load_sequential_data(config)
    assert data.summary() == {"n_users": 944, "n_items": 1683, "train": 97171, "valid": 943, "test": 943}
    result = train(config, data)
    assert round(result.history[0]["train_loss"], 4) == 340.6757
    assert result.best_valid_result["mrr@10"] == 0.0105


def test_full_sort_batches_bounded_by_memory_give_the_same_metrics(synthetic_dir: Path) -> None:
    """Fewer users per full-sort batch (the memory bound at many items) changes no metric: each user's
    row is scored and ranked on its own."""
    from models.trainer import eval_users_per_batch

    assert eval_users_per_batch(4096, 1024, 1683) == 4096  # ml-100k: RecBole's batch as it is
    assert eval_users_per_batch(4096, 1024, 2_000_000) == 67  # 2M items: 67 users' scores in 1 GB
    assert eval_users_per_batch(4096, 1, 10**9) == 1
    config = _config(synthetic_dir, epochs=1)
    data, model = prepare(config)
    whole = Trainer(config, model, data).evaluate(data.valid)
    small = _config(synthetic_dir, epochs=1, eval_batch_size=3)
    assert Trainer(small, model, data).evaluate(data.valid) == whole
