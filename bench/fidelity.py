"""Side-by-side fidelity: seqtune vs RecBole 1.2.1 on the same protocol, per seed, then a table.

    python bench/fidelity.py --model GRU4Rec --seeds 2020 2021 2022 [--recbole-seeds 2020] [--threads 1]
    python bench/fidelity.py --model KSR --seeds 2020 2021 2022 --epochs 5     # an epoch cap on both sides
    python bench/fidelity.py --model S3Rec --pretrain-epochs 1 --epochs 3     # RecBole's pretrain + finetune runs

Each run writes bench/results/fidelity_<tool>_<model>_seed<S>.json (an existing file is reused, so an
interrupted comparison resumes); RecBole runs in its own venv through bench/recbole_runner.py
(bench/setup_recbole.sh installs it). The table goes to bench/results/fidelity_<model>.json and is
printed as Markdown for docs/fidelity.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from recbole_env import recbole_env, recbole_model_args, recbole_python  # noqa: E402

RESULTS = ROOT / "bench" / "results"
KEYS = ("mrr@10", "ndcg@10", "recall@10")


def tag(model: str, seed: int, epochs: int | None, pretrain: int | None = None) -> str:
    return (f"{model.lower()}_seed{seed}" + (f"_pretrain{pretrain}" if pretrain is not None else "")
            + (f"_epochs{epochs}" if epochs else ""))


def run_ours(model: str, seed: int, threads: int, epochs: int | None, pretrain: int | None = None) -> dict:
    out = RESULTS / f"fidelity_seqtune_{tag(model, seed, epochs, pretrain)}.json"
    extra = [f"--epochs={epochs}"] if epochs else []
    if pretrain is not None:  # train_stage auto: RecBole's pretrain run, then its finetune run, in one call
        extra += ["--train_stage=auto", f"--pretrain_epochs={pretrain}", f"--save_step={max(pretrain, 1)}"]
    if not out.is_file():
        command = [sys.executable, "-m", "models.train", "--model", model, "--dataset", "ml-100k", f"--seed={seed}",
                   f"--threads={threads}", "--show_progress=false", "--quiet", "--result_json", str(out), *extra]
        subprocess.run(command, cwd=ROOT, check=True)
    return json.loads(out.read_text())


def run_recbole(model: str, seed: int, threads: int, epochs: int | None, pretrain: int | None = None) -> dict:
    out = RESULTS / f"fidelity_recbole_{tag(model, seed, epochs, pretrain)}.json"
    extra = ["--epochs", str(epochs)] if epochs else []
    if pretrain is not None:
        extra += ["--pretrain-epochs", str(pretrain)]
    if not out.is_file():
        command = [recbole_python(), "bench/recbole_runner.py", "--model", model, "--seed", str(seed),
                   "--threads", str(threads), "--out", str(out), *recbole_model_args(model), *extra]
        subprocess.run(command, cwd=ROOT, env=recbole_env(), check=True)
    return json.loads(out.read_text())


def summarize(model: str, ours: dict[int, dict], recbole: dict[int, dict]) -> dict:
    def mean(runs: dict[int, dict]) -> dict[str, float]:
        return {k: statistics.mean(r["test_result"][k] for r in runs.values()) for k in KEYS}

    ours_mean, recbole_mean = mean(ours), mean(recbole)
    return {
        "model": model,
        "seqtune": {s: {"test": r["test_result"], "best_epoch": r["best_epoch"], "epochs_run": r["epochs_run"],
                        "first_losses": [round(h["train_loss"], 4) for h in r["history"][:3]],
                        "pretrain_losses": [round(x, 4) for x in (r.get("pretrain") or {}).get("losses", [])],
                        "counts": r["data_summary"]} for s, r in ours.items()},
        "recbole": {s: {"test": r["test_result"], "best_epoch": r["best_epoch"], "epochs_run": r["epochs_run"],
                        "first_losses": [round(x, 4) for x in r["train_losses"][:3]],
                        "pretrain_losses": [round(x, 4) for x in (r.get("pretrain") or {}).get("train_losses", [])],
                        "counts": r["counts"]}
                    for s, r in recbole.items()},
        "mean_seqtune": ours_mean,
        "mean_recbole": recbole_mean,
        "relative_diff": {k: ours_mean[k] / recbole_mean[k] - 1 for k in KEYS},
    }


def markdown(summary: dict) -> str:
    staged = summary.get("pretrain_epochs") is not None
    pre_head, pre_rule = (" pretraining losses |", "---|") if staged else ("", "")
    lines = [f"| tool | seed |{pre_head} epochs run (best) | test MRR@10 | NDCG@10 | Recall@10 | first epoch losses |",
             f"|---|---|{pre_rule}---|---|---|---|---|"]
    pad = " |" if staged else ""
    for tool in ("recbole", "seqtune"):
        for seed, r in summary[tool].items():
            t = r["test"]
            losses = ", ".join(str(x) for x in r["first_losses"])
            pre = f" {', '.join(str(x) for x in r.get('pretrain_losses', []))} |" if staged else ""
            lines.append(f"| {tool} | {seed} |{pre} {r['epochs_run']} ({r['best_epoch']}) | {t['mrr@10']:.4f} | "
                         f"{t['ndcg@10']:.4f} | {t['recall@10']:.4f} | {losses} |")
    for tool in ("recbole", "seqtune"):
        m = summary[f"mean_{tool}"]
        lines.append(f"| **{tool} mean** | |{pad} | {m['mrr@10']:.4f} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | |")
    d = summary["relative_diff"]
    lines.append(f"| **relative diff** | |{pad} | {d['mrr@10']:+.2%} | {d['ndcg@10']:+.2%} | {d['recall@10']:+.2%} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="GRU4Rec")
    parser.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022])
    parser.add_argument("--recbole-seeds", type=int, nargs="*", default=None,
                        help="seeds to run RecBole for (default: all --seeds)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None, help="cap on training epochs, the same on both sides")
    parser.add_argument("--only", choices=("recbole", "seqtune"), default=None,
                        help="run one tool's missing runs and stop (two such processes can run side by side)")
    parser.add_argument("--pretrain-epochs", type=int, default=None,
                        help="S3Rec: pretrain this many epochs, then fine-tune (both tools)")
    parser.add_argument("--reference", default=None,
                        help="JSON of RecBole per-seed test results standing in for seeds not run here")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    recbole_seeds = args.seeds if args.recbole_seeds is None else args.recbole_seeds
    pre = args.pretrain_epochs
    if args.only:
        for seed in recbole_seeds if args.only == "recbole" else args.seeds:
            (run_recbole if args.only == "recbole" else run_ours)(args.model, seed, args.threads, args.epochs, pre)
        return
    recbole = {s: run_recbole(args.model, s, args.threads, args.epochs, pre) for s in recbole_seeds}
    if args.reference:
        for seed, row in json.loads(Path(args.reference).read_text()).items():
            recbole.setdefault(int(seed), row)
    ours = {s: run_ours(args.model, s, args.threads, args.epochs, pre) for s in args.seeds}
    summary = {**summarize(args.model, ours, recbole), "epochs_cap": args.epochs, "pretrain_epochs": pre}
    name = (args.model.lower() + (f"_pretrain{pre}" if pre is not None else "")
            + (f"_epochs{args.epochs}" if args.epochs else ""))
    (RESULTS / f"fidelity_{name}.json").write_text(json.dumps(summary, indent=1))
    print(markdown(summary))


if __name__ == "__main__":
    main()
