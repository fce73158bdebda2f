"""Ray trials in a reused worker process against a new process per trial, one run, alternated.

    python bench/ray_reuse.py --epochs 1 --rounds 1 [--device cuda]

The 8-config grid (learning_rate 0.01 / 0.005 / 0.001 / 0.0005 x dropout_prob 0.1 / 0.3, GRU4Rec
on ml-100k) through `run_hyper.py --tool ray --workers 2 --no-mlflow`, with `--no-reuse-actors`
(Ray's own default: a fresh actor per trial) and with `--reuse-actors` (seqtune's default). Reports
each study's wall time and checks that both wrote the same output file, trial by trial. Writes
bench/results/ray_reuse.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from grid_study import run_grid_study  # noqa: E402


def study(reuse: bool, epochs: int, device: str) -> dict:
    run = run_grid_study("ray", epochs, "--workers", "2", "--device", device,
                         "--reuse-actors" if reuse else "--no-reuse-actors")
    return {"reuse_actors": reuse, "wall_s": run.wall_s, "output_blocks": sorted(run.output_text.strip().split("\n\n"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    runs: list[dict] = []
    for index in range(args.rounds):  # alternate which goes first
        for reuse in (False, True) if index % 2 == 0 else (True, False):
            runs.append(study(reuse, args.epochs, args.device))
    fresh = [r for r in runs if not r["reuse_actors"]]
    reused = [r for r in runs if r["reuse_actors"]]
    identical = all(r["output_blocks"] == runs[0]["output_blocks"] for r in runs)
    summary = {"epochs": args.epochs, "rounds": args.rounds, "device": args.device,
               "fresh_wall_s": statistics.median(r["wall_s"] for r in fresh),
               "reused_wall_s": statistics.median(r["wall_s"] for r in reused),
               "identical_output": identical, "runs": runs}
    summary["ratio"] = summary["reused_wall_s"] / summary["fresh_wall_s"]
    out = ROOT / "bench" / "results" / ("ray_reuse.json" if args.device == "cpu" else f"ray_reuse_{args.device}.json")
    out.write_text(json.dumps(summary, indent=1))
    print(f"| Ray actors | wall (s, median of {args.rounds}) |\n|---|---|\n"
          f"| a new process per trial (`--no-reuse-actors`) | {summary['fresh_wall_s']:.1f} |\n"
          f"| reused (`--reuse-actors`, the default) | {summary['reused_wall_s']:.1f} ({summary['ratio']:.2f}x) |\n"
          f"output files identical: {identical}")
    if not identical:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
