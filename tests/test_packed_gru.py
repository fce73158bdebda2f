from __future__ import annotations

import pytest
import torch

from models.nn.packed_gru import GATE_BLOCK_ROWS, PackedGRU, PackInfo, _gate_block_rows


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_matches_nn_gru_forward_and_backward(layers: int) -> None:
    torch.manual_seed(layers)
    batch, steps, emb, hidden = 33, 9, 5, 7
    gru = PackedGRU(emb, hidden, layers).double()
    x = torch.randn(batch, steps, emb, dtype=torch.double, requires_grad=True)
    lengths = torch.randint(1, steps + 1, (batch,))
    lengths[3] = steps
    pack = PackInfo.from_lengths(lengths, steps)
    ours = gru.last_hidden(x, pack)
    full, _ = torch.nn.GRU.forward(gru, x)  # RecBole's way: every step, padding included
    reference = full[torch.arange(batch), lengths - 1]
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)

    weight = torch.randn_like(ours)
    grads_ours = torch.autograd.grad((ours * weight).sum(), [x, *gru.parameters()])
    grads_ref = torch.autograd.grad((reference * weight).sum(), [x, *gru.parameters()])
    for a, b in zip(grads_ours, grads_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


@pytest.mark.parametrize("layers", [1, 2])
def test_inference_path_matches_nn_gru(layers: int) -> None:
    torch.manual_seed(10 + layers)
    gru = PackedGRU(5, 6, layers).double()
    table = torch.randn(30, 5, dtype=torch.double)
    seq = torch.randint(1, 30, (17, 9))
    lengths = torch.randint(1, 10, (17,))
    pack = PackInfo.from_lengths(lengths, 9)
    with torch.no_grad():
        full, _ = torch.nn.GRU.forward(gru, table[seq])
        reference = full[torch.arange(17), lengths - 1]
        torch.testing.assert_close(gru.last_hidden(None, pack, table, seq), reference, rtol=0, atol=1e-12)
        torch.testing.assert_close(gru.last_hidden(table[seq], pack), reference, rtol=0, atol=1e-12)


def test_lookup_table_path_equals_dense_input() -> None:
    torch.manual_seed(0)
    gru = PackedGRU(4, 6, 2).double()
    table = torch.randn(20, 4, dtype=torch.double)
    seq = torch.randint(1, 20, (12, 8))
    lengths = torch.randint(1, 9, (12,))
    pack = PackInfo.from_lengths(lengths, 8)
    with torch.no_grad():
        torch.testing.assert_close(gru.last_hidden(None, pack, table, seq), gru.last_hidden(table[seq], pack))


def test_gradcheck_small() -> None:
    torch.manual_seed(1)
    gru = PackedGRU(3, 4, 1).double()
    lengths = torch.tensor([3, 1, 2])
    pack = PackInfo.from_lengths(lengths, 3)
    x = torch.randn(3, 3, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: gru.last_hidden(inp, pack), (x,))


@pytest.mark.parametrize("layers", [1, 2])
def test_inference_recurrence_is_bit_identical_to_the_training_one(layers: int) -> None:
    """Evaluation's buffer-reusing recurrence (candidate pre-doubled for tanh = 2 sigmoid(2a) - 1) does
    the training forward's float32 operations: the same bits, not merely close ones."""
    torch.manual_seed(20 + layers)
    gru = PackedGRU(16, 32, layers)
    table = torch.randn(50, 16)
    seq = torch.randint(1, 50, (64, 12))
    lengths = torch.randint(1, 13, (64,))
    pack = PackInfo.from_lengths(lengths, 12)
    with torch.enable_grad():
        training = gru.last_hidden(table[seq], pack).detach()
    with torch.no_grad():
        assert torch.equal(gru.last_hidden(table[seq], pack), training)
        assert torch.equal(gru.last_hidden(None, pack, table, seq), training)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("hidden", "rows"), [(128, 2 * GATE_BLOCK_ROWS + 137), (64, GATE_BLOCK_ROWS + 1), (96, 700)])
def test_blocked_gate_arithmetic_keeps_the_training_forwards_bits(threads: int, hidden: int, rows: int) -> None:
    """Evaluation's gates run in blocks of rows where that is exact (H a multiple of 64, at most 2
    threads) and unblocked elsewhere (H = 96): at evaluation's shapes, several blocks and a ragged last
    one, the state is the training forward's to the bit either way."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert _gate_block_rows(hidden, torch.device("cpu")) == (None if hidden % 64 else GATE_BLOCK_ROWS)
        torch.manual_seed(hidden + rows)
        gru = PackedGRU(64, hidden, 1)
        table = torch.randn(300, 64)
        seq = torch.randint(1, 300, (rows, 16))
        lengths = torch.where(torch.rand(rows) < 0.7, 16, torch.randint(1, 17, (rows,)))  # most rows full
        pack = PackInfo.from_lengths(lengths, 16)
        with torch.enable_grad():
            training = gru.last_hidden(table[seq], pack).detach()
        with torch.no_grad():
            assert torch.equal(gru.last_hidden(None, pack, table, seq), training)
    finally:
        torch.set_num_threads(previous)
