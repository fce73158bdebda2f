"""Train and evaluate one RecBole 1.2.1 model, recording timings and results as JSON.

Run with the RecBole venv's python (bench/setup_recbole.sh installs it), never the project's:

    PYTHONPATH=$HOME/raystub TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 \
    PYTHONWARNINGS=ignore::FutureWarning \
    $HOME/recbole-venv/bin/python bench/recbole_runner.py \
        --model GRU4Rec --dataset ml-100k --seed 2020 --threads 1 \
        --out bench/results/recbole_gru4rec_seed2020.json

The run follows recbole.quick_start.run_recbole step by step (Config, init_seed, create_dataset,
data_preparation, init_seed, model, get_flops, Trainer.fit(saved=True), evaluate(load_best_model=True)),
so its losses and metrics are those of RecBole's own entry point. get_flops is kept because it runs a
forward pass of a train-mode copy of the model, which draws from the RNG (dropout) and so shifts every
later random number; --no-flops skips it (results then differ from run_recbole's).

With --pretrain-epochs E (S3Rec) it first runs RecBole's pretrain run (train_stage pretrain,
pretrain_epochs E, save_step E) the same way, then the finetune run (train_stage finetune,
pre_model_path = that checkpoint) from a fresh Config, init_seed and dataset, as a second process
would; the pretraining losses and epoch times are recorded under "pretrain".

Per epoch it times Trainer._train_epoch and Trainer._valid_epoch separately (time.perf_counter). Logs,
tensorboard files and checkpoints go to a temporary directory that is deleted at the end; nothing is
written into the repository except --out.
"""
import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="RecBole model name, e.g. GRU4Rec")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--epochs", type=int, default=None, help="cap on training epochs (default: RecBole's 300)")
    p.add_argument("--config-file", default=None, help="YAML file of extra RecBole config")
    p.add_argument("--data-path", default=None,
                   help="directory set as config['data_path'] after Config is built "
                        "(RecBole hard-wires it for ml-100k; see recbole-reference.md problem 6)")
    p.add_argument("--kg-vectors", default=None,
                   help="directory holding <dataset>.ent/.rel (seqtune's TransE output): builds a data dir of "
                        "the dataset's atomic files plus these, with the KG config of recbole-reference.md")
    p.add_argument("--pretrain-epochs", type=int, default=None,
                   help="S3Rec: RecBole's two runs in one process: train_stage pretrain for this many epochs "
                        "(a checkpoint at the end), then train_stage finetune from it, re-seeded as a fresh run")
    p.add_argument("--eval-repeats", type=int, default=0,
                   help="after training, time N full-sort evaluations of the valid set and record the median")
    p.add_argument("--serve-eval", action="store_true",
                   help="after training, serve timed evaluations of the valid set on stdin/stdout "
                        "(bench/eval_server.py; bench/speed.py pairs them with seqtune's) instead of --eval-repeats")
    p.add_argument("--no-flops", action="store_true",
                   help="skip get_flops (changes the RNG stream vs run_recbole)")
    p.add_argument("--verbose", action="store_true", help="show RecBole's own INFO log on stdout")
    p.add_argument("--out", required=True, help="JSON output path")
    return p.parse_args(argv)


# recbole-reference.md problems 7 and 9: the sequential split and the KG tables, by the names the models read
KG_CONFIG = {
    "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"], "kg": ["head_id", "relation_id", "tail_id"],
                 "link": ["item_id", "entity_id"], "ent": ["ent_id", "ent_emb"], "rel": ["rel_id", "rel_emb"]},
    "alias_of_entity_id": ["ent_id"],
    "alias_of_relation_id": ["rel_id"],
    "preload_weight": {"ent_id": "ent_emb", "rel_id": "rel_emb"},
    "additional_feat_suffix": ["ent", "rel"],
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
}


def _kg_data_dir(source: str, vectors: str, dataset: str, workdir: str) -> str:
    """The dataset's atomic files (symlinked) plus the .ent/.rel vectors, in one directory RecBole reads."""
    target = os.path.join(workdir, "data", dataset)
    os.makedirs(target, exist_ok=True)  # a pretrain and a finetune run build it in turn
    for folder, suffixes in ((source, None), (vectors, (".ent", ".rel"))):
        for name in os.listdir(folder):
            if name.startswith(dataset + ".") and (suffixes is None or name.endswith(suffixes)):
                dest = os.path.join(target, name)
                if os.path.lexists(dest):
                    os.remove(dest)
                os.symlink(os.path.join(folder, name), dest)
    return target


def _num(x):
    """Make RecBole values (numpy / torch scalars, tuples) JSON-friendly."""
    if isinstance(x, dict):
        return {str(k): _num(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_num(v) for v in x]
    if hasattr(x, "item"):
        return x.item()
    return x


def build_run(args, config_dict, config_file, data_path, workdir):
    """run_recbole's steps up to the trainer: Config, init_seed, dataset, dataloaders, init_seed,
    model, get_flops, trainer. Returns (config, dataset, (train, valid, test), trainer, flops, data_s)."""
    import logging
    from logging import getLogger

    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.data.transform import construct_transform
    from recbole.utils import get_flops, get_model, get_trainer, init_logger, init_seed

    t0 = time.perf_counter()
    if args.kg_vectors:
        config_dict = {**config_dict, **KG_CONFIG}
    config = Config(model=args.model, dataset=args.dataset,
                    config_file_list=[config_file] if config_file else None,
                    config_dict=config_dict)
    if args.kg_vectors:
        data_path = _kg_data_dir(data_path or config["data_path"], os.path.abspath(args.kg_vectors), args.dataset,
                                 workdir)
    if data_path:
        config["data_path"] = data_path
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    if not args.verbose:
        for h in getLogger().handlers:
            if not isinstance(h, logging.FileHandler):
                h.setLevel(logging.WARNING)

    dataset = create_dataset(config)
    loaders = data_preparation(config, dataset)
    data_s = time.perf_counter() - t0

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, loaders[0]._dataset).to(config["device"])
    if hasattr(model, "relation_Matrix"):  # KSR builds it float64 from the .rel file (problem 8)
        model.relation_Matrix = model.relation_Matrix.float()
    flops = None
    if not args.no_flops:
        flops = get_flops(model, dataset, config["device"], getLogger(), construct_transform(config))
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return config, dataset, loaders, trainer, flops, data_s


def time_train_epochs(trainer, log):
    """Shadow trainer._train_epoch so that each epoch appends {epoch, train_s, train_loss} to ``log``."""
    orig_train = trainer._train_epoch

    def timed_train(train_data, epoch_idx, *a, **k):
        s = time.perf_counter()
        loss = orig_train(train_data, epoch_idx, *a, **k)
        log.append({"epoch": epoch_idx, "train_s": time.perf_counter() - s, "train_loss": _num(loss)})
        return loss

    trainer._train_epoch = timed_train


def run_pretrain_stage(args, config_dict, config_file, data_path, workdir):
    """RecBole's pretrain run (run_recbole's steps up to Trainer.fit), with each epoch timed."""
    epochs = args.pretrain_epochs
    config_dict = {**config_dict, "train_stage": "pretrain", "pretrain_epochs": epochs, "save_step": epochs}
    t0 = time.perf_counter()
    config, _, (train_data, valid_data, _), trainer, _, _ = build_run(args, config_dict, config_file, data_path,
                                                                     workdir)
    setup_s = time.perf_counter() - t0
    epochs_log = []
    time_train_epochs(trainer, epochs_log)
    t0 = time.perf_counter()
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    checkpoint = os.path.join(config["checkpoint_dir"], f"{args.model}-{args.dataset}-{epochs}.pth")
    times = [e["train_s"] for e in epochs_log]
    losses = [round(e["train_loss"], 4) for e in epochs_log]
    print(f"{args.model} pretrain seed={args.seed} epochs={epochs} losses={losses} "
          f"epoch={statistics.fmean(times):.1f}s", flush=True)
    return {"epochs": epochs, "checkpoint": checkpoint, "train_losses": [e["train_loss"] for e in epochs_log],
            "epochs_log": epochs_log, "setup_s": setup_s, "fit_s": time.perf_counter() - t0,
            "train_epoch_mean_s": statistics.fmean(times), "train_epoch_median_s": statistics.median(times),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None):
    args = parse_args(argv)
    orig_argv = list(sys.argv)
    # RecBole's Config also parses sys.argv ("--key=value" would override its config): hide ours.
    sys.argv = sys.argv[:1]
    out_path = os.path.abspath(args.out)
    config_file = os.path.abspath(args.config_file) if args.config_file else None
    data_path = os.path.abspath(args.data_path) if args.data_path else None
    # RecBole writes ./log and ./log_tensorboard relative to the cwd: run inside a temp dir.
    workdir = tempfile.mkdtemp(prefix="recbole_run_")
    os.chdir(workdir)
    t_start = time.perf_counter()

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    import recbole
    import recbole.config
    import recbole.data
    import recbole.data.transform
    import recbole.utils  # noqa: F401  (imported here so that import_s times them, as before)
    t_import = time.perf_counter() - t_start

    config_dict = {
        "seed": args.seed,
        "train_neg_sample_args": None,   # CE loss (recbole-reference.md problem 4)
        "checkpoint_dir": os.path.join(workdir, "saved"),
        "show_progress": False,
    }
    pretrain = None
    if args.pretrain_epochs is not None:
        pretrain = run_pretrain_stage(args, config_dict, config_file, data_path, workdir)
        config_dict.update(train_stage="finetune", pre_model_path=pretrain["checkpoint"])
    if args.epochs is not None:
        config_dict["epochs"] = args.epochs
    config, dataset, (train_data, valid_data, test_data), trainer, flops, t_data = build_run(
        args, config_dict, config_file, data_path, workdir)

    # --- per-epoch timing hooks (instance attributes shadow the bound methods) ---
    epochs = []          # one dict per trained epoch
    time_train_epochs(trainer, epochs)
    orig_valid, orig_save = trainer._valid_epoch, trainer._save_checkpoint
    saved_epochs = []

    def timed_valid(valid_data, *a, **k):
        s = time.perf_counter()
        score, result = orig_valid(valid_data, *a, **k)
        epochs[-1].update(valid_s=time.perf_counter() - s, valid_score=_num(score),
                          valid_result=_num(dict(result)))
        return score, result

    def tracked_save(epoch, *a, **k):
        saved_epochs.append(epoch)
        return orig_save(epoch, *a, **k)

    trainer._valid_epoch, trainer._save_checkpoint = timed_valid, tracked_save

    t0 = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, saved=True,
                                                      show_progress=False)
    t_fit = time.perf_counter() - t0

    t0 = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    t_test = time.perf_counter() - t0

    eval_repeats = None
    if args.serve_eval:
        from eval_server import serve  # bench/ is this script's directory

        times = serve(lambda: trainer.evaluate(valid_data, load_best_model=False, show_progress=False))
        eval_repeats = {"n": len(times), "median_s": statistics.median(times), "all_s": times, "paired": True}
    elif args.eval_repeats > 0:
        times = []
        for _ in range(args.eval_repeats):
            s = time.perf_counter()
            trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
            times.append(time.perf_counter() - s)
        eval_repeats = {"n": args.eval_repeats, "median_s": statistics.median(times), "all_s": times}

    train_times = [e["train_s"] for e in epochs]
    valid_times = [e["valid_s"] for e in epochs if "valid_s" in e]
    best_epoch = saved_epochs[-1] if saved_epochs else None
    res = {
        "tool": "recbole",
        "recbole_version": recbole.__version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "model": args.model,
        "dataset": args.dataset,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "epochs_cap": args.epochs,
        "config_file": config_file,
        "data_path": config["data_path"],
        "argv": orig_argv,
        "pretrain": pretrain,
        "flops": _num(flops),
        "counts": {
            "n_users": dataset.user_num,          # including padding id 0
            "n_items": dataset.item_num,          # including padding id 0
            "n_interactions": dataset.inter_num,
            "train_samples": len(train_data._dataset),
            "valid_samples": len(valid_data._dataset),
            "test_samples": len(test_data._dataset),
            "train_batches": len(train_data),
            "train_batch_size": config["train_batch_size"],
            "max_seq_length": config["MAX_ITEM_LIST_LENGTH"],
        },
        "epochs_run": len(epochs),
        "best_epoch": best_epoch,
        "train_losses": [e["train_loss"] for e in epochs],
        "epochs": epochs,
        "best_valid_score": _num(best_valid_score),
        "best_valid_result": _num(dict(best_valid_result)) if best_valid_result else None,
        "test_result": _num(dict(test_result)),
        "timing": {
            "import_s": t_import,
            "data_s": t_data,
            "fit_s": t_fit,
            "test_eval_s": t_test,
            "train_epoch_mean_s": statistics.fmean(train_times) if train_times else None,
            "train_epoch_median_s": statistics.median(train_times) if train_times else None,
            "valid_eval_mean_s": statistics.fmean(valid_times) if valid_times else None,
            "valid_eval_median_s": statistics.median(valid_times) if valid_times else None,
            "eval_repeats": eval_repeats,
            "total_s": time.perf_counter() - t_start,
        },
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # ru_maxrss is KiB on Linux
    }
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, out_path)

    os.chdir("/")
    shutil.rmtree(workdir, ignore_errors=True)

    tr = res["test_result"]
    t = res["timing"]
    print(f"{args.model} {args.dataset} seed={args.seed} threads={res['threads']} "
          f"epochs={res['epochs_run']} best={best_epoch} "
          f"loss0={res['train_losses'][0]:.4f} "
          f"test mrr@10={tr.get('mrr@10')} ndcg@10={tr.get('ndcg@10')} recall@10={tr.get('recall@10')} "
          f"train/ep={t['train_epoch_mean_s']:.2f}s valid={t['valid_eval_mean_s']:.3f}s "
          f"rss={res['peak_rss_mb']:.0f}MB -> {out_path}")


if __name__ == "__main__":
    main()
