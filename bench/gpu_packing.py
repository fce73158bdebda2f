"""GPU packing with Ray Tune: 4 trials at 0.25 GPU each against 1 trial at a time on one GPU.

    python bench/gpu_packing.py --epochs 5          # on a machine with a CUDA GPU

The same 8-config grid (learning_rate 0.01 / 0.005 / 0.001 / 0.0005 x dropout_prob 0.1 / 0.3,
GRU4Rec on ml-100k) through `--tool ray --device cuda`, once with `--gpus-per-trial 1 --workers 1`
and once with `--gpus-per-trial 0.25 --workers 4`; no pruning, so both train the same epochs.
Reports trials per hour and the speed-up; writes bench/results/gpu_packing.json. Exits with status 2
and a one-line message where there is no CUDA device.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACE = "learning_rate choice [0.01, 0.005, 0.001, 0.0005]\ndropout_prob choice [0.1, 0.3]\n"
TRIALS = 8


def study(gpus_per_trial: float, workers: int, epochs: int, cpus_per_trial: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "h.test").write_text(SPACE)
        command = [sys.executable, str(ROOT / "run_hyper.py"), "--model", "GRU4Rec", "--params_file", "h.test",
                   f"--epochs={epochs}", "--tool", "ray", "--device", "cuda", "--workers", str(workers),
                   "--gpus-per-trial", str(gpus_per_trial), "--cpus-per-trial", str(cpus_per_trial),
                   "--quiet", "--no-mlflow", f"--ray-storage={work / 'ray'}", "--output_file", "out/hyper.result"]
        tic = time.perf_counter()
        subprocess.run(command, cwd=work, check=True, capture_output=True)
        wall = time.perf_counter() - tic
        best = (work / "out" / "hyper.result").read_text().split("best params:")[-1].splitlines()[0].strip()
    return {"gpus_per_trial": gpus_per_trial, "workers": workers, "wall_s": wall,
            "trials_per_hour": TRIALS / wall * 3600, "best_params": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--cpus-per-trial", type=float, default=2)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_packing: no CUDA device here; run it on a GPU machine", file=sys.stderr)
        raise SystemExit(2)
    runs = [study(1, 1, args.epochs, args.cpus_per_trial), study(0.25, 4, args.epochs, args.cpus_per_trial)]
    summary = {"epochs": args.epochs, "gpu": torch.cuda.get_device_name(0), "runs": runs,
               "speedup": runs[0]["wall_s"] / runs[1]["wall_s"]}
    (ROOT / "bench" / "results" / "gpu_packing.json").write_text(json.dumps(summary, indent=1))
    print(f"| GPU per trial | concurrent trials | wall (s) | trials / hour |  ({summary['gpu']})")
    print("|---|---|---|---|")
    for run in runs:
        print(f"| {run['gpus_per_trial']} | {run['workers']} | {run['wall_s']:.0f} | {run['trials_per_hour']:.0f} |")
    print(f"4 x 0.25 GPU: {summary['speedup']:.2f}x the throughput of one trial at a time")


if __name__ == "__main__":
    main()
