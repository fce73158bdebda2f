"""Time to best: RecBole 1.2.1's run_hyper vs seqtune's run_hyper.py on one grid, same epochs cap, one run.

    python bench/time_to_best.py --epochs 4 --orders 2020 2021 2022 [--workers 2 --pruner median]

Grid (8 configs): learning_rate [0.01, 0.005, 0.001, 0.0005] x dropout_prob [0.1, 0.3], GRU4Rec on
ml-100k, every other setting RecBole's default. RecBole runs first (its own venv, 2 threads,
exhaustive search seeded with HYPEROPT_FMIN_SEED=2020), then seqtune (2 worker processes x 1 thread,
median pruning) once per grid order (--grid-order random --sampler-seed S for S in --orders).

Time to best = seconds from the command's start until the trial with the study's best validation
MRR@10 finished. It depends on where the grid order puts the best config: RecBole draws its order at
random (unseeded by default). RecBole's trials are independent and run one after another, so its time
to best under any order is its start-up plus the measured cost of each of its trials (finish-to-finish)
up to the best in that order; the table gives, per order, seqtune measured against RecBole at the same
order, plus RecBole's own measured run. Also measures the tuner's per-trial overhead: a trial's wall
time minus its training and evaluation time. Writes bench/results/time_to_best.json.
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
from grid_study import SPACE  # noqa: E402
from recbole_env import recbole_env, recbole_python  # noqa: E402

from tuner.backends.optuna.storage import WORKER_ATTR  # noqa: E402


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


def params_key(params: dict) -> tuple:
    return tuple(sorted((k, float(v)) for k, v in params.items() if k in ("learning_rate", "dropout_prob")))


def recbole_at_order(recbole: dict, order: list[tuple], best: set[tuple]) -> float:
    """RecBole's time to best had it drawn ``order``: start-up plus each trial's cost (finish to
    finish) up to the first config of ``best`` (the configs tied at the best score) in that order."""
    trials = recbole["trials"]
    costs, previous = {}, trials[0]["finished_s"] - trials[0]["seconds"]
    startup = previous
    for trial in trials:
        costs[params_key(trial["params"])] = trial["finished_s"] - previous
        previous = trial["finished_s"]
    first = min(order.index(key) for key in best)
    return startup + sum(costs[key] for key in order[: first + 1])


def tied_best(trials: list[dict]) -> set[tuple]:
    """Configs at the best validation score (scores are rounded to 4 decimals, as RecBole prints them)."""
    scored = [t for t in trials if t.get("best_valid_score") is not None and t.get("state", "COMPLETE") == "COMPLETE"]
    top = max(t["best_valid_score"] for t in scored)
    return {params_key(t["params"]) for t in scored if t["best_valid_score"] == top}


def loop_overheads(trials: list[dict]) -> list[float]:
    """The tuner's whole cost per trial, seen from a worker: the time from its previous trial's end to
    this one's end (reaping, claiming the next grid point, the trial's bookkeeping, reporting back)
    minus this trial's training and evaluation. A worker's first trial is left out (its start-up is
    the worker's). Workers are told apart by the attribute each trial keeps, else (older results)
    by matching each trial's start to the latest earlier finish."""
    done = sorted((t for t in trials if t.get("seconds") is not None and t.get("overhead_s") is not None),
                  key=lambda t: t["finished_s"] - t["seconds"])
    last_finish: dict[str, float] = {}
    gaps = []
    for t in done:
        start = t["finished_s"] - t["seconds"]
        worker = t.get("worker")
        if worker is None:  # the worker that became free last before this trial started
            free = [(f, w) for w, f in last_finish.items() if f <= start + 0.5]
            worker = max(free)[1] if free and len(last_finish) >= 2 else f"w{len(last_finish)}"
        if worker in last_finish:
            gaps.append(t["finished_s"] - last_finish[worker] - (t["seconds"] - t["overhead_s"]))
        last_finish[worker] = t["finished_s"]
    return gaps


def run_seqtune(work: Path, epochs: int, workers: int, pruner: str, order_seed: int) -> dict:
    import optuna

    (work / "h.test").write_text(SPACE)
    storage = f"sqlite:///{work / 'studies.db'}"
    start = time.time()
    subprocess.run([sys.executable, str(ROOT / "run_hyper.py"), "--model", "GRU4Rec", "--params_file", "h.test",
                    f"--epochs={epochs}", "--workers", str(workers), "--pruner", pruner, "--storage", storage,
                    "--study-name", "ttb", "--output_file", "seqtune.result", "--quiet",
                    "--grid-order", "random", "--sampler-seed", str(order_seed),
                    f"--mlflow-uri=sqlite:///{work / 'mlflow.db'}"], cwd=work, check=True)
    total = time.time() - start
    study = optuna.load_study(study_name="ttb", storage=storage)
    trials = []
    for t in study.trials:
        attrs = t.user_attrs
        trials.append({"number": t.number, "params": attrs.get("config_params") or t.params,
                       "state": t.state.name,
                       "worker": t.user_attrs.get(WORKER_ATTR) or t.system_attrs.get("seqtune:worker"),
                       "finished_s": t.datetime_complete.timestamp() - start,
                       "seconds": attrs.get("seconds"), "overhead_s": attrs.get("overhead_seconds"),
                       "epochs_run": attrs.get("epochs_run"),
                       "best_valid_score": (attrs.get("best_valid_result") or {}).get("mrr@10")})
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    best_score = max(t["best_valid_score"] for t in complete)
    best = min((t for t in complete if t["best_valid_score"] == best_score), key=lambda t: t["finished_s"])
    overheads = [t["overhead_s"] for t in trials if t["overhead_s"] is not None]
    cycles = loop_overheads(trials)
    order = [params_key(t["params"]) for t in sorted(trials, key=lambda t: t["number"])]
    return {"tool": "seqtune", "order_seed": order_seed, "order": order, "total_s": total, "trials": trials,
            "best": best, "time_to_best_s": best["finished_s"],
            "overhead_median_s": statistics.median(overheads), "overhead_max_s": max(overheads),
            "loop_overhead_s": cycles, "loop_overhead_median_s": statistics.median(cycles) if cycles else None,
            "loop_overhead_max_s": max(cycles) if cycles else None,
            "epochs_total": sum(t["epochs_run"] or 0 for t in trials)}


def summarize(recbole: dict, runs: list[dict], epochs: int, workers: int, pruner: str) -> dict:
    recbole_best = tied_best(recbole["trials"])
    rows = []
    for run in runs:
        ours_best = params_key(run["best"]["params"])
        at_order = recbole_at_order(recbole, run["order"], recbole_best)
        rows.append({"order_seed": run["order_seed"], "best_position": run["order"].index(ours_best) + 1,
                     "best": dict(ours_best), "same_best": ours_best in recbole_best,
                     "seqtune_s": run["time_to_best_s"], "recbole_same_order_s": at_order,
                     "speedup": at_order / run["time_to_best_s"], "seqtune_total_s": run["total_s"],
                     "speedup_total": recbole["total_s"] / run["total_s"],
                     "seqtune_epochs_total": run["epochs_total"]})
    recbole_order = [params_key(t["params"]) for t in recbole["trials"]]
    loops = [g for r in runs for g in r["loop_overhead_s"]]
    return {"epochs": epochs, "workers": workers, "pruner": pruner, "space": SPACE,
            "recbole": recbole, "seqtune_runs": runs, "rows": rows,
            "recbole_best_tied": [dict(k) for k in sorted(recbole_best)],
            "recbole_measured_time_to_best_s": recbole["time_to_best_s"],
            "recbole_measured_best_position": min(recbole_order.index(k) for k in recbole_best) + 1,
            "speedup_time_to_best_median": statistics.median(r["speedup"] for r in rows),
            "speedup_time_to_best_min": min(r["speedup"] for r in rows),
            "speedup_total_median": statistics.median(r["speedup_total"] for r in rows),
            "overhead_median_s": statistics.median(r["overhead_median_s"] for r in runs),
            "overhead_max_s": max(r["overhead_max_s"] for r in runs),
            "loop_overhead_median_s": statistics.median(loops), "loop_overhead_max_s": max(loops)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pruner", default="median")
    parser.add_argument("--orders", type=int, nargs="+", default=[2020, 2021, 2022],
                        help="seqtune's --sampler-seed per run: one grid order each")
    parser.add_argument("--from-json", default=None,
                        help="re-summarize the raw runs of an earlier results file instead of measuring")
    args = parser.parse_args()
    out = ROOT / "bench" / "results" / "time_to_best.json"
    if args.from_json:
        raw = json.loads(Path(args.from_json).read_text())
        recbole, runs = raw["recbole"], raw["seqtune_runs"]
        for run in runs:  # recomputed from the trials, so older files get today's definitions
            run["loop_overhead_s"] = loop_overheads(run["trials"])
            run["order"] = [tuple(tuple(pair) for pair in key) for key in run["order"]]  # JSON made them lists
        args.epochs, args.workers, args.pruner = raw["epochs"], raw["workers"], raw["pruner"]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "rb").mkdir()
            recbole = run_recbole(work / "rb", args.epochs)
            runs = []
            for seed in args.orders:
                (work / f"st{seed}").mkdir()
                runs.append(run_seqtune(work / f"st{seed}", args.epochs, args.workers, args.pruner, seed))
    summary = summarize(recbole, runs, args.epochs, args.workers, args.pruner)
    out.write_text(json.dumps(summary, indent=1))
    print(f"RecBole: best (tied) {summary['recbole_best_tied']}; its own order reached it at position "
          f"{summary['recbole_measured_best_position']}, {recbole['time_to_best_s']:.0f}s; "
          f"{recbole['total_s']:.0f}s in all")
    print("| grid order (seed) | seqtune's best (position) | seqtune to best (s) | RecBole, same order (s) | speed-up "
          "| whole study: seqtune (s) | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for r in summary["rows"]:
        best = ", ".join(f"{k} {v}" for k, v in sorted(r["best"].items()))
        print(f"| {r['order_seed']} | {best} ({r['best_position']}/8){'' if r['same_best'] else ' other best!'} | "
              f"{r['seqtune_s']:.0f} | {r['recbole_same_order_s']:.0f} | {r['speedup']:.2f}x | "
              f"{r['seqtune_total_s']:.0f} | {r['speedup_total']:.2f}x |")
    print(f"median speed-up {summary['speedup_time_to_best_median']:.2f}x "
          f"(min {summary['speedup_time_to_best_min']:.2f}x); "
          f"whole study {summary['speedup_total_median']:.2f}x; inside a trial, tuner overhead median "
          f"{summary['overhead_median_s']:.3f}s, max {summary['overhead_max_s']:.3f}s; whole loop per trial "
          f"median {summary['loop_overhead_median_s']:.3f}s, max {summary['loop_overhead_max_s']:.3f}s")


if __name__ == "__main__":
    main()
