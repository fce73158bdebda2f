"""The headline command with a budget, on a fresh clone (issue 15):

    python bench/budget_check.py [--budget 20m] [--model KSR] [--params-file hyper.test]

Clones this repository's HEAD into a temporary folder, runs ``make setup`` there and then, with an empty
SEQTUNE_CACHE (so the data, the KG vectors and the plan's cost model are all built inside the budget),

    .venv/bin/python run_hyper.py --model KSR --params_file hyper.test --budget 20m

and checks what it wrote: the RecBole-layout output file, results.csv, best_config.yaml and the MLflow
runs (sqlite:///mlflow.db, the default) agree trial for trial; its wall time against the budget plus one
rung (the longest epoch a trial ran, plus its test evaluation); and that it said what finishing the
whole grid would need. Writes bench/results/budget_check.json. Run it alone: it is a timing.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUTPUT = "hyper_example.result"  # run_hyper's default --output_file, as RecBole's


def same(a: Any, b: Any) -> bool:
    """Parameter values from different files (text, YAML, MLflow strings) compared as values."""
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(a) == str(b)


def same_params(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)


def check_outputs(work: Path, model: str, dataset: str) -> dict[str, Any]:
    import mlflow
    import yaml

    from tuner.reporting import parse_recbole_output
    from tuner.tracking.mlflow_tracker import metric_name

    rows = list(csv.DictReader((work / "results.csv").open()))
    fixed = {"trial", "state", "best_valid_score", "epochs_run", "seconds", "error"}
    names = [c for c in rows[0] if c not in fixed and not c.startswith(("valid_", "test_"))] if rows else []
    # the output file lists the trials that ended (COMPLETE, PRUNED); a FAIL stopped by the budget keeps
    # what it reached in results.csv only; the best is the best COMPLETE trial, as the tool's
    with_result = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED") and r.get("test_mrr@10")]
    blocks = parse_recbole_output((work / OUTPUT).read_text())
    output_matches = len(blocks) == len(with_result) and all(
        any(same_params(params, {n: r[n] for n in names if r[n] != ""}) for params, _, _ in blocks)
        for r in with_result)
    complete = [r for r in with_result if r["state"] == "COMPLETE"]
    best = max(complete, key=lambda r: float(r["best_valid_score"])) if complete else None
    best_config = yaml.safe_load((work / "best_config.yaml").read_text())
    best_config_matches = best is not None and all(same(best_config.get(n), best[n]) for n in names if best[n] != "")

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"{model}-{dataset}")
    runs = client.search_runs([experiment.experiment_id], max_results=5000) if experiment else []
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    child_numbers = sorted(int(float(c.data.params.get("trial_number", -1))) for c in children)
    key = f"best_valid_{metric_name('mrr@10')}"  # the study's valid metric (RecBole's default, MRR@10)
    parent_best = next((p.data.metrics[key] for p in parents if key in p.data.metrics), None)
    return {
        "trials_in_results_csv": len(rows), "states": {s: sum(r["state"] == s for r in rows)
                                                       for s in sorted({r["state"] for r in rows})},
        "trials_with_results": len(with_result), "output_file_blocks": len(blocks),
        "output_file_matches_results_csv": output_matches,
        "best": {n: best[n] for n in names} if best else None,
        "best_valid_score": float(best["best_valid_score"]) if best else None,
        "best_config_matches": best_config_matches,
        "mlflow_parents": len(parents), "mlflow_children": len(children),
        "mlflow_children_match_trials": child_numbers == sorted(int(r["trial"]) for r in rows
                                                                 if r["state"] != "WAITING"),  # started ones
        "mlflow_parent_best": parent_best,
        "mlflow_parent_best_matches": best is not None and parent_best is not None
        and math.isclose(parent_best, float(best["best_valid_score"]), rel_tol=1e-6),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="20m")
    parser.add_argument("--model", default="KSR")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--params-file", default="hyper.test")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = parser.parse_args()
    from tuner.request import parse_duration

    budget_s = parse_duration(args.budget)
    tmp = Path(tempfile.mkdtemp(prefix="seqtune-fresh-"))
    work = tmp / "seqtune"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(work)], check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True).stdout.strip()
    tic = time.perf_counter()
    subprocess.run(["make", "setup"], cwd=work, check=True, capture_output=True)
    setup_s = time.perf_counter() - tic
    env = {**os.environ, "SEQTUNE_CACHE": str(tmp / "cache")}
    command = [".venv/bin/python", "run_hyper.py", "--model", args.model, "--params_file", args.params_file,
               "--budget", args.budget]
    tic = time.perf_counter()
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    wall_s = time.perf_counter() - tic
    outputs = check_outputs(work, args.model, args.dataset)
    epochs = [float(r["seconds"]) / int(r["epochs_run"]) for r in outputs["rows"]
              if r["seconds"] and r["epochs_run"] and int(r["epochs_run"]) > 0]
    rung_s = max(epochs) if epochs else None  # a trial's seconds per epoch, set-up and test included: one rung
    said = [line for line in (done.stdout + done.stderr).splitlines()
            if "budget" in line or "whole" in line or "to run" in line or "plan:" in line]
    result = {
        "command": " ".join(["python", *command[1:]]), "commit": head, "exit_code": done.returncode,
        "setup_s": setup_s, "budget_s": budget_s, "wall_s": wall_s, "overrun_s": wall_s - budget_s,
        "longest_trial_epoch_s": rung_s,
        "within_budget_plus_one_rung": rung_s is not None and wall_s - budget_s <= rung_s,
        "said": said, "stdout_tail": done.stdout.splitlines()[-25:], "stderr_tail": done.stderr.splitlines()[-15:],
        **{k: v for k, v in outputs.items() if k != "rows"},
        "consistent": all(outputs[k] for k in ("output_file_matches_results_csv", "best_config_matches",
                                                "mlflow_children_match_trials", "mlflow_parent_best_matches")),
        "machine": f"{os.cpu_count()} cores", "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (ROOT / "bench" / "results" / "budget_check.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("stdout_tail", "stderr_tail")}, indent=1))
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"clone kept in {work}")


if __name__ == "__main__":
    main()
