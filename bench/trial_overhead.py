"""The tuner's own cost per trial, measured on a real study (no RecBole involved).

    python bench/trial_overhead.py --label after [--epochs 1 --workers 2]

Runs `make run`'s study (search_spaces/quick.test: 4 GRU4Rec grid points on ml-100k) through
run_hyper.py with MLflow tracking into a fresh directory, then reads the trials back from the
Optuna storage. Two numbers per trial:
- inside the trial: its wall time minus training and evaluation (config, tracking, bookkeeping);
- the whole loop: time from the worker's previous trial end to this trial's end, minus training and
  evaluation (claiming the next point, reaping, reporting back; a worker's first trial is left out).
Appends {label: ...} to bench/results/trial_overhead.json, so a before/after pair sits side by side.
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
sys.path.insert(0, str(ROOT / "bench"))
from time_to_best import loop_overheads  # noqa: E402


def measure(epochs: int, workers: int) -> dict:
    import optuna

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        storage = f"sqlite:///{work / 'studies.db'}"
        start = time.time()
        subprocess.run([sys.executable, str(ROOT / "run_hyper.py"), "--model", "GRU4Rec", "--params_file",
                        str(ROOT / "search_spaces" / "quick.test"), f"--epochs={epochs}", "--workers", str(workers),
                        "--storage", storage, "--study-name", "overhead", "--quiet",
                        f"--mlflow-uri=sqlite:///{work / 'mlflow.db'}"], cwd=work, check=True,
                       capture_output=True)
        wall = time.time() - start
        study = optuna.load_study(study_name="overhead", storage=storage)
        trials = []
        for t in study.trials:
            attrs = t.user_attrs
            worker = attrs.get("worker") or t.system_attrs.get("seqtune:worker")  # older runs: a system attr
            trials.append({"number": t.number, "state": t.state.name, "worker": worker,
                           "finished_s": t.datetime_complete.timestamp() - start, "seconds": attrs.get("seconds"),
                           "overhead_s": attrs.get("overhead_seconds")})
    inside = [t["overhead_s"] for t in trials if t["overhead_s"] is not None]
    loops = loop_overheads(trials)
    return {"epochs": epochs, "workers": workers, "wall_s": round(wall, 2), "trials": trials,
            "inside_median_s": statistics.median(inside), "inside_max_s": max(inside),
            "loop_median_s": statistics.median(loops) if loops else None,
            "loop_max_s": max(loops) if loops else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", required=True, help="e.g. the commit or 'before' / 'after'")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    result = measure(args.epochs, args.workers)
    out = ROOT / "bench" / "results" / "trial_overhead.json"
    stored = json.loads(out.read_text()) if out.is_file() else {}
    stored[args.label] = result
    out.write_text(json.dumps(stored, indent=1))
    print(f"{args.label}: inside a trial median {result['inside_median_s']:.3f} s, max {result['inside_max_s']:.3f} s; "
          f"whole loop per trial median {result['loop_median_s']} s, max {result['loop_max_s']} s; "
          f"study {result['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
