from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
import torch

from models import pretrain as pretrain_module
from models.config import build_config
from models.data.sequential import load_sequential_data
from models.errors import ConfigError
from models.registry import create_model
from models.trainer import prepare, train
from models.utils import init_seed
from models.zoo.s3rec import S3Rec

L = 10


def _config(root: Path, **overrides):
    base = {"data_path": str(root), "MAX_ITEM_LIST_LENGTH": L, "hidden_size": 8, "n_layers": 1, "n_heads": 2,
            "inner_size": 16, "pretrain_epochs": 1, "epochs": 1, "train_batch_size": 64, "show_progress": False,
            "checkpoint_dir": str(root / "saved")}
    return build_config("S3Rec", "toys", overrides={**base, **overrides})


def _item_rows(root: Path) -> dict[str, list[str]]:
    lines = (root / "toys" / "toys.item").read_text().splitlines()[1:]
    table: dict[str, list[str]] = {}
    for line in lines:
        token, _, classes, _ = line.split("\t")
        table.setdefault(token, classes.split())
    return table


# -- data --------------------------------------------------------------------------------------------
def test_item_attribute_ids_filtering_and_multi_hot(toys: Path) -> None:
    data = load_sequential_data(_config(toys))
    inter = (toys / "toys" / "toys.inter").read_text().splitlines()[1:]
    inter_items = list(dict.fromkeys(line.split("\t")[1] for line in inter))
    kept = [t for t in inter_items if t != "i0"]
    assert data.item_tokens == ["[PAD]", *kept, "extra"]  # .inter first appearance, then .item-only items
    assert data.n_items == len(kept) + 2
    table = _item_rows(toys)
    assert table["i3"] != ["Western"]  # the duplicate row came second
    tokens = data.extras["attribute_tokens"]
    assert tokens == list(dict.fromkeys(c for classes in table.values() for c in classes))  # first appearance
    assert "Western" not in tokens
    features = data.extras["item_features"]
    assert features.shape == (data.n_items, len(tokens))
    assert not features[0].any()
    for item_id, token in enumerate(data.item_tokens[1:], start=1):
        assert {tokens[c] for c in features[item_id].nonzero().flatten().tolist()} == set(table[token])
    # GRU4Rec on the same files ignores .item: i0 stays, 'extra' does not exist, and its cache entry is apart
    plain = load_sequential_data(build_config("GRU4Rec", "toys", overrides={"data_path": str(toys),
                                                                           "MAX_ITEM_LIST_LENGTH": L}))
    assert plain.item_tokens == ["[PAD]", *inter_items]
    assert "item_features" not in plain.extras


def test_single_token_attribute_without_value_sets_the_last_column(toys: Path) -> None:
    data = load_sequential_data(_config(toys, item_attribute="genre"))
    features, tokens = data.extras["item_features"], data.extras["attribute_tokens"]
    assert features.sum(1)[1:].eq(1).all()  # exactly one column per item
    i5 = data.item_tokens.index("i5")  # empty genre: RecBole's features[-1] = 1
    assert features[i5].nonzero().flatten().tolist() == [len(tokens) - 1]


# -- the encoder -------------------------------------------------------------------------------------
def _model(toys: Path, **overrides) -> tuple[S3Rec, object]:
    config = _config(toys, **overrides)
    data, model = prepare(config)
    assert isinstance(model, S3Rec)
    return model, data


def test_registration_sizes_and_recbole_state_dict_names(toys: Path) -> None:
    config = _config(toys, n_layers=2)
    data = load_sequential_data(config)
    init_seed(2020)
    model = create_model("S3Rec", config, data)
    assert isinstance(model, S3Rec)
    n, f = data.n_items, len(data.extras["attribute_tokens"])
    assert model.item_embedding.weight.shape == (n + 1, 8)  # + the MASK row
    assert model.mask_token == n
    assert model.feature_embedding.weight.shape == (f, 8)
    names = set(model.state_dict())
    for layer in (0, 1):
        prefix = f"trm_encoder.layer.{layer}."
        for sub in ("multi_head_attention.query", "multi_head_attention.key", "multi_head_attention.value",
                    "multi_head_attention.dense", "multi_head_attention.LayerNorm", "feed_forward.dense_1",
                    "feed_forward.dense_2", "feed_forward.LayerNorm"):
            assert {prefix + sub + ".weight", prefix + sub + ".bias"} <= names
    expected_top = {"item_embedding.weight", "position_embedding.weight", "feature_embedding.weight",
                    "LayerNorm.weight", "LayerNorm.bias"} | {f"{h}_norm.{p}" for h in ("aap", "mip", "map", "sp")
                                                              for p in ("weight", "bias")}
    assert {k for k in names if not k.startswith("trm_encoder.")} == expected_top
    # RecBole's pretrain init: N(0, 0.02) everywhere (padding row too), zero biases, LayerNorm (1, 0)
    assert model.item_embedding.weight[0].abs().sum() > 0
    assert model.aap_norm.bias.abs().sum() == 0 and torch.equal(model.LayerNorm.weight, torch.ones(8))
    assert 0.01 < float(model.item_embedding.weight.detach().std()) < 0.03
    batch = data.test.batch(slice(0, 5))
    assert model.full_sort_predict(batch).shape == (5, n)


def test_attention_masks(toys: Path) -> None:
    model, _ = _model(toys)
    model.eval()
    seq = torch.tensor([[3, 4, 5, 6, 0, 0, 0, 0, 0, 0]])
    changed = seq.clone()
    changed[0, 3] = 9
    with torch.no_grad():
        causal, causal2 = model.forward(seq, causal=True), model.forward(changed, causal=True)
        both, both2 = model.forward(seq, causal=False), model.forward(changed, causal=False)
    torch.testing.assert_close(causal[0, :3], causal2[0, :3])  # the future is invisible
    assert not torch.allclose(both[0, :3], both2[0, :3])  # bidirectional sees it
    more_padding = torch.tensor([[3, 4, 5, 6, 0, 0, 0, 0, 0, 0, 0, 0]])
    with torch.no_grad():  # padding keys are masked: extra padded columns change nothing at real positions
        model.position_embedding = torch.nn.Embedding.from_pretrained(
            torch.cat([model.position_embedding.weight, torch.zeros(2, 8)]))
        longer = model.forward(more_padding, causal=False)
    torch.testing.assert_close(longer[0, :4], both[0, :4])


# -- pretraining inputs --------------------------------------------------------------------------------
def _reference_inputs(item_seq: list[list[int]], lengths: list[int], n_items: int, max_len: int, ratio: float,
                      attr: list[list[int]], n_features: int) -> dict[str, list]:
    """RecBole's reconstruction, written plainly from shared/spec/models.md (S3Rec, pretraining steps 1-4)."""
    mask = n_items
    rows = [s[:n] for s, n in zip(item_seq, lengths, strict=True)]
    long_sequence = [i for r in rows for i in r]

    def left(seq: list) -> list:
        return [0] * (max_len - len(seq)) + seq

    features = []
    for r in rows:
        features.append([[0] * n_features] * (max_len - len(r)) + [[int(c in attr[i]) for c in range(n_features)]
                                                                   for i in r])
    masked, pos, neg = [], [], []
    for r in rows:
        m, p, q = list(r), list(r), list(r)
        for k in range(len(r)):
            if random.random() < ratio:
                m[k] = mask
                item = random.randint(1, mask)
                while item in r:
                    item = random.randint(1, mask)
                q[k] = item
        masked.append(left(m))
        pos.append(left(p))
        neg.append(left(q))
    ms, ps, ns = [], [], []
    for r in rows:
        if len(r) < 2:
            a = b = c = list(r)
        else:
            n = random.randint(1, len(r) // 2)
            start = random.randint(0, len(r) - n)
            neg_start = random.randint(0, len(long_sequence) - n)
            a = r[:start] + [mask] * n + r[start + n:]
            b = [mask] * start + r[start:start + n] + [mask] * (len(r) - start - n)
            c = [mask] * start + long_sequence[neg_start:neg_start + n] + [mask] * (len(r) - start - n)
        ms.append(left(a))
        ps.append(left(b))
        ns.append(left(c))
    return {"features": features, "masked_items": masked, "pos_items": pos, "neg_items": neg,
            "masked_segment": ms, "pos_segment": ps, "neg_segment": ns}


def test_pretrain_inputs_match_recboles_reconstruction(toys: Path) -> None:
    model, data = _model(toys, mask_ratio=0.4)
    batch = data.train.batch(slice(0, 64))
    assert (batch.item_length == 1).any() and (batch.item_length == L).any()
    attr = [row.nonzero().flatten().tolist() for row in data.extras["item_features"]]
    random.seed(7)
    expected = _reference_inputs(batch.item_seq.tolist(), batch.item_length.tolist(), data.n_items, L, 0.4, attr,
                                 model.n_features)
    after_reference = random.getstate()
    random.seed(7)
    ours = model.pretrain_inputs(batch.item_seq, batch.item_length)
    assert random.getstate() == after_reference  # the same number of draws, in the same order
    for name, values in expected.items():
        assert getattr(ours, name).tolist() == values, name
    assert ours.features.dtype == torch.float32


def test_masking_ratio_and_padding_never_masked(toys: Path) -> None:
    model, data = _model(toys)
    batch = data.train.batch(slice(0, len(data.train)))
    real = torch.arange(L)[None, :] >= (L - batch.item_length)[:, None]
    for ratio in (0.0, 0.2, 0.5):
        model.cfg.mask_ratio = ratio
        random.seed(0)
        masked = real_count = 0
        for _ in range(40):
            inputs = model.pretrain_inputs(batch.item_seq, batch.item_length)
            is_mask = inputs.masked_items == model.mask_token
            assert not (is_mask & ~real).any()  # padding is never masked
            assert (inputs.masked_items[~real] == 0).all()
            negatives = inputs.neg_items[is_mask]
            assert ((negatives >= 1) & (negatives <= model.mask_token)).all()
            masked += int(is_mask.sum())
            real_count += int(real.sum())
        assert abs(masked / real_count - ratio) < 0.01, ratio


# -- losses ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["aap", "mip", "map", "sp"])
def test_each_pretraining_loss_is_finite_and_falls(toys: Path, name: str) -> None:
    model, data = _model(toys, mask_ratio=0.3, hidden_dropout_prob=0.0, attn_dropout_prob=0.0)
    batch = data.train.batch(slice(0, 64))
    random.seed(3)
    inputs = model.pretrain_inputs(batch.item_seq, batch.item_length)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    values = []
    for _ in range(15):
        losses = model.pretrain_losses(inputs)
        assert set(losses) == {"aap", "mip", "map", "sp"}
        loss = losses[name]
        assert loss.shape == () and torch.isfinite(loss) and loss > 0
        values.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert values[-1] < 0.9 * values[0], values


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_low_memory_recomputes_to_the_same_bits(toys: Path, stage: str) -> None:
    """low_memory (the encoder's blocks recomputed in the backward pass) changes the memory, never the
    numbers: three optimizer steps with dropout on give the same losses, gradients, weights and random
    state afterwards as keeping every activation."""
    runs = []
    for low_memory in (False, True):
        model, data = _model(toys, low_memory=low_memory, n_layers=2, hidden_dropout_prob=0.3, attn_dropout_prob=0.3)
        assert model.trm_encoder.recompute is low_memory
        model.stage = stage
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        random.seed(5)
        torch.manual_seed(5)
        losses, grads = [], []
        for start in (0, 32, 64):
            batch = data.train.batch(slice(start, start + 32))
            optimizer.zero_grad()
            loss = model.calculate_loss(batch)
            loss.backward()
            losses.append(loss.item())
            grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
            optimizer.step()
        runs.append((losses, grads, [p.detach().clone() for p in model.parameters()], torch.get_rng_state(),
                     random.getstate()))
    (losses, grads, weights, rng, py_rng), (losses_low, grads_low, weights_low, rng_low, py_rng_low) = runs
    assert losses == losses_low and len(grads[0]) > 10
    assert all(torch.equal(a, b) for step, step_low in zip(grads, grads_low, strict=True)
               for a, b in zip(step, step_low, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(weights, weights_low, strict=True))
    assert torch.equal(rng, rng_low) and py_rng == py_rng_low


def test_loss_masks_and_weights(toys: Path) -> None:
    model, data = _model(toys, mask_ratio=0.0, hidden_dropout_prob=0.0, attn_dropout_prob=0.0)
    batch = data.train.batch(slice(0, 32))
    random.seed(0)
    inputs = model.pretrain_inputs(batch.item_seq, batch.item_length)
    losses = model.pretrain_losses(inputs)
    assert losses["mip"].item() == 0 and losses["map"].item() == 0  # nothing masked
    # AAP sums BCE over every real position and every attribute
    hidden = model.forward(inputs.masked_items, causal=False)
    logits = model.aap_norm(hidden) @ model.feature_embedding.weight.t()
    real = inputs.pos_items != 0
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[real], inputs.features[real], reduction="sum")
    torch.testing.assert_close(losses["aap"], bce)
    model.cfg.mask_ratio = 0.3
    random.seed(1)
    total = model.calculate_loss(batch)
    random.seed(1)
    parts = model.pretrain_losses(model.pretrain_inputs(batch.item_seq, batch.item_length))
    weighted = 0.2 * parts["aap"] + 1.0 * parts["mip"] + 1.0 * parts["map"] + 0.5 * parts["sp"]
    torch.testing.assert_close(total, weighted)


# -- stages, cache, continuation ---------------------------------------------------------------------------
def test_auto_caches_pretraining_by_key(toys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = train(_config(toys, pretrain_epochs=2))
    assert first.pretrain["source"] == "trained" and first.pretrain["trained_epochs"] == 2
    assert Path(first.pretrain["path"]).is_file()
    calls = []
    original = pretrain_module.run_epochs
    monkeypatch.setattr(pretrain_module, "run_epochs", lambda *a, **k: calls.append(a[1:3]) or original(*a, **k))
    # fine-tuning settings only: a hit, no pretraining
    hit = train(_config(toys, pretrain_epochs=2, epochs=2, stopping_step=3, save_step=7, loss_type="BPR",
                        train_neg_sample_args={"distribution": "uniform", "sample_num": 1}))
    assert hit.pretrain["source"] == "cache" and calls == []
    assert hit.epochs_run == 2
    # a pretraining setting: a miss
    for change in ({"mask_ratio": 0.3}, {"sp_weight": 0.4}, {"seed": 7}, {"hidden_dropout_prob": 0.4}):
        missed = train(_config(toys, pretrain_epochs=2, **change))
        assert missed.pretrain["source"] == "trained", change
    assert calls == [(0, 2)] * 4
    # the same values spelled differently: still a hit
    same = train(_config(toys, pretrain_epochs=2.0, mip_weight=1, layer_norm_eps="1e-12"))
    assert same.pretrain["source"] == "cache"
    # learning_rate is shared by both stages unless pretrain_learning_rate pins the pretraining one
    pinned = train(_config(toys, pretrain_epochs=2, pretrain_learning_rate=0.001, learning_rate=0.01))
    assert pinned.pretrain["source"] == "cache"
    assert train(_config(toys, pretrain_epochs=2, learning_rate=0.01)).pretrain["source"] == "trained"


def test_longer_pretraining_continues_and_equals_an_uninterrupted_run(
        toys: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    short = train(_config(toys, pretrain_epochs=2))
    assert short.pretrain["trained_epochs"] == 2
    longer = train(_config(toys, pretrain_epochs=4))
    info = longer.pretrain
    assert info["source"] == "trained" and info["start_epoch"] == 2 and info["trained_epochs"] == 2
    assert info["resumed_from"] == short.pretrain["path"]
    continued = torch.load(info["path"], weights_only=True)
    monkeypatch.setenv("SEQTUNE_CACHE", str(tmp_path / "fresh-cache"))
    fresh = train(_config(toys, pretrain_epochs=4, save_step=2))  # save_step is not part of the key
    assert fresh.pretrain["start_epoch"] == 0 and fresh.pretrain["trained_epochs"] == 4
    assert fresh.pretrain["losses"] == info["losses"]  # the continued run reports epochs 0-1 from the cache
    assert info["losses"][:2] == short.pretrain["losses"]
    uninterrupted = torch.load(fresh.pretrain["path"], weights_only=True)
    for key, value in uninterrupted["state_dict"].items():
        assert torch.equal(value, continued["state_dict"][key]), key
    assert fresh.test_result == longer.test_result
    # fewer epochs than cached: the save_step entry serves it; without one it would be trained
    hit = train(_config(toys, pretrain_epochs=2)).pretrain
    assert hit["source"] == "cache" and hit["losses"] == short.pretrain["losses"]
    assert train(_config(toys, pretrain_epochs=3)).pretrain["start_epoch"] == 2


def test_concurrent_requests_pretrain_once(toys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(toys, pretrain_epochs=2)
    data, first = prepare(config)
    _, second = prepare(config)
    calls = []
    original = pretrain_module.run_epochs

    def slow(*args, **kwargs):
        calls.append(args[1:3])
        time.sleep(0.3)  # the other request reaches the lock meanwhile
        return original(*args, **kwargs)

    monkeypatch.setattr(pretrain_module, "run_epochs", slow)
    barrier = threading.Barrier(2)
    results: dict[int, tuple] = {}

    def request(index: int, model: S3Rec) -> None:
        barrier.wait()
        results[index] = pretrain_module.pretrained_state(model, config, data)

    threads = [threading.Thread(target=request, args=(i, m)) for i, m in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [(0, 2)]
    assert sorted(info["source"] for _, info in results.values()) == ["cache", "trained"]
    for key, value in results[0][0].items():
        assert torch.equal(value, results[1][0][key]), key
    directory = Path(results[0][1].get("path") or results[1][1]["path"]).parent
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]  # nothing half-written left


def test_finetuning_starts_from_the_pretrained_weights(toys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    original_fit = pretrain_module.Trainer.fit

    def spy(self, *args, **kwargs):
        seen["state"] = {k: v.clone() for k, v in self.model.state_dict().items()}
        seen["stage"] = self.model.stage
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(pretrain_module.Trainer, "fit", spy)
    result = train(_config(toys, pretrain_epochs=2))
    assert seen["stage"] == "finetune"
    cached = torch.load(result.pretrain["path"], weights_only=True)["state_dict"]
    assert set(cached) == set(seen["state"])
    for key, value in cached.items():
        assert torch.equal(value, seen["state"][key]), key


def test_auto_equals_recboles_pretrain_run_then_finetune_run(toys: Path) -> None:
    auto = train(_config(toys, pretrain_epochs=2, epochs=2))
    pre = train(_config(toys, train_stage="pretrain", pretrain_epochs=2, save_step=2))
    assert pre.best_valid_result == {} and pre.epochs_run == 2 and pre.checkpoint is not None
    assert pre.pretrain["losses"] == auto.pretrain["losses"]
    saved = torch.load(pre.checkpoint, weights_only=True)
    assert Path(pre.checkpoint).name == "S3Rec-toys-2.pth"
    assert set(saved) == {"config", "epoch", "state_dict", "optimizer", "other_parameter"} and saved["epoch"] == 1
    tuned = train(_config(toys, train_stage="finetune", pre_model_path=pre.checkpoint, epochs=2))
    def timeless(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in h.items() if not k.endswith("seconds")} for h in history]

    assert timeless(tuned.history) == timeless(auto.history)
    assert tuned.test_result == auto.test_result


def test_pretrain_stage_saves_every_save_step(toys: Path) -> None:
    result = train(_config(toys, train_stage="pretrain", pretrain_epochs=3, save_step=2))
    saved = sorted(p.name for p in (toys / "saved").iterdir())
    assert saved == ["S3Rec-toys-2.pth"] and result.epochs_run == 3
    assert result.pretrain["saved"] == [str(toys / "saved" / "S3Rec-toys-2.pth")]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"train_stage": "bogus"}, "train_stage must be one of auto, pretrain, finetune"),
    ({"train_stage": "finetune"}, "train_stage finetune needs pre_model_path"),
    ({"train_stage": "finetune", "pre_model_path": "/nonexistent/S3Rec.pth"}, "is not a file"),
    ({"pretrain_epochs": -1}, "pretrain_epochs must be an integer >= 0"),
    ({"mask_ratio": 1.0}, "mask_ratio must be in [0, 1)"),
    ({"mask_ratio": -0.1}, "mask_ratio must be in [0, 1)"),
    ({"pre_model_path": "x.pth"}, "pre_model_path is only read with train_stage finetune"),
    ({"save_step": 0}, "save_step must be a positive integer"),
    ({"n_heads": 3}, "not a multiple of n_heads"),
])
def test_invalid_stage_settings_are_rejected(toys: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        train(_config(toys, **overrides))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert str(error.value).startswith(("overrides: ", "S3Rec.yaml: "))  # names where the value came from


def test_finetune_rejects_a_checkpoint_of_another_shape(toys: Path) -> None:
    pre = train(_config(toys, train_stage="pretrain", pretrain_epochs=1, save_step=1))
    with pytest.raises(ConfigError, match="does not fit this S3Rec configuration"):
        train(_config(toys, train_stage="finetune", pre_model_path=pre.checkpoint, hidden_size=12))


def test_end_to_end_tiny_auto_run(toys: Path) -> None:
    result = train(_config(toys))
    assert result.pretrain["epochs"] == 1 and result.epochs_run == 1
    assert result.best_valid_result and all(0 <= v <= 1 for v in result.test_result.values())
    assert result.history[0]["train_loss"] > 0
    zero = train(_config(toys, pretrain_epochs=0))
    assert zero.pretrain == {"epochs": 0, "source": "init", "trained_epochs": 0}
