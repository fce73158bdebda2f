"""ASHA on Ray Tune: the same grid with and without --pruner asha; total epochs trained and the best config.

    python bench/asha.py --epochs 6

Grid (8 configs): learning_rate [0.01, 0.005, 0.001, 0.0005] x dropout_prob [0.1, 0.3], GRU4Rec on
ml-100k with hidden_size 64 (a cheaper model: the point is the scheduler), --tool ray, 2 concurrent
trials of 1 CPU. ASHA: grace period 1 epoch, reduction factor 2, rungs at epochs 1, 2, 4, ...
Writes bench/results/asha.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from grid_study import SPACE, run_grid_study  # noqa: E402


def study(pruner: str, epochs: int, workers: int) -> dict:
    run = run_grid_study("ray", epochs, "--hidden_size=64", "--workers", str(workers), "--pruner", pruner)
    wall, rows = run.wall_s, run.rows
    trials = [{"params": {"learning_rate": float(r["learning_rate"]), "dropout_prob": float(r["dropout_prob"])},
               "state": r["state"], "epochs_run": int(r["epochs_run"]),
               "best_valid_score": float(r["best_valid_score"]) if r["best_valid_score"] else None,
               "test_mrr@10": float(r["test_mrr@10"]) if r["test_mrr@10"] else None} for r in rows]
    scored = [t for t in trials if t["best_valid_score"] is not None and t["state"] == "COMPLETE"]
    best = max(scored, key=lambda t: t["best_valid_score"])
    return {"pruner": pruner, "wall_s": wall, "epochs_total": sum(t["epochs_run"] for t in trials),
            "finished": sum(t["state"] == "COMPLETE" for t in trials),
            "stopped_early": sum(t["state"] == "PRUNED" for t in trials), "best": best, "trials": trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    runs = [study("none", args.epochs, args.workers), study("asha", args.epochs, args.workers)]
    summary = {"epochs": args.epochs, "workers": args.workers, "space": SPACE, "runs": runs,
               "same_best": runs[0]["best"]["params"] == runs[1]["best"]["params"],
               "epochs_ratio": runs[1]["epochs_total"] / runs[0]["epochs_total"],
               "wall_ratio": runs[1]["wall_s"] / runs[0]["wall_s"]}
    (ROOT / "bench" / "results" / "asha.json").write_text(json.dumps(summary, indent=1))
    print("| scheduler | trials finished / stopped early | epochs trained | wall (s) | best config "
          "| best valid MRR@10 |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        best = run["best"]
        print(f"| {run['pruner']} | {run['finished']} / {run['stopped_early']} | {run['epochs_total']} | "
              f"{run['wall_s']:.0f} | lr {best['params']['learning_rate']}, dropout {best['params']['dropout_prob']} | "
              f"{best['best_valid_score']:.4f} |")
    print(f"same best: {summary['same_best']}; epochs {summary['epochs_ratio']:.2f}x, "
          f"wall {summary['wall_ratio']:.2f}x")


if __name__ == "__main__":
    main()
