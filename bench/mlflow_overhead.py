"""What MLflow logging adds to a study's wall time: the same study with and without --no-mlflow,
alternated (with, without, with, without) on one machine, each in a fresh directory with a fresh
mlflow.db (the worst case: a new store per study).

    python bench/mlflow_overhead.py --rounds 2                       # the README's main job (make run)
    python bench/mlflow_overhead.py --rounds 2 --space small --workers 1 --epochs 2   # an 80 s study

The default study is `make run`'s: search_spaces/quick.test (4 grid points), 3 epochs, 2 workers.
Writes bench/results/mlflow_overhead_<space>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACES = {"quick": (ROOT / "search_spaces" / "quick.test").read_text(), "small": "learning_rate choice [0.01, 0.001]\n"}


def study(with_mlflow: bool, space: str, epochs: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "h.test").write_text(SPACES[space])
        command = [sys.executable, str(ROOT / "run_hyper.py"), "--model", "GRU4Rec", "--params_file", "h.test",
                   f"--epochs={epochs}", "--workers", str(workers), "--quiet",
                   "--storage", f"sqlite:///{work / 's.db'}"]
        command += [f"--mlflow-uri=sqlite:///{work / 'mlflow.db'}"] if with_mlflow else ["--no-mlflow"]
        tic = time.perf_counter()
        subprocess.run(command, cwd=work, check=True, capture_output=True)
        return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--space", choices=sorted(SPACES), default="quick")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"mlflow": [], "no_mlflow": []}
    for _ in range(args.rounds):
        times["mlflow"].append(study(True, args.space, args.epochs, args.workers))
        times["no_mlflow"].append(study(False, args.space, args.epochs, args.workers))
    with_m, without = statistics.mean(times["mlflow"]), statistics.mean(times["no_mlflow"])
    summary = {"space": SPACES[args.space], "epochs": args.epochs, "workers": args.workers, "times_s": times,
               "mean_with_s": with_m, "mean_without_s": without, "added_s": with_m - without,
               "overhead": with_m / without - 1}
    out = ROOT / "bench" / "results" / f"mlflow_overhead_{args.space}.json"
    out.write_text(json.dumps(summary, indent=1))
    print(f"{args.space}: with MLflow {with_m:.1f}s, without {without:.1f}s: {with_m - without:+.1f}s, "
          f"overhead {summary['overhead']:+.2%} (runs: {times})")


if __name__ == "__main__":
    main()
