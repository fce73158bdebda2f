"""Time seqtune's training epochs, full-sort evaluation and the compute floor, as JSON.

    python bench/seqtune_runner.py --model GRU4Rec --epochs 2 --threads 2 --eval-repeats 20 --out r.json

The compute floor is forward + backward + optimizer step over the same batches (the next epoch's
order) pre-built as contiguous tensors, in a bare loop: what an epoch costs with zero pipeline
overhead. The trainer's epoch time divided by it is the pipeline's overhead factor.

S3Rec with --pretrain-epochs E: first E pretraining epochs (timed one by one, no cache), then the
fine-tuning epochs from those weights after init_seed, as train_stage auto runs them.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch


def pretrain_then_rebuild(config, model, data, epochs: int) -> tuple[torch.nn.Module, dict]:
    """Time ``epochs`` pretraining epochs of ``model``; return the fine-tuning model built on its weights."""
    from models.pretrain import finetune_model, pretrain_config, run_epochs
    from models.trainer import Trainer

    log = []

    def record(epoch: int, loss: float, seconds: float) -> None:
        log.append({"epoch": epoch, "train_s": seconds, "train_loss": loss})
        print(f"seqtune {config.model} pretrain epoch {epoch}: loss {loss:.4f}, {seconds:.2f}s", flush=True)

    run_epochs(Trainer(pretrain_config(config), model, data), 0, epochs, record)
    times = [e["train_s"] for e in log]
    return finetune_model(model, model.state_dict(), data), {
        "epochs": epochs, "epochs_log": log, "train_losses": [e["train_loss"] for e in log],
        "train_epoch_median_s": statistics.median(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="GRU4Rec")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-repeats", type=int, default=20)
    parser.add_argument("--serve-eval", action="store_true",
                        help="after training, serve timed evaluations of the valid set on stdin/stdout "
                             "(bench/eval_server.py) instead of --eval-repeats")
    parser.add_argument("--floor-repeats", type=int, default=1)
    parser.add_argument("--pretrain-epochs", type=int, default=None, help="S3Rec: pretraining epochs to time first")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    tic = time.perf_counter()
    from models.config import build_config
    from models.data.sequential import load_sequential_data
    from models.trainer import Trainer, prepare

    import_s = time.perf_counter() - tic
    config = build_config(args.model, args.dataset, overrides={"seed": args.seed, "threads": args.threads,
                                                               "show_progress": False, "device": "cpu"})
    tic = time.perf_counter()
    data = load_sequential_data(config)
    data_s = time.perf_counter() - tic
    data, model = prepare(config, data)
    pretrain = None
    if args.pretrain_epochs is not None:
        model, pretrain = pretrain_then_rebuild(config, model, data, args.pretrain_epochs)
    trainer = Trainer(config, model, data)
    epochs = []
    for epoch in range(args.epochs):
        tic = time.perf_counter()
        loss = trainer.train_epoch(epoch)
        train_s = time.perf_counter() - tic
        tic = time.perf_counter()
        valid = trainer.evaluate(data.valid)
        epochs.append({"epoch": epoch, "train_s": train_s, "valid_s": time.perf_counter() - tic,
                       "train_loss": loss, "valid": valid})

    if args.serve_eval:
        from eval_server import serve  # bench/ is this script's directory

        eval_times = serve(lambda: trainer.evaluate(data.valid))
    else:
        eval_times = []
        for _ in range(args.eval_repeats):
            tic = time.perf_counter()
            trainer.evaluate(data.valid)
            eval_times.append(time.perf_counter() - tic)

    # compute floor: the next epoch's batches, pre-built, in a bare loop
    floor_times = []
    for _ in range(args.floor_repeats):
        order = trainer.shuffler.epoch_order()
        size = config["train_batch_size"]
        batches = [data.train.batch(order[i : i + size]) for i in range(0, len(order), size)]
        for batch in batches:  # materialize: contiguous tensors, nothing left to gather
            batch.item_seq, batch.item_length, batch.target = (
                batch.item_seq.contiguous(), batch.item_length.contiguous(), batch.target.contiguous())
        model.train()
        optimizer = trainer.optimizer
        tic = time.perf_counter()
        for batch in batches:
            optimizer.zero_grad()
            loss = model.calculate_loss(batch)
            loss.backward()
            optimizer.step()
        floor_times.append(time.perf_counter() - tic)

    result = {
        "tool": "seqtune",
        "model": args.model,
        "dataset": args.dataset,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "counts": {**data.summary(), "train_batches": len(range(0, len(data.train), config["train_batch_size"]))},
        "epochs": epochs,
        "pretrain": pretrain,
        "timing": {
            "import_s": import_s,
            "data_s": data_s,
            "train_epoch_median_s": statistics.median(e["train_s"] for e in epochs),
            "valid_eval_median_s": statistics.median(eval_times) if eval_times else None,
            "compute_floor_s": min(floor_times) if floor_times else None,
        },
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=1)
    t = result["timing"]
    print(f"seqtune {args.model}: epoch {t['train_epoch_median_s']:.2f}s, eval {t['valid_eval_median_s']:.4f}s, "
          f"floor {t['compute_floor_s']:.2f}s, peak RSS {result['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
