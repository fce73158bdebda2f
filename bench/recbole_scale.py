"""One stage of bench/scale.py on RecBole 1.2.1's side, as JSON (run with RecBole's venv python).

    $RECBOLE_PY bench/recbole_scale.py --stage cold|save|cached --model GRU4Rec --dataset synth-ml-1m \
        --data-path DIR --config-file synth.yaml --cache-dir C --threads 2 --batches 30 --out r.json

cold    Config, create_dataset and data_preparation from the atomic files, timed; nothing saved.
save    the same with save_dataset / save_dataloaders into --cache-dir (RecBole's own cache), untimed.
cached  RecBole's cached load (dataset_save_path, dataloaders_save_path), timed; then the model, --warmup
        training steps, --batches timed steps (samples/s), and full-sort evaluations of the valid users.

The training steps are RecBole's Trainer._train_epoch step (interaction.to(device), zero_grad,
calculate_loss, backward, optimizer.step) over its own shuffled train dataloader, cut after a fixed
number of batches so a large dataset's run stays in minutes. Peak RSS is the process's ru_maxrss.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recbole_runner import build_run  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def train_throughput(trainer, train_data, warmup: int, batches: int) -> dict:
    """Samples per second over ``batches`` of RecBole's training steps, after ``warmup`` untimed ones."""
    model, optimizer, device = trainer.model, trainer.optimizer, trainer.device
    model.train()
    samples, tic = 0, None
    for index, interaction in enumerate(train_data):
        if index == warmup:
            tic = time.perf_counter()
        interaction = interaction.to(device)
        optimizer.zero_grad()
        loss = model.calculate_loss(interaction)
        loss.backward()
        optimizer.step()
        if index >= warmup:
            samples += len(interaction)
        if index + 1 == warmup + batches:
            break
    seconds = time.perf_counter() - tic
    return {"batches": index + 1 - warmup, "samples": samples, "seconds": seconds, "samples_per_s": samples / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=["cold", "save", "cached", "serve"], required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-path", default=None, help="the folder of <dataset>.inter etc. (default: RecBole's)")
    parser.add_argument("--config-file", default=None)
    parser.add_argument("--kg-vectors", default=None, help="directory of <dataset>.ent/.rel (KG models)")
    parser.add_argument("--cache-dir", required=True, help="where 'save' writes and 'cached' reads")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--eval-passes", type=int, default=2, help="timed full-sort passes; the fastest counts")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config parses sys.argv too
    out = os.path.abspath(args.out)
    config_file = os.path.abspath(args.config_file) if args.config_file else None
    data_path = os.path.abspath(args.data_path) if args.data_path else None
    cache = os.path.abspath(args.cache_dir)
    os.makedirs(cache, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="recbole_scale_")
    os.chdir(workdir)  # RecBole writes ./log and ./log_tensorboard

    import torch

    torch.set_num_threads(args.threads)
    config_dict = {"seed": args.seed, "train_neg_sample_args": None, "show_progress": False,
                   "checkpoint_dir": cache if args.stage == "save" else os.path.join(workdir, "saved")}
    if args.stage == "save":
        config_dict.update(save_dataset=True, save_dataloaders=True)
    if args.stage in ("cached", "serve"):
        config_dict.update(
            dataset_save_path=os.path.join(cache, f"{args.dataset}-{dataset_class_name(args.model)}.pth"),
            dataloaders_save_path=os.path.join(cache, f"{args.dataset}-for-{args.model}-dataloader.pth"))
        for key in ("dataset_save_path", "dataloaders_save_path"):
            if not os.path.isfile(config_dict[key]):
                raise SystemExit(f"recbole_scale.py: {config_dict[key]} is missing: run --stage save first")
    run_args = argparse.Namespace(model=args.model, dataset=args.dataset, kg_vectors=args.kg_vectors,
                                  no_flops=True, verbose=False)
    config, dataset, (train_data, valid_data, _), trainer, _, data_s = build_run(
        run_args, config_dict, config_file, data_path, workdir)
    result = {"tool": "recbole", "stage": args.stage, "model": args.model, "dataset": args.dataset,
              "threads": torch.get_num_threads(), "torch_version": torch.__version__,
              "prep_s": data_s, "prep_peak_rss_mb": peak_rss_mb(),
              "counts": {"users": dataset.user_num - 1, "items": dataset.item_num - 1,
                         "interactions": dataset.inter_num, "train_samples": len(train_data._dataset),
                         "valid_users": len(valid_data._dataset), "train_batch_size": config["train_batch_size"]}}
    if args.stage in ("cached", "serve"):
        result["train"] = train_throughput(trainer, train_data, args.warmup, args.batches)
    if args.stage == "serve":  # timed evaluations on request, in blocks alternating with seqtune's
        from eval_server import serve

        serve(lambda: trainer.evaluate(valid_data, load_best_model=False, show_progress=False))
    elif args.stage == "cached":
        passes = []
        for _ in range(args.eval_passes):
            tic = time.perf_counter()
            trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
            passes.append(time.perf_counter() - tic)
        result["eval_s"] = min(passes)
        result["eval_passes_s"] = passes
    result["peak_rss_mb"] = peak_rss_mb()
    with open(out + ".tmp", "w") as handle:
        json.dump(result, handle, indent=1)
    os.replace(out + ".tmp", out)


def dataset_class_name(model: str) -> str:
    """The dataset class create_dataset picks (it names RecBole's saved-dataset file)."""
    import importlib

    from recbole.utils import get_model

    if hasattr(importlib.import_module("recbole.data.dataset"), model + "Dataset"):
        return model + "Dataset"
    model_type = get_model(model).type.name
    return "KnowledgeBasedDataset" if model_type == "KNOWLEDGE" else "SequentialDataset"


if __name__ == "__main__":
    main()
