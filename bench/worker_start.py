"""How fast a study's workers start, and the memory the study takes: spawned workers (before) against
forks of the driver's fork server (after), side by side in one run.

    python bench/worker_start.py [--rounds 3 --epochs 1]

Each round runs `make run`'s study (search_spaces/quick.test: 4 GRU4Rec grid points on ml-100k, 2
workers x 1 thread, MLflow on) through run_hyper.py once with each start method, in alternating order,
each in a fresh interpreter and directory. Measured per run:
- first trial: seconds from the command's start to the first trial's start (the storage's
  datetime_start), i.e. the driver's set-up plus the workers' start-up before they can claim work;
- workers ready: the same for the later of the two workers' first trials;
- wall: the whole command;
- memory: the largest sum, over the driver and every process under it (workers, fork server, resource
  tracker), of the proportional set size (Linux smaps_rollup: pages shared between processes are
  split between them), sampled every 0.2 s.
The plan's epoch measurement is cached before the first run (the same for both). Writes
bench/results/worker_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from procmem import memory_mb, process_tree  # noqa: E402

OUT = ROOT / "bench" / "results" / "worker_start.json"
METHODS = ("spawn", "forkserver")

# run_hyper.py with the workers' start method forced to spawn, as before the fork server
SPAWN_ENTRY = """
import multiprocessing, sys
import tuner.backends.optuna.backend as backend
backend.worker_context = lambda tracking=False: multiprocessing.get_context("spawn")
backend.start_worker_server = lambda tracking: None
from models.cli import run_cli
from tuner.cli import main
sys.argv = ["run_hyper.py", *sys.argv[1:]]
run_cli(main)
"""


def one_run(method: str, epochs: int, work: Path) -> dict:
    import optuna

    storage = f"sqlite:///{work / 'studies.db'}"
    args = ["--model", "GRU4Rec", "--params_file", str(ROOT / "search_spaces" / "quick.test"), f"--epochs={epochs}",
            "--workers", "2", "--storage", storage, "--study-name", "start", "--quiet",
            f"--mlflow-uri=sqlite:///{work / 'mlflow.db'}", "--output_file", str(work / "hyper.result")]
    entry = ["-c", SPAWN_ENTRY] if method == "spawn" else [str(ROOT / "run_hyper.py")]
    peak = [0.0]
    start = time.time()
    proc = subprocess.Popen([sys.executable, *entry, *args], cwd=work, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL)

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], sum(memory_mb(pid, "Pss") for pid in process_tree(proc.pid)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    if proc.wait() != 0:
        raise SystemExit(f"worker_start: the {method} run failed")
    wall = time.time() - start
    sampler.join()
    trials = optuna.load_study(study_name="start", storage=storage).trials
    firsts: dict[str, float] = {}
    for trial in trials:
        worker = str(trial.user_attrs.get("worker"))
        begun = trial.datetime_start.timestamp() - start
        firsts[worker] = min(firsts.get(worker, begun), begun)
    return {"method": method, "first_trial_s": round(min(firsts.values()), 2),
            "workers_ready_s": round(max(firsts.values()), 2), "wall_s": round(wall, 1),
            "peak_pss_mb": round(peak[0]), "workers": len(firsts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm"
        warm.mkdir()
        one_run("forkserver", args.epochs, warm)  # caches the plan's measurement and ml-100k's tensors
        for round_ in range(args.rounds):
            for method in METHODS if round_ % 2 == 0 else METHODS[::-1]:
                work = Path(tmp) / f"{method}-{round_}"
                work.mkdir()
                runs.append({"round": round_, **one_run(method, args.epochs, work)})
                print(json.dumps(runs[-1]), flush=True)
    summary = {method: {key: statistics.median(r[key] for r in runs if r["method"] == method)
                        for key in ("first_trial_s", "workers_ready_s", "wall_s", "peak_pss_mb")}
               for method in METHODS}
    OUT.write_text(json.dumps({"epochs": args.epochs, "cpus": os.cpu_count(), "runs": runs, "median": summary},
                              indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
