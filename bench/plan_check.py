"""The study plan against the real wall time, on the 8-point GRU4Rec grid (bench/grid_study.py's space:
learning_rate x dropout_prob, ml-100k, RecBole's defaults, 3 epochs per trial).

    python bench/plan_check.py [--workers 2] [--epochs 3]

The plan is computed first, in this process (measuring the epoch cost unless it is cached), then the
study runs as the user runs it, in a fresh directory. Real time: the study's own span (the first trial's
start to the last trial's end, from the Optuna storage) and the whole command. Writes
bench/results/plan_check_grid8.json. A timing: run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from grid_study import SPACE, TRIALS  # noqa: E402

OUT = ROOT / "bench" / "results" / "plan_check_grid8.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    import optuna

    from tuner.plan import estimate
    from tuner.request import resolve

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "h.test").write_text(SPACE)
        argv = ["--model", "GRU4Rec", "--params_file", str(work / "h.test"), f"--epochs={args.epochs}",
                "--workers", str(args.workers), "--no-mlflow", f"--storage=sqlite:///{work / 's.db'}",
                "--study-name", "plan-check", "--output_file", "out/hyper.result"]
        planned = estimate(resolve(argv))
        tic = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "run_hyper.py"), *argv], cwd=work, check=True,
                       capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        command_s = time.perf_counter() - tic
        trials = optuna.load_study(study_name="plan-check", storage=f"sqlite:///{work / 's.db'}").trials
    assert len(trials) == TRIALS and all(t.state.name == "COMPLETE" for t in trials)
    study_s = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    result = {
        "command": "python bench/plan_check.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "space": SPACE, "epochs": args.epochs, "workers": args.workers, "threads": planned.threads,
        "planned": {"epoch_s": round(planned.epoch_seconds, 2), "trial_s": round(planned.trial_seconds, 2),
                    "study_s": round(planned.study_seconds, 1)},
        "real": {"study_s": round(study_s, 1), "command_s": round(command_s, 1),
                 "trial_s": [round(t.duration.total_seconds(), 1) for t in trials]},
        "plan_over_real": {"study": round(planned.study_seconds / study_s, 3),
                           "command": round(planned.study_seconds / command_s, 3)},
    }
    OUT.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("planned", "plan_over_real")}))
    print(f"real: study {study_s:.0f} s, command {command_s:.0f} s")


if __name__ == "__main__":
    main()
