"""Time to best: RecBole 1.2.1's run_hyper vs seqtune's run_hyper.py on one grid, same epochs cap, one run.

    python bench/time_to_best.py --epochs 4 [--workers 2 --pruner median]

Grid (8 configs): learning_rate [0.01, 0.005, 0.001, 0.0005] x dropout_prob [0.1, 0.3], GRU4Rec on
ml-100k, every other setting RecBole's default. RecBole runs first (its own venv, 2 threads,
exhaustive search seeded with HYPEROPT_FMIN_SEED=2020), then seqtune (2 worker processes x 1 thread,
median pruning). Time to best = seconds from the command's start until the trial with the study's
best validation MRR@10 finished. Also measures the tuner's own per-trial overhead: a trial's wall time
minus its training and evaluation time. Writes bench/results/time_to_best.json.
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
from recbole_env import recbole_env, recbole_python  # noqa: E402

SPACE = "learning_rate choice [0.01, 0.005, 0.001, 0.0005]\ndropout_prob choice [0.1, 0.3]\n"


def run_recbole(work: Path, epochs: int) -> dict:
    config = work / "recbole.yaml"
    config.write_text(f"model: GRU4Rec\ndataset: ml-100k\nepochs: {epochs}\ntrain_neg_sample_args: ~\n"
                      f"show_progress: False\ncheckpoint_dir: {work / 'saved'}\nlog_root: {work / 'log'}\n")
    (work / "h.test").write_text(SPACE)
    env = recbole_env(PYTHONWARNINGS="ignore", HYPEROPT_FMIN_SEED="2020")
    out = work / "recbole.json"
    subprocess.run([recbole_python(), str(ROOT / "bench" / "recbole_hyper.py"), "--config", str(config),
                    "--params", str(work / "h.test"), "--out", str(out)], cwd=work, env=env, check=True)
    return json.loads(out.read_text())


def run_seqtune(work: Path, epochs: int, workers: int, pruner: str) -> dict:
    import optuna

    (work / "h.test").write_text(SPACE)
    storage = f"sqlite:///{work / 'studies.db'}"
    start = time.time()
    subprocess.run([sys.executable, str(ROOT / "run_hyper.py"), "--model", "GRU4Rec", "--params_file", "h.test",
                    f"--epochs={epochs}", "--workers", str(workers), "--pruner", pruner, "--storage", storage,
                    "--study-name", "ttb", "--output_file", "seqtune.result", "--quiet",
                    f"--mlflow-uri=sqlite:///{work / 'mlflow.db'}"], cwd=work, check=True)
    total = time.time() - start
    study = optuna.load_study(study_name="ttb", storage=storage)
    trials = []
    for t in study.trials:
        attrs = t.user_attrs
        trials.append({"params": t.params, "state": t.state.name,
                       "finished_s": t.datetime_complete.timestamp() - start,
                       "seconds": attrs.get("seconds"), "overhead_s": attrs.get("overhead_seconds"),
                       "epochs_run": attrs.get("epochs_run"),
                       "best_valid_score": (attrs.get("best_valid_result") or {}).get("mrr@10")})
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    best_score = max(t["best_valid_score"] for t in complete)
    best = min((t for t in complete if t["best_valid_score"] == best_score), key=lambda t: t["finished_s"])
    overheads = [t["overhead_s"] for t in trials if t["overhead_s"] is not None]
    return {"tool": "seqtune", "total_s": total, "trials": trials, "best": best, "time_to_best_s": best["finished_s"],
            "overhead_median_s": statistics.median(overheads), "overhead_max_s": max(overheads),
            "epochs_total": sum(t["epochs_run"] or 0 for t in trials)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pruner", default="median")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "rb").mkdir()
        (work / "st").mkdir()
        recbole = run_recbole(work / "rb", args.epochs)
        ours = run_seqtune(work / "st", args.epochs, args.workers, args.pruner)
    summary = {"epochs": args.epochs, "workers": args.workers, "pruner": args.pruner, "space": SPACE,
               "recbole": recbole, "seqtune": ours,
               "speedup_time_to_best": recbole["time_to_best_s"] / ours["time_to_best_s"],
               "speedup_total": recbole["total_s"] / ours["total_s"]}
    out = ROOT / "bench" / "results" / "time_to_best.json"
    out.write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("recbole", "seqtune")}, indent=1))
    print("recbole best", recbole["best"]["params"], recbole["best"]["best_valid_score"], recbole["time_to_best_s"])
    print("seqtune best", ours["best"]["params"], ours["best"]["best_valid_score"], ours["time_to_best_s"],
          "overhead median/max", ours["overhead_median_s"], ours["overhead_max_s"])


if __name__ == "__main__":
    main()
