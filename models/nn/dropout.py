"""Dropout that draws exactly torch's (and so RecBole's) mask on AMD CPUs, 4-10x faster.

Why: on CPUs that are not Intel, torch's ``bernoulli_(p)`` (the mask inside ``F.dropout``) runs a
serial per-element loop: two mt19937 draws, a 53-bit double ``u`` and ``u < p`` each, behind a
mutex, about 12 ns per element. With dropout on every embedding (GRU4Rec, KSR, GRU4RecKG) and on
every attention map and sub-layer output (S3Rec) it was 20-30 % of an epoch, and it does not get
faster with threads.

What: the same loop in a few lines of C on the same generator state. The torch generator's state
(``torch.get_rng_state()``, the legacy THGeneratorState layout) is read, advanced exactly as torch
would advance it, and written back, and the mask becomes the same ``noise.div_(1 - p)`` and
``x * noise`` that ATen's ``_dropout_impl`` computes. The result, its gradient and every later
random number are bit-identical to ``torch.nn.functional.dropout``.

Safety: the C file is compiled once per machine into the cache (any ``cc``), then checked against
``F.dropout`` on tensors that cross the generator's 624-word refill boundary: output and the
generator state afterwards must be identical. If there is no compiler, the check fails (an Intel
CPU, where torch uses MKL's stream instead), the tensor is not a contiguous float32 CPU tensor, or
``SEQTUNE_FAST_DROPOUT=0``, ``F.dropout`` runs unchanged. Like torch's generator calls from one
training thread, it assumes no other thread draws from the CPU generator during a mask.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

_SOURCE = r"""
#include <stdint.h>
#include <string.h>

#define MT_N 624
#define MT_M 397
#define CHUNK 4096 /* elements per pass: 8192 tempered words on the stack */

/* at::mt19937's refill (the reference MT19937 twist), split so that each loop vectorises. */
static inline uint32_t twist(uint32_t u, uint32_t v) {
    return (((u & 0x80000000u) | (v & 0x7fffffffu)) >> 1) ^ ((v & 1u) ? 0x9908b0dfu : 0u);
}

static void refill(uint32_t *mt) {
    int k = 0;
    for (; k < MT_N - MT_M; k++) mt[k] = mt[k + MT_M] ^ twist(mt[k], mt[k + 1]);
    for (; k < MT_N - 1; k++) mt[k] = mt[k + MT_M - MT_N] ^ twist(mt[k], mt[k + 1]);
    mt[MT_N - 1] = mt[MT_M - 1] ^ twist(mt[MT_N - 1], mt[0]);
}

/* torch.get_rng_state() on CPU: seed u64 @0, left i32 @8, seeded i32 @12, next u64 @16,
   state u64[624] @24 (each holding a 32-bit word). A draw is: if (--left == 0) {refill; left = 624;
   next = 0;} return temper(mt[next++]). Here: after a refill, left = 625 and next = 0 give the same
   draws, so a run of (left - 1) draws needs no refill. */
void bernoulli_fill(uint8_t *state, int64_t n, uint64_t threshold, float *out) {
    uint32_t mt[MT_N];
    uint32_t words[2 * CHUNK];
    int32_t left;
    uint64_t next64;
    memcpy(&left, state + 8, 4);
    memcpy(&next64, state + 16, 8);
    for (int k = 0; k < MT_N; k++) {
        uint64_t word;
        memcpy(&word, state + 24 + 8 * k, 8);
        mt[k] = (uint32_t)word;
    }
    int64_t next = (int64_t)next64;
    const int64_t limit = (int64_t)threshold; /* bits < 2^53, so a signed compare is exact */
    for (int64_t done = 0; done < n; done += CHUNK) {
        int64_t count = n - done < CHUNK ? n - done : CHUNK;
        int64_t filled = 0, wanted = 2 * count;
        while (filled < wanted) {
            if (left == 1) {
                refill(mt);
                left = MT_N + 1;
                next = 0;
            }
            int64_t take = left - 1 < wanted - filled ? left - 1 : wanted - filled;
            for (int64_t j = 0; j < take; j++) {
                uint32_t y = mt[next + j];
                y ^= (y >> 11);
                y ^= (y << 7) & 0x9d2c5680u;
                y ^= (y << 15) & 0xefc60000u;
                y ^= (y >> 18);
                words[filled + j] = y;
            }
            filled += take;
            next += take;
            left -= (int32_t)take;
        }
        float *dst = out + done;
        for (int64_t i = 0; i < count; i++) {
            int64_t bits = (int64_t)((((uint64_t)(words[2 * i] & 0x1fffffu)) << 32) | words[2 * i + 1]);
            dst[i] = bits < limit ? 1.0f : 0.0f;
        }
    }
    memcpy(state + 8, &left, 4);
    next64 = (uint64_t)next;
    memcpy(state + 16, &next64, 8);
    for (int k = 0; k < MT_N; k++) {
        uint64_t word = mt[k];
        memcpy(state + 24 + 8 * k, &word, 8);
    }
}
"""

_STATE_BYTES = 5056  # sizeof(CPUGeneratorImplState), what torch.get_rng_state() returns on CPU
_fill: Callable[..., None] | None = None
_checked = False


def _cpu_signature() -> str:
    import platform

    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = ""
    return f"{platform.machine()} {flags}"


def _compile() -> Path | None:
    from models.data.datasets import cache_root
    from models.utils import atomic_path, file_lock

    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    # -march=native: the file is only valid on this kind of CPU, so the CPU's flags are in its name
    digest = hashlib.sha256((_SOURCE + _cpu_signature()).encode()).hexdigest()[:16]
    target = cache_root() / "native" / f"bernoulli-{digest}.so"
    if target.is_file():
        return target
    with file_lock(target.parent / f".{target.name}.lock"):
        if not target.is_file():
            source = target.with_suffix(".c")
            source.write_text(_SOURCE)
            with atomic_path(target) as tmp:
                subprocess.run([compiler, "-O3", "-march=native", "-shared", "-fPIC", "-o", str(tmp), str(source)],
                               check=True, capture_output=True, timeout=120)
    return target


def _load() -> Callable[..., None] | None:  # bernoulli_fill, a ctypes function
    try:
        path = _compile()
        if path is None:
            return None
        function = ctypes.CDLL(str(path)).bernoulli_fill
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("fast dropout unavailable: %s", exc)
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint64, ctypes.c_void_p]
    function.restype = None
    return function


def _threshold(keep: float) -> int:
    """ceil(keep * 2^53): ``u < keep`` for u = bits / 2^53 holds iff ``bits < threshold``."""
    scaled = keep * float(1 << 53)  # exact: a power-of-two scaling
    return int(scaled) if scaled.is_integer() else int(scaled) + 1


def _fast(x: torch.Tensor, p: float) -> torch.Tensor:
    assert _fill is not None
    state = torch.get_rng_state()  # a copy, uint8 [5056]
    noise = torch.empty_like(x, memory_format=torch.contiguous_format)
    _fill(state.data_ptr(), noise.numel(), _threshold(1.0 - p), noise.data_ptr())
    torch.set_rng_state(state)
    noise.div_(1.0 - p)  # ATen's _dropout_impl, op for op
    return x * noise


def _self_check() -> bool:
    """Identical output and generator state to F.dropout, across refills, for a few p."""
    saved = torch.get_rng_state()
    try:
        if saved.numel() != _STATE_BYTES:
            return False
        for seed, shape, p in ((7, (3, 701), 0.3), (11, (1,), 0.5), (13, (2, 1000), 0.9), (17, (5, 624), 0.1)):
            torch.default_generator.manual_seed(seed)  # the CPU generator only: CUDA's is left alone
            x = torch.randn(shape)
            start = torch.get_rng_state()
            expected = F.dropout(x, p, True)
            expected_state = torch.get_rng_state()
            torch.set_rng_state(start)
            got = _fast(x, p)
            if not (torch.equal(got, expected) and torch.equal(torch.get_rng_state(), expected_state)):
                return False
        return True
    finally:
        torch.set_rng_state(saved)


def fast_dropout_active() -> bool:
    """Compile, load and check once per process; True when the exact fast path is in use."""
    global _fill, _checked
    if not _checked:
        _checked = True
        if os.environ.get("SEQTUNE_FAST_DROPOUT", "1") != "0":
            _fill = _load()
            if _fill is not None and not _self_check():
                log.debug("fast dropout disabled: it does not reproduce F.dropout on this machine")
                _fill = None
    return _fill is not None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(x, p, training)``, bit for bit, faster where the check passed."""
    if (training and 0.0 < p < 1.0 and x.device.type == "cpu" and x.dtype == torch.float32
            and x.is_contiguous() and x.numel() > 0 and fast_dropout_active()):
        return _fast(x, p)
    return F.dropout(x, p, training)


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same name, no parameters, same state_dict) running :func:`dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)
