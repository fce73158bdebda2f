"""The four models on a CUDA device: trained, timed, and checked against the CPU for the same weights.

    python bench/gpu_check.py --epochs 3            # on a machine with a CUDA GPU

For each model (RecBole's defaults on ml-100k; S3Rec pretrains --pretrain-epochs first) it trains
through the library's one entry point, ``models.trainer.train``, with ``device: cuda`` and a best
checkpoint, and records each epoch's time, loss and valid MRR@10. It then loads that checkpoint into
a CPU model (``weights_only=True``) and into a CUDA one and evaluates both on the test set: the two
devices must agree (scores to float32 rounding, metrics to the 4th decimal up to a rare tie flip).
It also times the full-sort evaluation on the GPU. Writes bench/results/gpu_check.json and prints a
Markdown table; exits 2 with one line where there is no CUDA device.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.config import build_config  # noqa: E402
from models.trainer import EpochReport, Trainer, load_checkpoint, prepare, train  # noqa: E402

MODELS = ("GRU4Rec", "GRU4RecKG", "KSR", "S3Rec")


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def check_model(model: str, epochs: int, pretrain_epochs: int, eval_repeats: int, device: str) -> dict:
    overrides = {"device": device, "epochs": epochs, "show_progress": False, "seed": 2020}
    if model == "S3Rec":
        overrides |= {"pretrain_epochs": pretrain_epochs, "train_stage": "auto"}
    config = build_config(model, "ml-100k", overrides=overrides)
    epochs_log: list[dict] = []

    def record(report: EpochReport) -> None:
        epochs_log.append({"epoch": report.epoch, "train_s": report.train_seconds, "loss": report.train_loss,
                           "valid_s": report.valid_seconds, "valid_score": report.valid_score})

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "best.pth"
        tic = time.perf_counter()
        result = train(config, callback=record, checkpoint_path=checkpoint)
        wall = time.perf_counter() - tic
        on_device = {}
        for where in ("cpu", device):
            device_config = build_config(model, "ml-100k", overrides={**overrides, "device": where})
            data, net = prepare(device_config)
            load_checkpoint(checkpoint, net)
            trainer = Trainer(device_config, net, data)
            batch = next(iter(data.test.batches(device_config["eval_batch_size"]))).to(trainer.device)
            with torch.no_grad():
                net.eval()
                scores = net.full_sort_predict(batch).float().cpu()
            on_device[where] = {"test": trainer.evaluate(data.test), "scores": scores}
        times = []
        for _ in range(eval_repeats):  # the last trainer built is the device's
            synchronize(device)
            tic = time.perf_counter()
            trainer.evaluate(data.valid)
            synchronize(device)
            times.append(time.perf_counter() - tic)
    cpu, gpu = on_device["cpu"], on_device[device]
    score_diff = (cpu["scores"] - gpu["scores"]).abs().max().item()
    score_scale = cpu["scores"].abs().max().item()
    metric_diff = max(abs(cpu["test"][k] - gpu["test"][k]) for k in cpu["test"])
    losses = [e["loss"] for e in epochs_log]
    return {
        "model": model,
        "epochs": epochs_log,
        "pretrain": result.pretrain or None,
        "wall_s": wall,
        "train_epoch_median_s": statistics.median(e["train_s"] for e in epochs_log),
        "valid_eval_median_s": statistics.median(times),
        "best_valid_score": result.best_valid_score,
        "test_result_training": result.test_result,
        "test_result_cpu_reload": cpu["test"],
        "test_result_cuda_reload": gpu["test"],
        "max_score_diff_cpu_vs_cuda": score_diff,
        "max_score_abs": score_scale,
        "max_metric_diff_cpu_vs_cuda": metric_diff,
        "checks": {
            "losses_finite": all(math.isfinite(x) for x in losses),
            "loss_falls": len(losses) < 2 or losses[-1] < losses[0],
            "reload_matches_training_test": gpu["test"] == result.test_result,
            "cpu_scores_match_cuda": score_diff <= 1e-4 * max(1.0, score_scale),
            "cpu_metrics_match_cuda": metric_diff <= 2e-3,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--pretrain-epochs", type=int, default=2, help="S3Rec's pretraining epochs")
    parser.add_argument("--eval-repeats", type=int, default=10)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--device", default="cuda", help="cuda; cpu only to try the script out without a GPU")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_check.json"))
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine", file=sys.stderr)
        raise SystemExit(2)
    rows = []
    for model in args.models:
        row = check_model(model, args.epochs, args.pretrain_epochs, args.eval_repeats, args.device)
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("model", "train_epoch_median_s", "valid_eval_median_s", "checks")}),
              flush=True)
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu"
    summary = {"device": name, "torch": torch.__version__, "python": platform.python_version(),
               "epochs": args.epochs, "pretrain_epochs": args.pretrain_epochs, "models": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1))
    print(f"\n{summary['device']}, torch {summary['torch']}, {args.epochs} epochs\n")
    print("| model | train epoch (s, median) | full-sort eval, valid (s) | losses | best valid MRR@10 | "
          "CPU vs CUDA: max score diff / metric diff | checks |\n|---|---|---|---|---|---|---|")
    for row in rows:
        losses = ", ".join(f"{e['loss']:.2f}" for e in row["epochs"])
        passed = all(row["checks"].values())
        print(f"| {row['model']} | {row['train_epoch_median_s']:.2f} | {row['valid_eval_median_s']:.4f} | {losses} | "
              f"{row['best_valid_score']:.4f} | {row['max_score_diff_cpu_vs_cuda']:.1e} / "
              f"{row['max_metric_diff_cpu_vs_cuda']:.4f} | {'pass' if passed else 'FAIL: ' + str(row['checks'])} |")
    if not all(all(row["checks"].values()) for row in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
