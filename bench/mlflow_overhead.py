"""What MLflow logging adds to a study's wall time: the same study with and without --no-mlflow,
alternated (with, without, with, without) on one machine, each in a fresh directory.

    python bench/mlflow_overhead.py --rounds 2 --epochs 2

Writes bench/results/mlflow_overhead.json.
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
SPACE = "learning_rate choice [0.01, 0.001]\n"


def study(with_mlflow: bool, epochs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "h.test").write_text(SPACE)
        command = [sys.executable, str(ROOT / "run_hyper.py"), "--model", "GRU4Rec", "--params_file", "h.test",
                   f"--epochs={epochs}", "--quiet", "--storage", f"sqlite:///{work / 's.db'}"]
        command += [f"--mlflow-uri=sqlite:///{work / 'mlflow.db'}"] if with_mlflow else ["--no-mlflow"]
        tic = time.perf_counter()
        subprocess.run(command, cwd=work, check=True, capture_output=True)
        return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"mlflow": [], "no_mlflow": []}
    for _ in range(args.rounds):
        times["mlflow"].append(study(True, args.epochs))
        times["no_mlflow"].append(study(False, args.epochs))
    with_m, without = statistics.mean(times["mlflow"]), statistics.mean(times["no_mlflow"])
    summary = {"space": SPACE, "epochs": args.epochs, "times_s": times, "mean_with_s": with_m,
               "mean_without_s": without, "overhead": with_m / without - 1}
    (ROOT / "bench" / "results" / "mlflow_overhead.json").write_text(json.dumps(summary, indent=1))
    print(f"with MLflow {with_m:.1f}s, without {without:.1f}s: overhead {summary['overhead']:+.2%} "
          f"(runs: {times})")


if __name__ == "__main__":
    main()
