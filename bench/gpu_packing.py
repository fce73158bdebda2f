"""GPU packing: several trials sharing one GPU against one trial at a time, through Ray Tune or Optuna workers.

    python bench/gpu_packing.py --epochs 5                   # Ray Tune, on a machine with a CUDA GPU
    python bench/gpu_packing.py --epochs 5 --tool optuna     # Optuna worker processes sharing the GPU

The same 8-config grid (learning_rate 0.01 / 0.005 / 0.001 / 0.0005 x dropout_prob 0.1 / 0.3,
GRU4Rec on ml-100k) with `--device cuda`. Ray: once with `--gpus-per-trial 1 --workers 1` and once
with `--gpus-per-trial 0.25 --workers 4`. Optuna: `--workers 1` and `--workers 4`, worker processes
that share the GPU and one study. No pruning, so both train the same epochs. Reports trials per hour
and the speed-up; writes bench/results/gpu_packing[_optuna].json. Exits with status 2 and a one-line
message where there is no CUDA device.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from grid_study import TRIALS, run_grid_study  # noqa: E402


def study(tool: str, gpus_per_trial: float, workers: int, epochs: int, cpus_per_trial: float) -> dict:
    flags = ["--device", "cuda", "--workers", str(workers)]
    if tool == "ray":
        flags += ["--gpus-per-trial", str(gpus_per_trial), "--cpus-per-trial", str(cpus_per_trial)]
    run = run_grid_study(tool, epochs, *flags)
    return {"tool": tool, "gpus_per_trial": gpus_per_trial, "workers": workers, "wall_s": run.wall_s,
            "trials_per_hour": TRIALS / run.wall_s * 3600, "best_params": run.best_params()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--cpus-per-trial", type=float, default=2, help="Ray only")
    parser.add_argument("--tool", choices=("ray", "optuna"), default="ray")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_packing: no CUDA device here; run it on a GPU machine", file=sys.stderr)
        raise SystemExit(2)
    runs = [study(args.tool, 1, 1, args.epochs, args.cpus_per_trial),
            study(args.tool, 0.25, 4, args.epochs, args.cpus_per_trial)]
    summary = {"tool": args.tool, "epochs": args.epochs, "gpu": torch.cuda.get_device_name(0), "runs": runs,
               "speedup": runs[0]["wall_s"] / runs[1]["wall_s"]}
    name = "gpu_packing.json" if args.tool == "ray" else f"gpu_packing_{args.tool}.json"
    (ROOT / "bench" / "results" / name).write_text(json.dumps(summary, indent=1))
    print(f"| GPU per trial | concurrent trials | wall (s) | trials / hour |  ({summary['gpu']})")
    print("|---|---|---|---|")
    for run in runs:
        print(f"| {run['gpus_per_trial']} | {run['workers']} | {run['wall_s']:.0f} | {run['trials_per_hour']:.0f} |")
    print(f"4 x 0.25 GPU: {summary['speedup']:.2f}x the throughput of one trial at a time")


if __name__ == "__main__":
    main()
