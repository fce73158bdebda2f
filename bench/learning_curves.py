"""The learning-curve table, built with the tool itself as one resumable study (issue 15).

    python bench/learning_curves.py run      # start or resume the study (Ctrl-C stops cleanly; run again)
    python bench/learning_curves.py export   # bench/results/learning_curves_gru4rec.json from the study,
                                             # and the table for docs/tuning.md

Every point of the seed's GRU4Rec learning_rate x dropout_prob grid (bench/spaces/gru4rec_lr_dropout.test,
30 points; num_layers 1, hidden_size 128, everything else RecBole's defaults, seed 2020) trained to
RecBole's early stop (stopping_step 10) or 50 epochs, on ml-100k, one worker at the machine's threads.
The study lives in bench/results/learning_curves_gru4rec.db (committed between sessions, so the table
grows across sessions: each session resumes it where the last one stopped). Each trial stores its
curve: per epoch the train loss, every valid metric and the seconds of training and validation, plus
the test metrics of the best epoch. Seconds are this machine's (2 CPU cores) and were measured while
other work may have run: the replay takes its costs from a separate measurement, not from here.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "bench" / "spaces" / "gru4rec_lr_dropout.test"
DB = ROOT / "bench" / "results" / "learning_curves_gru4rec.db"
STUDY = "gru4rec-lr-dropout-curves"
OUT = ROOT / "bench" / "results" / "learning_curves_gru4rec.json"
FIXED = ["--epochs=50", "--stopping_step=10", "--num_layers=1", "--hidden_size=128", "--seed=2020"]
COMMAND = [sys.executable, str(ROOT / "run_hyper.py"), "--model", "GRU4Rec", "--dataset", "ml-100k",
           "--params_file", str(SPACE), *FIXED, "--storage", f"sqlite:///{DB}", "--study-name", STUDY,
           "--no-mlflow", "--workers", "1", "--output_file", str(ROOT / "bench" / "results" / "learning_curves"
                                                                  / "hyper.result")]


def export() -> dict:
    import optuna

    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{DB}")
    rows = []
    for trial in study.trials:
        attrs = trial.user_attrs
        if trial.state.name != "COMPLETE":
            continue
        rows.append({"trial": trial.number, "params": attrs.get("config_params"),
                     "best_epoch": attrs.get("best_epoch"), "epochs_run": attrs.get("epochs_run"),
                     "best_valid_result": attrs.get("best_valid_result"), "test_result": attrs.get("test_result"),
                     "seconds": attrs.get("seconds"), "curve": attrs.get("curve")})
    table = {"command": " ".join(["python", "bench/learning_curves.py", "run"]),
             "study": STUDY, "space": SPACE.read_text(), "fixed": FIXED, "device": "cpu",
             "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
             "points_total": 30, "points_done": len(rows), "trials": sorted(rows, key=lambda r: r["trial"])}
    OUT.write_text(json.dumps(table, indent=1))
    return table


def markdown(table: dict) -> str:
    """The points in the grid's order, as docs/tuning.md shows them."""
    lines = ["| learning_rate | dropout_prob | epochs run | best epoch (from 0, as RecBole) | best valid MRR@10 "
             "| test MRR@10 |",
             "|---|---|---|---|---|---|"]
    for row in sorted(table["trials"], key=lambda r: (-r["params"]["learning_rate"], r["params"]["dropout_prob"])):
        capped = " (cap)" if row["epochs_run"] >= 50 else ""
        lines.append(f"| {row['params']['learning_rate']} | {row['params']['dropout_prob']} | {row['epochs_run']}"
                     f"{capped} | {row['best_epoch']} | {row['best_valid_result']['mrr@10']:.4f} | "
                     f"{row['test_result']['mrr@10']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["run", "export"])
    args = parser.parse_args()
    if args.action == "run":
        raise SystemExit(subprocess.run(COMMAND, cwd=ROOT).returncode)
    table = export()
    print(markdown(table))
    print(f"{table['points_done']}/{table['points_total']} points in {OUT}")


if __name__ == "__main__":
    main()
