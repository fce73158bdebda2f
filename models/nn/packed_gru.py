"""A GRU that computes only the real (non-padding) steps, with a hand-written backward.

RecBole runs ``nn.GRU`` over every one of the L = 50 steps and then reads the output at the last
real item. The outputs at padding steps are never used, and a GRU is causal, so skipping them
changes nothing that is computed for the loss. On ml-100k 22 % of the steps are padding.

Layout: rows are sorted by length (descending) and packed time-major, so at step t the active
rows are a prefix of size ``batch_sizes[t]``; each step is one [b_t, H] x [H, 3H] matmul. The input
projection of every step is one large matmul before the loop, and in the backward pass the weight
gradient of the recurrence is one large matmul after it (as cuDNN does), instead of 50 small ones.
Parameters, their names and their initialisation are those of ``nn.GRU(bias=False)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn


@dataclass
class PackInfo:
    """Where each real step of a right-padded batch lives in the packed, time-major layout."""

    batch_sizes: list[int]  # active rows at each step, non-increasing
    offsets: list[int]  # start of each step in the packed tensor
    flat_index: torch.Tensor  # [T] index into the [B * L] flattened input
    last_index: torch.Tensor  # [B] packed position of each row's last real step, original row order
    unsort: torch.Tensor  # [B] original row -> its position in the length-sorted order

    @staticmethod
    def from_lengths(lengths: torch.Tensor, seq_len: int) -> PackInfo:
        lengths_cpu = lengths.detach().to("cpu", torch.int64)
        batch = lengths_cpu.shape[0]
        sorted_len, order = torch.sort(lengths_cpu, descending=True, stable=True)
        max_len = int(sorted_len[0])
        counts = torch.bincount(sorted_len, minlength=max_len + 1)
        batch_sizes_t = batch - torch.cumsum(counts, 0)[:max_len]  # rows with length > t
        batch_sizes = batch_sizes_t.tolist()
        offsets_t = torch.cumsum(batch_sizes_t, 0) - batch_sizes_t
        steps = torch.arange(max_len)
        active = steps[:, None] < sorted_len[None, :]  # [T_max, B], time-major
        step_of, slot_of = active.nonzero(as_tuple=True)
        flat_index = order[slot_of] * seq_len + step_of
        last_sorted = offsets_t[sorted_len - 1] + torch.arange(batch)
        last_index = torch.empty_like(last_sorted)
        last_index[order] = last_sorted
        unsort = torch.empty_like(order)
        unsort[order] = torch.arange(batch)
        device = lengths.device
        return PackInfo(batch_sizes, offsets_t.tolist(), flat_index.to(device), last_index.to(device),
                        unsort.to(device))


def _tanh_(x: torch.Tensor) -> torch.Tensor:
    """In-place tanh(x) = 2 * sigmoid(2x) - 1: torch's CPU tanh is ~5x slower than its sigmoid."""
    return _two_sigmoid_minus_one_(x.mul_(2).sigmoid_())


def _two_sigmoid_minus_one_(s: torch.Tensor) -> torch.Tensor:
    """s <- 2 * s - 1 in one pass: 2s is exact, so this rounds once, as ``s.mul_(2).sub_(1)`` does."""
    return torch.add(s.new_full((), -1.0), s, alpha=2, out=s)


class _GRURecurrence(torch.autograd.Function):
    """h_t = GRU cell(gi_t, h_{t-1}) over packed steps, given the input projections.

    Inputs: gi_rz [T, 2H] (reset and update gates), gi_n [T, H] (candidate), w_hh [3H, H] in
    nn.GRU's (r, z, n) order. Output: h [T, H]. Every buffer is contiguous so each step works on
    row slices; the saved gates make the backward pass elementwise plus one matmul per step.
    """

    @staticmethod
    def forward(ctx, gi_rz, gi_n, w_hh, batch_sizes: list[int], offsets: list[int]):  # type: ignore[override]
        hidden = w_hh.shape[1]
        total = gi_n.shape[0]
        out = gi_n.new_empty(total, hidden)
        rz_all = gi_n.new_empty(total, 2 * hidden)  # sigmoid(r), sigmoid(z)
        n_all = gi_n.new_empty(total, hidden)  # tanh candidate
        ghn_all = gi_n.new_zeros(total, hidden)  # W_hn h_{t-1}, needed for dL/dr
        gh = gi_n.new_empty(batch_sizes[0], 3 * hidden)
        w_hh_t = w_hh.t()
        for step, rows in enumerate(batch_sizes):
            start = offsets[step]
            cur = slice(start, start + rows)
            rz, n = rz_all[cur], n_all[cur]
            if step == 0:  # h_0 = 0: no recurrent term
                torch.sigmoid(gi_rz[cur], out=rz)
                _tanh_(n.copy_(gi_n[cur]))
                torch.mul(n, rz[:, hidden:], out=out[cur]).neg_().add_(n)  # (1 - z) * n
                continue
            prev = offsets[step - 1]
            h_prev = out[prev : prev + rows]
            gh_t = torch.mm(h_prev, w_hh_t, out=gh[:rows])  # [b, 3H]
            torch.add(gi_rz[cur], gh_t[:, : 2 * hidden], out=rz).sigmoid_()
            ghn = ghn_all[cur].copy_(gh_t[:, 2 * hidden :])
            _tanh_(torch.addcmul(gi_n[cur], rz[:, :hidden], ghn, out=n))
            torch.lerp(n, h_prev, rz[:, hidden:], out=out[cur])  # (1 - z) * n + z * h_prev
        ctx.save_for_backward(w_hh, out, rz_all, n_all, ghn_all)
        ctx.batch_sizes, ctx.offsets = batch_sizes, offsets
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        w_hh, out, rz_all, n_all, ghn_all = ctx.saved_tensors
        batch_sizes, offsets = ctx.batch_sizes, ctx.offsets
        hidden = w_hh.shape[1]
        grad_rz = torch.empty_like(rz_all)  # dL/d(pre-activation of r, z) = dL/dgi = dL/dgh
        grad_gi_n = torch.empty_like(n_all)  # dL/d(pre-activation of n) = dL/dgi_n
        grad_gh_n = torch.empty_like(n_all)  # = r * dL/dgi_n
        dh = grad_out.new_zeros(batch_sizes[0], hidden)
        grad_out = grad_out.contiguous()
        w_rz, w_n = w_hh[: 2 * hidden], w_hh[2 * hidden :]
        for step in range(len(batch_sizes) - 1, -1, -1):
            rows, start = batch_sizes[step], offsets[step]
            cur = slice(start, start + rows)
            dh_t = dh[:rows].add_(grad_out[cur])
            rz, n = rz_all[cur], n_all[cur]
            r, z = rz[:, :hidden], rz[:, hidden:]
            d_rz = grad_rz[cur]
            d_r, d_z = d_rz[:, :hidden], d_rz[:, hidden:]
            # h = n + z * (h_prev - n)
            d_an = torch.mul(dh_t, 1 - z, out=grad_gi_n[cur]).mul_(1 - n * n)
            if step:
                prev = offsets[step - 1]
                h_prev = out[prev : prev + rows]
                torch.sub(h_prev, n, out=d_z)
            else:
                torch.neg(n, out=d_z)
            d_z.mul_(dh_t).mul_(z).mul_(1 - z)
            torch.mul(d_an, ghn_all[cur], out=d_r).mul_(r).mul_(1 - r)
            if step:
                d_ghn = torch.mul(d_an, r, out=grad_gh_n[cur])
                dh_t.mul_(z).addmm_(d_rz, w_rz).addmm_(d_ghn, w_n)  # dL/dh_prev
        grad_w = torch.zeros_like(w_hh)
        if ctx.needs_input_grad[2] and len(batch_sizes) > 1:
            first = batch_sizes[0]
            prev_rows = torch.cat(
                [out[offsets[s - 1] : offsets[s - 1] + batch_sizes[s]] for s in range(1, len(batch_sizes))]
            )
            # one large matmul per gate block instead of one small one per step
            torch.mm(grad_rz[first:].t(), prev_rows, out=grad_w[: 2 * hidden])
            torch.mm(grad_gh_n[first:].t(), prev_rows, out=grad_w[2 * hidden :])
        return grad_rz, grad_gi_n, grad_w, None, None


# Rows per block of evaluation's gate arithmetic. The recurrent matmul runs on the whole batch (MKL's
# bits depend on the row count, so it must); the seven elementwise kernels after it then run block by
# block, on buffers of one block that stay in cache instead of the batch's, streamed once per kernel.
# Measured at ml-1m's evaluation shapes (4096 + 1944 rows, H = 128, 2 threads): 256 rows is slower
# (a [256, 128] kernel falls under aten's grain and runs on one thread), 768-2048 equal, ~10 % faster.
GATE_BLOCK_ROWS = 1024


def _gate_block_rows(hidden: int, device: torch.device) -> int | None:
    """Rows per gate block, or None for the whole batch at once.

    Blocking is exact only when every element takes the same code path as in the unblocked kernels.
    aten's CPU kernels run vectors of 2 x 16 floats and a scalar loop (std::exp, not Sleef) for what
    is left of a thread's chunk; a thread's chunk is ceil(numel / threads) elements. With at most 2
    threads and H a multiple of 64, every chunk of a [rows, H] or [rows, 2H] operand, blocked or not,
    is a multiple of 32 elements: no element ever reaches the scalar loop, so the bits cannot change
    (tests/test_packed_gru.py checks this at evaluation's shapes). Elsewhere: one block, as before.
    """
    if device.type != "cpu" or hidden % 64 or torch.get_num_threads() > 2:
        return None
    return GATE_BLOCK_ROWS


def _last_hidden_inference(
    gi_of: Callable[[int, int, torch.Tensor], torch.Tensor], w_hh: torch.Tensor, pack: PackInfo
) -> torch.Tensor:
    """No-grad recurrence that keeps only the current state: [B, H] in the length-sorted order.

    Rows are sorted by length, so a finished row simply stops being updated and its state stays in
    place. ``gi_of(start, rows, out)`` writes one step's input projections [rows, 3H] into ``out``,
    with the candidate block (n) already doubled: tanh(a) = 2 sigmoid(2a) - 1, and doubling is exact,
    so 2 * gi_n + 2 * r * gh_n is bit for bit the 2a that ``_tanh_`` would form. Every buffer is
    allocated once; the gate arithmetic runs in blocks of rows (``_gate_block_rows``). The result is bit
    for bit the training forward's (``_GRURecurrence``), first step included (tests/test_packed_gru.py).
    """
    hidden = w_hh.shape[1]
    w_hh_t = w_hh.t()
    rows0 = pack.batch_sizes[0]
    block = min(_gate_block_rows(hidden, w_hh.device) or rows0, rows0)
    h = w_hh.new_zeros(rows0, hidden)
    gh_buf = w_hh.new_empty(rows0, 3 * hidden)
    gi_buf, rz_buf, n_buf = (w_hh.new_empty(block, 3 * hidden), w_hh.new_empty(block, 2 * hidden),
                             w_hh.new_empty(block, hidden))
    for step, rows in enumerate(pack.batch_sizes):
        # [rows, 3H], one matmul for all gates and all rows, from the state before this step
        gh_all = torch.mm(h[:rows], w_hh_t, out=gh_buf[:rows]) if step else None
        for first in range(0, rows, block):
            b = min(block, rows - first)
            h_prev, rz, n = h[first : first + b], rz_buf[:b], n_buf[:b]
            gi = gi_of(pack.offsets[step] + first, b, gi_buf[:b])  # [b, 3H]
            if gh_all is None:  # h_0 = 0: no recurrent term; (1 - z) * n as the training forward forms it
                torch.sigmoid(gi[:, : 2 * hidden], out=rz)
                _two_sigmoid_minus_one_(torch.sigmoid(gi[:, 2 * hidden :], out=n))  # tanh
                torch.mul(n, rz[:, hidden:], out=h_prev).neg_().add_(n)
                continue
            gh = gh_all[first : first + b]
            torch.add(gi[:, : 2 * hidden], gh[:, : 2 * hidden], out=rz).sigmoid_()  # [b, 2H]
            torch.addcmul(gi[:, 2 * hidden :], rz[:, :hidden], gh[:, 2 * hidden :], value=2, out=n).sigmoid_()
            _two_sigmoid_minus_one_(n)  # tanh
            torch.lerp(n, h_prev, rz[:, hidden:], out=h_prev)  # (1 - z) * n + z * h_prev, in place
    return h


def _table_rows(table: torch.Tensor, items: torch.Tensor, start: int, rows: int, out: torch.Tensor) -> torch.Tensor:
    """A step's rows of a per-item [N, 3H] table, written into ``out``."""
    return torch.index_select(table, 0, items[start : start + rows], out=out)


def _packed_rows(packed_gi: torch.Tensor, start: int, rows: int, out: torch.Tensor) -> torch.Tensor:
    """A step's rows of the packed [T, 3H] projections: a view, ``out`` unused."""
    return packed_gi[start : start + rows]


def _with_doubled_candidate(gi_rz: torch.Tensor, gi_n: torch.Tensor) -> torch.Tensor:
    """[rows, 2H] and [rows, H] -> [rows, 3H] with the candidate block doubled (exact), as
    ``_last_hidden_inference`` takes it."""
    return torch.cat([gi_rz, gi_n * 2], dim=1)


class PackedGRU(nn.GRU):
    """``nn.GRU(bias=False, batch_first=True)`` that returns each row's output at its last real step."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__(input_size, hidden_size, num_layers=num_layers, bias=False, batch_first=True)

    def last_hidden(
        self,
        x: torch.Tensor | None,
        pack: PackInfo,
        input_table: torch.Tensor | None = None,
        item_seq: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Top-layer output at each row's last real step: [B, H].

        Either ``x`` [B, L, E] is given, or (inference) ``input_table`` [N, E] with ``item_seq``
        [B, L]: then the first layer's input projection is a row lookup in ``input_table @ W_ih^T``
        instead of a matmul per step (the same products, computed once per item).
        """
        if not torch.is_grad_enabled():
            return self._last_hidden_inference(x, pack, input_table, item_seq)
        layer_input: torch.Tensor | None = None
        for layer in range(self.num_layers):
            w_rz, w_n, w_hh = self._split_weights(layer)
            if layer == 0 and input_table is not None:
                table_rz, table_n, items = self._item_projections(input_table, item_seq, pack)
                gi_rz, gi_n = table_rz.index_select(0, items), table_n.index_select(0, items)  # [T, 2H], [T, H]
            else:
                layer_input = self._packed_input(x, pack) if layer == 0 else layer_input
                assert layer_input is not None
                gi_rz, gi_n = layer_input @ w_rz.t(), layer_input @ w_n.t()  # [T, 2H], [T, H]
            layer_input = _GRURecurrence.apply(gi_rz, gi_n, w_hh, pack.batch_sizes, pack.offsets)
        assert layer_input is not None
        return layer_input.index_select(0, pack.last_index)

    def _split_weights(self, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W_ih rows of r and z [2H, in], W_ih rows of n [H, in], W_hh [3H, H]) of one layer."""
        w_ih = getattr(self, f"weight_ih_l{layer}")
        return w_ih[: 2 * self.hidden_size], w_ih[2 * self.hidden_size :], getattr(self, f"weight_hh_l{layer}")

    def _item_projections(
        self, input_table: torch.Tensor, item_seq: torch.Tensor | None, pack: PackInfo
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """First-layer projections of every item ([N, 2H], [N, H]) and the packed item ids [T]."""
        assert item_seq is not None
        w_rz, w_n, _ = self._split_weights(0)
        items = item_seq.reshape(-1).index_select(0, pack.flat_index)
        return input_table @ w_rz.t(), input_table @ w_n.t(), items

    @staticmethod
    def _packed_input(x: torch.Tensor | None, pack: PackInfo) -> torch.Tensor:
        assert x is not None
        return x.reshape(-1, x.shape[-1]).index_select(0, pack.flat_index)  # [T, E]

    def _last_hidden_inference(
        self,
        x: torch.Tensor | None,
        pack: PackInfo,
        input_table: torch.Tensor | None,
        item_seq: torch.Tensor | None,
    ) -> torch.Tensor:
        """Evaluation: lower layers as in training, the top layer keeps only its current state."""
        layer_input: torch.Tensor | None = None
        gi_of: Callable[[int, int, torch.Tensor], torch.Tensor]  # one step's [rows, 3H] (see _last_hidden_inference)
        for layer in range(self.num_layers):
            w_rz, w_n, w_hh = self._split_weights(layer)
            top = layer == self.num_layers - 1
            if layer == 0 and input_table is not None:
                table_rz, table_n, items = self._item_projections(input_table, item_seq, pack)
                if top:  # one row lookup per step in the [N, 3H] table
                    table = _with_doubled_candidate(table_rz, table_n)

                    gi_of = partial(_table_rows, table, items)
                else:
                    gi_rz, gi_n = table_rz.index_select(0, items), table_n.index_select(0, items)
            else:
                layer_input = self._packed_input(x, pack) if layer == 0 else layer_input
                assert layer_input is not None
                gi_rz, gi_n = layer_input @ w_rz.t(), layer_input @ w_n.t()  # [T, 2H], [T, H]
                if top:
                    packed_gi = _with_doubled_candidate(gi_rz, gi_n)

                    gi_of = partial(_packed_rows, packed_gi)
            if top:
                h_sorted = _last_hidden_inference(gi_of, w_hh, pack)  # [B, H], sorted order
                return h_sorted.index_select(0, pack.unsort)
            layer_input = _GRURecurrence.apply(gi_rz, gi_n, w_hh, pack.batch_sizes, pack.offsets)
        raise AssertionError("unreachable")
