from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.config import build_config
from models.data.kg import read_kg, read_vectors
from models.data.sequential import load_sequential_data
from models.errors import DataError
from models.nn.packed_gru import PackInfo
from models.trainer import prepare, train
from models.zoo.ksr import memory_read, memory_write
from tests.conftest import synthetic_interactions, write_atomic

INTER_HEADER = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
DIM = 4


@pytest.fixture
def kg_dir(tmp_path: Path) -> Path:
    """Items i0..i19; i0..i15 linked to entities e0..e15; i16..i19 have no link (dropped, as RecBole)."""
    d = tmp_path / "toyk"
    write_atomic(d / "toyk.inter", INTER_HEADER, synthetic_interactions(n_users=25, n_items=20, per_user=(4, 15)))
    write_atomic(d / "toyk.link", ["item_id:token", "entity_id:token"], [[f"i{k}", f"e{k}"] for k in range(16)])
    rng = np.random.default_rng(0)
    triples = [[f"e{rng.integers(0, 24)}", f"r{rng.integers(0, 3)}", f"e{rng.integers(0, 24)}"] for _ in range(120)]
    triples += [[f"e{k}", "r0", f"e{k + 1}"] for k in range(16)]  # every linked entity is in the graph
    write_atomic(d / "toyk.kg", ["head_id:token", "relation_id:token", "tail_id:token"], triples)
    return tmp_path


def write_vectors(kg_dir: Path, dim: int = DIM) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    kg = read_kg(kg_dir / "toyk", "toyk")
    entities = sorted(set(kg["head_id"]) | set(kg["tail_id"]))
    ent = {e: [round(0.1 * i + 0.01 * j, 4) for j in range(dim)] for i, e in enumerate(entities)}
    rel = {r: [round(-0.5 * (i + 1) + 0.1 * j, 4) for j in range(dim)] for i, r in enumerate(["r0", "r1", "r2"])}
    write_atomic(kg_dir / "toyk" / "toyk.ent", ["ent_id:token", "ent_emb:float_seq"],
                 [[e, " ".join(map(str, v))] for e, v in ent.items()])
    write_atomic(kg_dir / "toyk" / "toyk.rel", ["rel_id:token", "rel_emb:float_seq"],
                 [[r, " ".join(map(str, v))] for r, v in rel.items()])
    return ent, rel


def _config(kg_dir: Path, model: str = "KSR", **overrides):
    base = {"data_path": str(kg_dir), "embedding_size": DIM, "hidden_size": 8, "epochs": 2, "train_batch_size": 32,
            "show_progress": False, "transe_epochs": 5}
    if model == "KSR":
        base["kg_embedding_size"] = DIM
    return build_config(model, "toyk", overrides={**base, **overrides})


def test_link_filtering_and_alignment(kg_dir: Path) -> None:
    ent, rel = write_vectors(kg_dir)
    data, model = prepare(_config(kg_dir))
    assert set(data.item_tokens[1:]) == {f"i{k}" for k in range(16)}  # unlinked items and their rows gone
    assert data.n_items == 17
    weights = model.entity_embedding.weight.detach()
    assert torch.equal(weights[0], torch.zeros(DIM))
    for item_id, token in enumerate(data.item_tokens[1:], start=1):
        assert weights[item_id].tolist() == pytest.approx(ent["e" + token[1:]])
    kg = read_kg(kg_dir / "toyk", "toyk")
    order = list(dict.fromkeys(kg["relation_id"]))  # first appearance in .kg
    assert torch.equal(model.relation_matrix[0], torch.zeros(DIM))
    for row, token in enumerate(order, start=1):
        assert model.relation_matrix[row].tolist() == pytest.approx(rel[token])


def test_transe_trains_caches_and_round_trips(kg_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from models import kg_embed

    params = kg_embed.TransEParams(dim=DIM, epochs=30, batch_size=32, learning_rate=0.01)
    fitted = {}
    original = kg_embed.fit_transe

    def spy(kg, p, show_progress=False):
        fitted["model"] = original(kg, p, show_progress)
        return fitted["model"]

    monkeypatch.setattr(kg_embed, "fit_transe", spy)
    ent_path, rel_path = kg_embed.kg_vector_files("toyk", kg_dir / "toyk", params)
    model = fitted["model"]
    assert model.losses[-1] < model.losses[0]
    assert np.allclose(np.linalg.norm(model.entity_vectors, axis=1), 1.0, atol=1e-5)
    vectors = read_vectors(ent_path, "ent_id", "ent_emb", DIM)
    for token, vector in zip(model.entities, model.entity_vectors, strict=True):
        assert np.allclose(vectors[token], vector, atol=1e-5)
    assert set(read_vectors(rel_path, "rel_id", "rel_emb", DIM)) == set(model.relations)
    monkeypatch.setattr(kg_embed, "fit_transe", lambda *a, **k: pytest.fail("cache miss"))
    assert kg_embed.kg_vector_files("toyk", kg_dir / "toyk", params) == (ent_path, rel_path)


def test_memory_write_matches_hand_computation() -> None:
    # one row, two steps, K = 2, R = 2 (PAD relation 0 and one relation)
    heads = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # packed: step 0 then step 1 (a single row)
    relations = torch.tensor([[0.0, 0.0], [0.5, -1.0]])
    pack = PackInfo.from_lengths(torch.tensor([2]), 2)
    memory = memory_write(heads, relations, pack)[0]
    # step 0: M = 0, z = sigmoid(0) = 0.5, M = 0.5 * tails_0
    tails0 = torch.tensor([[1.0, 0.0], [1.5, -1.0]])
    m = 0.5 * tails0
    # step 1: tails_1 = h1 + rel; z_r = sigmoid(<M_r, tails_1r>)
    tails1 = torch.tensor([[0.0, 2.0], [0.5, 1.0]])
    z = torch.tensor([1 / (1 + math.exp(-float(m[r] @ tails1[r]))) for r in range(2)])
    expected = (1 - z)[:, None] * m + z[:, None] * tails1
    torch.testing.assert_close(memory, expected)


def test_memory_read_matches_hand_computation() -> None:
    # one user, R = 2 slots of K = 2; gamma 10
    memory = torch.tensor([[[1.0, 2.0], [3.0, -1.0]]])
    query = torch.tensor([[0.1, 0.0]])
    relations = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    # scores: gamma * <q, r> = [0, 1]; softmax -> [1 / (1 + e), e / (1 + e)]
    w1 = math.e / (1 + math.e)
    expected = torch.tensor([[(1 - w1) * 1.0 + w1 * 3.0, (1 - w1) * 2.0 + w1 * -1.0]])
    torch.testing.assert_close(memory_read(memory, query, relations, 10.0), expected)


def test_memory_write_snapshot_at_each_rows_last_item() -> None:
    torch.manual_seed(0)
    lengths = torch.tensor([2, 5, 1, 5, 3])
    seq_heads = torch.randn(5, 5, 3)
    relations = torch.randn(4, 3)
    pack = PackInfo.from_lengths(lengths, 5)
    packed = seq_heads.reshape(-1, 3).index_select(0, pack.flat_index)
    ours = memory_write(packed, relations, pack)
    for row in range(5):  # RecBole's way: run over all steps, keep the state at length - 1
        m = torch.zeros(4, 3)
        for t in range(int(lengths[row])):
            tails = seq_heads[row, t] + relations
            z = torch.sigmoid((m * tails).sum(-1, keepdim=True))
            m = (1 - z) * m + z * tails
        torch.testing.assert_close(ours[row], m)


@pytest.mark.parametrize("block", [2, 3, 256])
def test_memory_write_inference_is_the_training_forward_bit_for_bit(block: int, monkeypatch) -> None:
    """Evaluation writes the memory in place, a block of rows at a time: every element must come out
    exactly as the autograd forward computes it (blocks that split the batch, and one that holds it)."""
    from models.zoo import ksr

    monkeypatch.setattr(ksr, "MEMORY_BLOCK_ROWS", block)
    torch.manual_seed(1)
    lengths = torch.tensor([2, 7, 1, 7, 3, 5, 6])
    seq_heads = torch.randn(7, 7, 64)
    relations = torch.randn(21, 64)
    pack = PackInfo.from_lengths(lengths, 7)
    packed = seq_heads.reshape(-1, 64).index_select(0, pack.flat_index)
    with torch.enable_grad():
        trained = memory_write(packed.requires_grad_(), relations, pack).detach()
    with torch.no_grad():
        inferred = memory_write(packed, relations, pack)
    assert torch.equal(trained, inferred)


@pytest.mark.parametrize("model", ["KSR", "GRU4RecKG"])
def test_freeze_kg_keeps_kg_tables(kg_dir: Path, model: str) -> None:
    write_vectors(kg_dir)
    config = _config(kg_dir, model, freeze_kg=True)
    data, net = prepare(config)
    before = net.entity_embedding.weight.detach().clone()
    item_before = net.item_embedding.weight.detach().clone()
    from models.trainer import Trainer

    Trainer(config, net, data).fit()
    assert torch.equal(net.entity_embedding.weight, before)
    assert not torch.equal(net.item_embedding.weight, item_before)


def test_unfrozen_kg_trains(kg_dir: Path) -> None:
    write_vectors(kg_dir)
    result = train(_config(kg_dir, "KSR", freeze_kg=False, loss_type="BPR",
                           train_neg_sample_args={"distribution": "uniform", "sample_num": 1}))
    assert math.isfinite(result.history[-1]["train_loss"])


def test_unknown_entity_in_triples(kg_dir: Path) -> None:
    write_vectors(kg_dir)
    lines = (kg_dir / "toyk" / "toyk.ent").read_text().splitlines()
    (kg_dir / "toyk" / "toyk.ent").write_text("\n".join(line for line in lines if not line.startswith("e3\t")) + "\n")
    with pytest.raises(DataError, match=r"toyk.kg:\d+: entity 'e3' has no vector in toyk.ent"):
        prepare(_config(kg_dir))


def test_unknown_relation_in_triples(kg_dir: Path) -> None:
    write_vectors(kg_dir)
    lines = (kg_dir / "toyk" / "toyk.rel").read_text().splitlines()
    (kg_dir / "toyk" / "toyk.rel").write_text("\n".join(line for line in lines if not line.startswith("r1\t")) + "\n")
    with pytest.raises(DataError, match=r"toyk.kg:\d+: relation 'r1' has no vector in toyk.rel"):
        prepare(_config(kg_dir))


def test_wrong_vector_dimension_names_both_numbers(kg_dir: Path) -> None:
    write_vectors(kg_dir, dim=3)
    with pytest.raises(DataError, match=r"toyk.ent:2: vector of '.+' has dimension 3, but the model expects 4"):
        prepare(_config(kg_dir))


def test_link_to_missing_item(kg_dir: Path) -> None:
    with (kg_dir / "toyk" / "toyk.link").open("a") as handle:
        handle.write("nosuchitem\te1\n")
    with pytest.raises(DataError, match=r"toyk.link:18: item 'nosuchitem' has no interaction in toyk.inter"):
        load_sequential_data(_config(kg_dir))
