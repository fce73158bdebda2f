"""Speed, side by side with RecBole 1.2.1 on one machine: alternate the two tools, same config and threads.

    python bench/speed.py --model GRU4Rec --rounds 2 --epochs 2 --threads 2
    python bench/speed.py --model S3Rec --rounds 1 --pretrain-epochs 1 --epochs 1   # both S3Rec stages

Writes bench/results/speed_<model>.json and prints the Markdown table for docs/performance.md.
Run it alone on the machine: two heavy processes on 2 cores slow each other down ~1.5x.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from eval_server import EvalClient, paired_blocks  # noqa: E402
from recbole_env import recbole_env, recbole_model_args, recbole_python  # noqa: E402


def runner(tool: str, model: str, epochs: int, threads: int, repeats: int, seed: int, pretrain: int | None,
           out: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment of one tool's runner (bench/recbole_runner.py, bench/seqtune_runner.py)."""
    stages = ["--pretrain-epochs", str(pretrain)] if pretrain is not None else []
    common = ["--model", model, "--seed", str(seed), "--threads", str(threads), "--epochs", str(epochs),
              "--eval-repeats", str(repeats), "--out", out, *stages]
    if tool == "recbole":
        return [recbole_python(), "bench/recbole_runner.py", *common, *recbole_model_args(model)], recbole_env()
    return [sys.executable, "bench/seqtune_runner.py", *common], dict(os.environ)


def run_round(args: argparse.Namespace) -> dict[str, dict]:
    """One round: RecBole's runner, then seqtune's, each to completion (separate) or, paired, each left
    up after training to serve evaluations in alternating blocks (bench/eval_server.py)."""
    outs = {}
    for tool in ("recbole", "seqtune"):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
            outs[tool] = handle.name
    commands = {tool: runner(tool, args.model, args.epochs, args.threads, args.eval_repeats, args.seed,
                             args.pretrain_epochs, outs[tool]) for tool in outs}
    blocks: dict[str, list] = {}  # paired mode: each tool's evaluation blocks, in order
    if args.eval_mode == "separate":
        for command, env in commands.values():
            subprocess.run(command, cwd=ROOT, env=env, check=True)
    else:
        clients = {}
        try:
            for tool, (command, env) in commands.items():  # one at a time: the other waits, idle, on stdin
                clients[tool] = EvalClient([*command, "--serve-eval"], cwd=str(ROOT), env=env)
            blocks["recbole"], blocks["seqtune"] = paired_blocks(clients["recbole"], clients["seqtune"],
                                                                  args.eval_blocks, args.eval_per_block)
        finally:
            for client in clients.values():
                client.close()
    results = {tool: json.loads(Path(out).read_text()) for tool, out in outs.items()}
    for tool, tool_blocks in blocks.items():
        results[tool]["eval_blocks"] = tool_blocks
    for out in outs.values():
        os.unlink(out)
    return results


def epoch_times(result: dict) -> list[float]:
    return [e["train_s"] for e in result["epochs"]]


def paired_eval_ratios(runs: dict[str, list[dict]]) -> list[float]:
    """seqtune's median over RecBole's, block by adjacent block, over every round."""
    ratios = []
    for rb, st in zip(runs["recbole"], runs["seqtune"], strict=True):
        for rb_block, st_block in zip(rb.get("eval_blocks", []), st.get("eval_blocks", []), strict=True):
            ratios.append(statistics.median(st_block) / statistics.median(rb_block))
    return ratios


def eval_time(result: dict) -> float:
    timing = result["timing"]
    if result["tool"] == "recbole":
        return timing["eval_repeats"]["median_s"]
    return timing["valid_eval_median_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="GRU4Rec")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-repeats", type=int, default=20, help="separate mode: evaluations timed per run")
    parser.add_argument("--eval-mode", choices=("paired", "separate"), default=None,
                        help="paired (default; separate for S3Rec's two stages): both runners stay up after "
                             "training and evaluate in alternating blocks; separate: each times its own "
                             "--eval-repeats evaluations, minutes apart")
    parser.add_argument("--eval-blocks", type=int, default=20, help="paired mode: blocks per tool and round")
    parser.add_argument("--eval-per-block", type=int, default=3, help="paired mode: evaluations per block")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--pretrain-epochs", type=int, default=None,
                        help="S3Rec: time this many pretraining epochs before the fine-tuning epochs")
    args = parser.parse_args()
    if args.eval_mode is None:  # two S3Rec processes after pretraining do not fit in this machine's memory
        args.eval_mode = "separate" if args.pretrain_epochs is not None else "paired"
    runs: dict[str, list[dict]] = {"recbole": [], "seqtune": []}
    for _ in range(args.rounds):  # alternate, so drift on the machine hits both tools alike
        for tool, result in run_round(args).items():
            runs[tool].append(result)

    def agg(tool: str) -> dict:
        results = runs[tool]
        return {
            "train_epoch_s": statistics.median(t for r in results for t in epoch_times(r)),
            "eval_s": statistics.median(eval_time(r) for r in results),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "compute_floor_s": (statistics.median(r["timing"]["compute_floor_s"] for r in results)
                                if tool == "seqtune" else None),
            "first_losses": [round(e["train_loss"], 4) for e in results[0]["epochs"]],
            **({"pretrain_epoch_s": statistics.median(e["train_s"] for r in results
                                                      for e in r["pretrain"]["epochs_log"]),
                "pretrain_peak_rss_mb": max(r["pretrain"]["peak_rss_mb"] for r in results),
                "pretrain_losses": [round(x, 4) for x in results[0]["pretrain"]["train_losses"]]}
               if args.pretrain_epochs is not None else {}),
        }

    rb, st = agg("recbole"), agg("seqtune")
    block_ratios = paired_eval_ratios(runs)
    deciles = statistics.quantiles(block_ratios, n=10) if len(block_ratios) > 1 else []
    summary = {
        "model": args.model, "threads": args.threads, "epochs_per_run": args.epochs, "rounds": args.rounds,
        "eval_mode": args.eval_mode,
        "eval_block_ratios": {"n": len(block_ratios), "median": statistics.median(block_ratios) if block_ratios
                              else None, "p10": deciles[0] if deciles else None,
                              "p90": deciles[-1] if deciles else None, "all": block_ratios},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "recbole": rb, "seqtune": st,
        "ratios": {
            "train_epoch": st["train_epoch_s"] / rb["train_epoch_s"],
            # paired: the median of block-by-block ratios; separate: the ratio of the two medians
            "eval": statistics.median(block_ratios) if block_ratios else st["eval_s"] / rb["eval_s"],
            "eval_of_medians": st["eval_s"] / rb["eval_s"],
            "epoch_over_floor": st["train_epoch_s"] / st["compute_floor_s"],
            "peak_rss": st["peak_rss_mb"] / rb["peak_rss_mb"],
            **({"pretrain_epoch": st["pretrain_epoch_s"] / rb["pretrain_epoch_s"]} if args.pretrain_epochs is not None
               else {}),
        },
        "runs": runs,
    }
    out = ROOT / "bench" / "results" / f"speed_{args.model.lower()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    r = summary["ratios"]
    eval_note = (f" (median of {len(block_ratios)} paired blocks; 10-90 %: {deciles[0]:.2f}-{deciles[-1]:.2f}x)"
                 if deciles else "")
    print(f"| measure | RecBole 1.2.1 | seqtune | ratio | target |\n|---|---|---|---|---|\n"
          f"| train epoch (s, median) | {rb['train_epoch_s']:.2f} | {st['train_epoch_s']:.2f} | "
          f"{r['train_epoch']:.2f}x | <= 0.5x |\n"
          f"| full-sort eval, valid (s, median) | {rb['eval_s']:.4f} | {st['eval_s']:.4f} | "
          f"{r['eval']:.2f}x{eval_note} | <= 0.5x |\n"
          f"| epoch / compute floor | | {st['train_epoch_s']:.2f} / {st['compute_floor_s']:.2f} | "
          f"{r['epoch_over_floor']:.2f}x | <= 1.15x |\n"
          f"| peak RSS (MB) | {rb['peak_rss_mb']:.0f} | {st['peak_rss_mb']:.0f} | {r['peak_rss']:.2f}x | <= 1x |\n"
          f"| first epoch losses | {rb['first_losses']} | {st['first_losses']} | | identical |")
    if args.pretrain_epochs is not None:
        print(f"| pretraining epoch (s, median) | {rb['pretrain_epoch_s']:.2f} | {st['pretrain_epoch_s']:.2f} | "
              f"{r['pretrain_epoch']:.2f}x | <= 0.5x |\n"
              f"| pretraining peak RSS (MB) | {rb['pretrain_peak_rss_mb']:.0f} | "
              f"{st['pretrain_peak_rss_mb']:.0f} | | |\n"
              f"| pretraining losses | {rb['pretrain_losses']} | {st['pretrain_losses']} | | equal |")


if __name__ == "__main__":
    main()
