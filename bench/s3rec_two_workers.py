"""Two S3Rec workers on one machine: the whole study's RSS while two pretrainings run at once (issue 16).

    python bench/s3rec_two_workers.py [--space bench/spaces/s3rec_two_pretrainings.test] \
        [--seconds 420] [--low-memory on|off]

Runs ``run_hyper.py --model S3Rec --params_file SPACE --workers 2 --low_memory=...`` with an empty
pretraining cache, so both workers pretrain from scratch; samples the RSS of the driver and every process
under it every 0.2 s; after --seconds stops the study as a terminal's Ctrl-C does (SIGINT to its process
group) and checks that it exits cleanly with its results written. Pretraining is S3Rec's peak (four
encoder passes per batch), and the peak is reached within the first steps, so a few minutes show the
study's footprint. The seed space (S3Rec.test) shares one pretraining key across its 3 points, so its
workers take turns pretraining (one pretrains while the other waits or fine-tunes); the default space
here has two keys, so two pretrainings run at once: the worst case for two workers. Writes
bench/results/s3rec_two_workers.json. The seconds are not a timing (the machine may be shared); the RSS
is what this measures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from procmem import memory_mb, process_tree  # noqa: E402

OUT = ROOT / "bench" / "results" / "s3rec_two_workers.json"


def run(space: Path, seconds: float, low_memory: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        shared = Path(os.environ.get("SEQTUNE_CACHE", Path.home() / ".cache" / "seqtune")) / "datasets"
        if shared.exists():  # the fetched ml-100k files; the pretraining cache stays empty
            (cache / "datasets").symlink_to(shared, target_is_directory=True)
        output = Path(tmp) / "hyper.result"
        command = [sys.executable, str(ROOT / "run_hyper.py"), "--model", "S3Rec", "--params_file", str(space),
                   "--workers", "2", f"--low_memory={low_memory}", "--no-mlflow", "--storage",
                   f"sqlite:///{tmp}/study.db", "--output_file", str(output)]
        env = {**os.environ, "SEQTUNE_CACHE": str(cache)}
        log = Path(tmp) / "log.txt"
        with log.open("w") as handle:
            # a terminal's session: its own process group, and Ctrl-C not ignored even when this script
            # was started in the background (where the shell ignores SIGINT and children inherit that)
            study = subprocess.Popen(command, cwd=tmp, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                     start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            peak_total, peak_by_pid, samples, tic = 0.0, {}, [], time.perf_counter()
            while study.poll() is None and time.perf_counter() - tic < seconds:
                by_pid = {pid: memory_mb(pid) for pid in process_tree(study.pid)}
                total = sum(by_pid.values())
                peak_total = max(peak_total, total)
                for pid, value in by_pid.items():
                    peak_by_pid[pid] = max(peak_by_pid.get(pid, 0.0), value)
                samples.append((round(time.perf_counter() - tic, 1), round(total)))
                time.sleep(0.2)
            finished_early = study.poll() is not None
            os.killpg(study.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole process group
            try:
                code = study.wait(timeout=300)
            except subprocess.TimeoutExpired:
                os.killpg(study.pid, signal.SIGKILL)
                code = study.wait()
        text = log.read_text()
        workers = sorted((value for pid, value in peak_by_pid.items() if pid != study.pid), reverse=True)
        return {"command": " ".join(command[1:]), "low_memory": low_memory, "seconds": seconds,
                "finished_before_the_stop": finished_early, "exit_code_after_ctrl_c": code,
                "results_written": output.is_file(), "peak_total_rss_mb": round(peak_total),
                "peak_rss_mb_largest_processes": [round(v) for v in workers[:4]],
                "pretraining_lines": [line for line in text.splitlines() if "pretrain" in line.lower()][-6:],
                "last_lines": text.splitlines()[-4:], "rss_samples_every_10th": samples[::10]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", type=Path, default=ROOT / "bench" / "spaces" / "s3rec_two_pretrainings.test")
    parser.add_argument("--seconds", type=float, default=420.0)
    parser.add_argument("--low-memory", choices=["on", "off"], default="on")
    args = parser.parse_args()
    result = run(args.space.resolve(), args.seconds, args.low_memory == "on")
    result["machine"] = {"platform": platform.platform(), "cores": len(os.sched_getaffinity(0)),
                         "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    results[f"{args.space.name}, low_memory {args.low_memory}"] = result
    OUT.write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "rss_samples_every_10th"}, indent=1))


if __name__ == "__main__":
    main()
