"""The exact fast dropout against torch's F.dropout on the shapes our models draw, one process.

    python bench/dropout_speed.py --threads 2 --repeats 20

For each shape: the median time of F.dropout and of models.nn.dropout.dropout (training mode,
p = 0.5 / 0.3), and a check that both give the same tensor and leave the same generator state.
Writes bench/results/dropout_speed.json and prints a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from models.nn import dropout as fast

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {
    "GRU4Rec/KSR embedding [2048, 50, 64]": ((2048, 50, 64), 0.3),
    "S3Rec hidden [2048, 50, 64]": ((2048, 50, 64), 0.5),
    "S3Rec attention [2048, 2, 50, 50]": ((2048, 2, 50, 50), 0.5),
}


def timed(function, x: torch.Tensor, p: float, repeats: int) -> tuple[float, torch.Tensor, torch.Tensor]:
    times = []
    for _ in range(repeats):
        torch.manual_seed(0)
        tic = time.perf_counter()
        out = function(x, p, True)
        times.append(time.perf_counter() - tic)
    return statistics.median(times), out, torch.get_rng_state()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    active = fast.fast_dropout_active()
    rows = {}
    for name, (shape, p) in SHAPES.items():
        x = torch.randn(shape)
        torch_s, expected, expected_state = timed(F.dropout, x, p, args.repeats)
        fast_s, got, state = timed(fast.dropout, x, p, args.repeats)
        rows[name] = {"elements": x.numel(), "p": p, "torch_s": torch_s, "seqtune_s": fast_s,
                      "ratio": fast_s / torch_s,
                      "identical": bool(torch.equal(got, expected) and torch.equal(state, expected_state))}
    result = {"threads": args.threads, "repeats": args.repeats, "fast_path_active": active,
              "torch": torch.__version__, "shapes": rows}
    out = ROOT / "bench" / "results" / "dropout_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"fast path active: {active}; threads {args.threads}, median of {args.repeats}\n")
    print("| tensor | elements | F.dropout | seqtune | ratio | identical output and RNG state |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['elements'] / 1e6:.1f} M | {r['torch_s'] * 1e3:.1f} ms | {r['seqtune_s'] * 1e3:.1f} ms | "
              f"{r['ratio']:.2f}x | {'yes' if r['identical'] else 'NO'} |")


if __name__ == "__main__":
    main()
