"""S3Rec's memory: one pretraining epoch and one fine-tuning epoch (ml-100k, RecBole's defaults: batch
2048, 2 layers, hidden 64), with ``low_memory`` off and on, each in a fresh process that pretrains from
scratch. Records the whole process's peak RSS, each stage's seconds and losses, and checks that the two
settings compute the same numbers (low_memory trades time for memory only).

    python bench/s3rec_memory.py [--threads 2] [--rounds 1]

Writes bench/results/s3rec_memory.json and prints the table for docs/performance.md. A timing: run it
alone on the machine (the two settings alternate, so drift hits both alike). RecBole's peak on the same
config comes from bench/results/speed_s3rec.json (bench/speed.py --model S3Rec, side by side).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "s3rec_memory.json"
# runs the command as a child and prints the child's peak RSS: the only process measured is the run
PEAK = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); sys.exit(code)")


def run_once(low_memory: bool, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        shared = Path(os.environ.get("SEQTUNE_CACHE", Path.home() / ".cache" / "seqtune")) / "datasets"
        if shared.exists():  # the fetched ml-100k files; the pretraining cache stays empty: it pretrains
            (cache / "datasets").symlink_to(shared, target_is_directory=True)
        result_json = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "models.train", "--model", "S3Rec", "--dataset", "ml-100k", "--quiet",
                   "--pretrain_epochs=1", "--epochs=1", f"--threads={threads}", f"--low_memory={low_memory}",
                   "--show_progress=false", f"--checkpoint_dir={tmp}/saved", f"--result_json={result_json}"]
        proc = subprocess.run([sys.executable, "-c", PEAK, *command], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "SEQTUNE_CACHE": str(cache), "PYTHONPATH": str(ROOT)}, check=True)
        result = json.loads(result_json.read_text())
    pretrain = result["pretrain"]
    return {"low_memory": low_memory, "peak_rss_mb": round(float(proc.stdout.strip().splitlines()[-1]), 1),
            "pretrain_seconds": round(pretrain["seconds"], 2), "pretrain_losses": pretrain["losses"],
            "finetune_seconds": round(result["train_seconds"], 2),
            "finetune_losses": [h["train_loss"] for h in result["history"]],
            "valid": result["best_valid_result"], "test": result["test_result"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    runs = [run_once(low, args.threads) for _ in range(args.rounds) for low in (False, True)]
    by_mode = {low: [r for r in runs if r["low_memory"] is low] for low in (False, True)}
    off, on = by_mode[False][0], by_mode[True][0]
    same = all(r[k] == off[k] for r in runs for k in ("pretrain_losses", "finetune_losses", "valid", "test"))

    def seconds(low: bool, key: str) -> float:
        return min(r[key] for r in by_mode[low])  # the least disturbed round

    recbole = json.loads((ROOT / "bench" / "results" / "speed_s3rec.json").read_text())["recbole"]
    summary = {
        "peak_rss_mb": {"low_memory_off": max(r["peak_rss_mb"] for r in by_mode[False]),
                        "low_memory_on": max(r["peak_rss_mb"] for r in by_mode[True]),
                        "recbole (speed_s3rec.json)": recbole["peak_rss_mb"]},
        "pretrain_epoch_ratio": seconds(True, "pretrain_seconds") / seconds(False, "pretrain_seconds"),
        "finetune_epoch_ratio": seconds(True, "finetune_seconds") / seconds(False, "finetune_seconds"),
        "same_numbers": same,
        "recbole_losses": {"pretrain": recbole["pretrain_losses"], "finetune": recbole["first_losses"]},
    }
    table = {"command": "python bench/s3rec_memory.py " + " ".join(sys.argv[1:]), "threads": args.threads,
             "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores", "summary": summary,
             "runs": runs}
    OUT.write_text(json.dumps(table, indent=1))
    peak = summary["peak_rss_mb"]
    print("| | low_memory off | low_memory on (default) | RecBole 1.2.1 |\n|---|---|---|---|")
    print(f"| peak RSS, pretrain + finetune epoch (MB) | {peak['low_memory_off']:.0f} | {peak['low_memory_on']:.0f} "
          f"| {peak['recbole (speed_s3rec.json)']:.0f} |")
    print(f"| pretraining epoch (s) | {seconds(False, 'pretrain_seconds'):.1f} | "
          f"{seconds(True, 'pretrain_seconds'):.1f} ({summary['pretrain_epoch_ratio']:.2f}x) | |")
    print(f"| fine-tuning epoch (s) | {seconds(False, 'finetune_seconds'):.1f} | "
          f"{seconds(True, 'finetune_seconds'):.1f} ({summary['finetune_epoch_ratio']:.2f}x) | |")
    print(f"| pretraining loss | {off['pretrain_losses'][0]:.4f} | {on['pretrain_losses'][0]:.4f} | "
          f"{recbole['pretrain_losses'][0]:.4f} |")
    print(f"| fine-tuning loss | {off['finetune_losses'][0]:.4f} | {on['finetune_losses'][0]:.4f} | "
          f"{recbole['first_losses'][0]:.4f} |")
    print(f"same numbers with and without low_memory: {same}")


if __name__ == "__main__":
    main()
