"""Cost at real dataset sizes, side by side with RecBole 1.2.1 on the same atomic files (issue 16).

    python bench/scale.py generate      # synthetic ml-1m, Amazon-Beauty and ml-20m sizes (models.data.synth)
    python bench/scale.py run           # every size x model x tool below; merges into bench/results/scale.json
    python bench/scale.py run --sizes synth-ml-20m --tools seqtune,recbole --models GRU4Rec
    python bench/scale.py paired-eval --sizes synth-ml-1m --models GRU4Rec --warmup 3 --batches 3
                                        # full-sort evaluation of both tools in alternating blocks
    python bench/scale.py summarize     # the table for docs/performance.md, slopes, docs/img/scale_loglog.png

Per dataset size, model and tool, each stage in its own process, the tools alternating:
  cold    data load and preparation from the atomic files with no cache (seqtune: its tensor cache
          removed; RecBole: nothing saved), timed, and the process's peak RSS;
  cached  the tool's own cache (seqtune: the prepared tensors; RecBole: save_dataset + save_dataloaders,
          written by an untimed 'save' stage), timed; then --batches training steps after --warmup
          (samples/s, the tool's own batch pipeline and step), full-sort evaluation of every valid user
          (the fastest of --eval-passes passes), and the trial's peak RSS.
Both tools run the same torch build at the same thread count, with train_batch_size 2048 and RecBole's
defaults (GRU4Rec: hidden 128, 1 layer; KSR on seqtune's TransE vectors, so both start from the same
ones). A stage whose RSS passes --rss-limit-gb or whose time passes --stage-timeout is stopped and
recorded as stopped (what RecBole does at ml-20m size). Run it alone: two processes on 2 cores
slow each other.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procmem import memory_mb  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from eval_server import EvalClient, paired_blocks, serve  # noqa: E402
from recbole_env import recbole_env, recbole_model_args, recbole_python  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scale.json"
PNG = ROOT / "docs" / "img" / "scale_loglog.png"
WORK = Path(os.environ.get("SEQTUNE_SCALE_DIR", Path.home() / ".cache" / "seqtune-scale"))
SYNTH = WORK / "data"  # synth-<like>/ folders
# The published interaction counts (models.data.synth targets; ml-100k's own file): the x axis.
INTERACTIONS = {"ml-100k": 100_000, "synth-amazon-beauty": 198_502, "synth-ml-1m": 999_611,
                "synth-ml-20m": 19_984_024}
SIZES = ["ml-100k", "synth-amazon-beauty", "synth-ml-1m", "synth-ml-20m"]
# What RecBole needs to read a synthetic folder as the sequential protocol reads ml-100k.
RECBOLE_SYNTH_CONFIG = """load_col: {inter: [user_id, item_id, rating, timestamp]}
eval_args: {split: {LS: valid_and_test}, order: TO, group_by: user, mode: full}
MAX_ITEM_LIST_LENGTH: 50
"""


def data_path(dataset: str) -> Path | None:
    """The folder holding ``dataset``'s atomic files (None: the copy in the recbole wheel)."""
    return None if dataset == "ml-100k" else SYNTH / dataset


# --- seqtune's stages (run in a child process of this script) ------------------------------------

def seqtune_stage(stage: str, model: str, dataset: str, threads: int, warmup: int, batches: int,
                  eval_passes: int) -> dict:
    tic = time.perf_counter()
    from models.config import build_config
    from models.data.datasets import cache_root
    from models.data.sequential import load_sequential_data
    from models.trainer import Trainer, prepare

    overrides: dict[str, Any] = {"seed": 2020, "threads": threads, "show_progress": False, "device": "cpu"}
    if data_path(dataset) is not None:
        overrides["data_path"] = str(SYNTH)
    config = build_config(model, dataset, overrides=overrides)
    import_s = time.perf_counter() - tic
    if stage == "cold":
        for stale in (cache_root() / "tensors").glob(f"{dataset}-*.pt"):
            stale.unlink()
    tic = time.perf_counter()
    data = load_sequential_data(config)
    result: dict[str, Any] = {
        "tool": "seqtune", "stage": stage, "model": model, "dataset": dataset, "import_s": import_s,
        "prep_s": time.perf_counter() - tic, "prep_peak_rss_mb": peak_rss_mb(),
        "counts": {"users": data.n_users - 1, "items": data.n_items - 1, "train_samples": len(data.train),
                   "valid_users": len(data.valid), "train_batch_size": config["train_batch_size"]}}
    if stage in ("cached", "serve"):
        import torch

        data, model_ = prepare(config, data)
        trainer = Trainer(config, model_, data)
        result["threads"] = torch.get_num_threads()
        result["torch_version"] = torch.__version__
        result["train"] = train_throughput(trainer, warmup, batches)
    if stage == "serve":  # timed evaluations on request, in blocks alternating with RecBole's
        serve(lambda: trainer.evaluate(data.valid))
    elif stage == "cached":
        passes = []
        for _ in range(eval_passes):
            tic = time.perf_counter()
            trainer.evaluate(data.valid)
            passes.append(time.perf_counter() - tic)
        result["eval_s"], result["eval_passes_s"] = min(passes), passes
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def train_throughput(trainer: Any, warmup: int, batches: int) -> dict:
    """Samples per second over ``batches`` of the trainer's own steps (its shuffled order, batch gather,
    negatives where the model needs them, optimizer step), after ``warmup`` untimed ones."""
    train, size = trainer.data.train, int(trainer.config["train_batch_size"])
    order = trainer.shuffler.epoch_order()
    clip = trainer.config.get("clip_grad_norm")
    trainer.model.train()
    count = min(warmup + batches, math.ceil(len(train) / size))
    samples, tic = 0, time.perf_counter()
    for index in range(count):
        if index == warmup:
            samples, tic = 0, time.perf_counter()
        batch = train.batch(order[index * size : (index + 1) * size])
        trainer.train_step(batch, clip)
        samples += len(batch)
    seconds = time.perf_counter() - tic
    return {"batches": count - warmup, "samples": samples, "seconds": seconds, "samples_per_s": samples / seconds}


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the orchestrator -----------------------------------------------------------------------------

def watched(command: list[str], env: dict[str, str], out: Path, rss_limit_mb: float, timeout_s: float) -> dict:
    """Run one stage; stop it past the RSS limit or the timeout (read from /proc every 0.2 s)."""
    out.unlink(missing_ok=True)
    tic = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, env=env)
    high, stopped = 0.0, None
    while child.poll() is None:
        rss = memory_mb(child.pid)
        high = max(high, rss)
        elapsed = time.perf_counter() - tic
        if rss > rss_limit_mb or elapsed > timeout_s:
            stopped = (f"stopped at {elapsed:.0f} s with {rss / 1024:.1f} GB RSS ("
                       + ("over the RSS limit" if rss > rss_limit_mb else "over the time limit") + ")")
            child.kill()
            child.wait()
            break
        time.sleep(0.2)
    if stopped or child.returncode != 0 or not out.is_file():
        return {"stopped": stopped or f"exit code {child.returncode}", "seconds": time.perf_counter() - tic,
                "peak_rss_mb": high}
    return json.loads(out.read_text())


def stage_command(tool: str, stage: str, model: str, dataset: str, args: argparse.Namespace, out: Path,
                  workdir: Path) -> tuple[list[str], dict[str, str]]:
    common = ["--model", model, "--dataset", dataset, "--threads", str(args.threads), "--warmup",
              str(args.warmup), "--batches", str(args.batches), "--eval-passes", str(args.eval_passes),
              "--out", str(out)]
    if tool == "seqtune":
        return [sys.executable, str(Path(__file__)), "stage", "--stage", stage, *common], dict(os.environ)
    extra = []
    if data_path(dataset) is not None:
        config = workdir / "synth.yaml"
        config.write_text(RECBOLE_SYNTH_CONFIG)
        extra += ["--data-path", str(data_path(dataset)), "--config-file", str(config)]
    extra += recbole_model_args(model, dataset, str(SYNTH) if data_path(dataset) is not None else None)
    cache = WORK / "recbole-cache" / f"{dataset}-{model}"
    return ([recbole_python(), str(ROOT / "bench" / "recbole_scale.py"), "--stage", stage, *common, *extra,
             "--cache-dir", str(cache)], recbole_env())


def run(args: argparse.Namespace) -> None:
    results = load_results()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for dataset in args.sizes:
            for model in args.models:
                for tool in args.tools:
                    stages = ["cold", "save", "cached"] if tool == "recbole" else ["cold", "cached"]
                    entry: dict[str, Any] = {}
                    for stage in stages:
                        out = workdir / f"{tool}-{stage}.json"
                        command, env = stage_command(tool, stage, model, dataset, args, out, workdir)
                        print(f"scale: {tool} {model} {dataset} {stage}", flush=True)
                        entry[stage] = watched(command, env, out, args.rss_limit_gb * 1024, args.stage_timeout)
                        if "stopped" in entry[stage]:
                            print(f"scale:   {entry[stage]['stopped']}", flush=True)
                            break
                    entry.pop("save", None)  # untimed: it only writes RecBole's cache
                    results["runs"][f"{tool}/{model}/{dataset}"] = entry
                    save_results(results)
                    print(f"scale:   {one_line(entry)}", flush=True)
        if args.sizes and "recbole" in args.tools:
            shutil.rmtree(WORK / "recbole-cache", ignore_errors=True)  # GBs of pickles at ml-1m size


def paired_eval(args: argparse.Namespace) -> None:
    """Full-sort evaluation of the valid users, RecBole and seqtune side by side in alternating blocks.

    The 'cached' stage times each tool's evaluation in its own process, minutes apart; at ml-1m one
    pass is ~0.5 s against ~0.9 s, and this machine drifts 15-30 % over minutes (two runs of the same
    code gave 0.51x and 0.55x). Here both tools load their caches, train ``--batches`` steps, and stay
    up serving evaluations (bench/eval_server.py); blocks alternate which tool goes first, and the ratio
    is taken block by adjacent block (as bench/speed.py does at ml-100k).
    """
    results = load_results()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for dataset in args.sizes:
            for model in args.models:
                save_out = workdir / "save.json"
                command, env = stage_command("recbole", "save", model, dataset, args, save_out, workdir)
                print(f"scale: recbole {model} {dataset} save (its cache)", flush=True)
                saved = watched(command, env, save_out, args.rss_limit_gb * 1024, args.stage_timeout)
                if "stopped" in saved:
                    raise SystemExit(f"scale: RecBole's save stage stopped: {saved['stopped']}")
                clients: dict[str, EvalClient] = {}
                try:
                    for tool in ("recbole", "seqtune"):  # one at a time: the other waits, idle, on stdin
                        command, env = stage_command(tool, "serve", model, dataset, args,
                                                     workdir / f"{tool}-serve.json", workdir)
                        clients[tool] = EvalClient(command, cwd=str(ROOT), env=env)
                    recbole_blocks, seqtune_blocks = paired_blocks(clients["recbole"], clients["seqtune"],
                                                                   args.eval_blocks, args.eval_per_block)
                    blocks = {"recbole": recbole_blocks, "seqtune": seqtune_blocks}
                finally:
                    for client in clients.values():
                        client.close()
                ratios = [statistics.median(st) / statistics.median(rb)
                          for rb, st in zip(blocks["recbole"], blocks["seqtune"], strict=True)]
                entry = {"blocks": blocks, "ratios": ratios, "ratio_median": statistics.median(ratios),
                         "ratio_min": min(ratios), "ratio_max": max(ratios),
                         **{f"{tool}_median_s": statistics.median([t for b in blocks[tool] for t in b])
                            for tool in blocks},
                         "command": f"python bench/scale.py paired-eval --sizes {dataset} --models {model} "
                                    f"--eval-blocks {args.eval_blocks} --eval-per-block {args.eval_per_block}"}
                results.setdefault("paired_eval", {})[f"{model}/{dataset}"] = entry
                save_results(results)
                print(f"scale: {model} {dataset} full-sort eval, seqtune / RecBole per block pair: median "
                      f"{entry['ratio_median']:.3f} (range {entry['ratio_min']:.3f}-{entry['ratio_max']:.3f}); "
                      f"medians {entry['seqtune_median_s']:.3f} s / {entry['recbole_median_s']:.3f} s", flush=True)
    shutil.rmtree(WORK / "recbole-cache", ignore_errors=True)


def one_line(entry: dict) -> str:
    cold, cached = entry.get("cold", {}), entry.get("cached", {})
    parts = [f"cold {cold['prep_s']:.1f} s" if "prep_s" in cold else cold.get("stopped", "")]
    if "train" in cached:
        parts += [f"cached {cached['prep_s']:.2f} s", f"{cached['train']['samples_per_s']:.0f} samples/s",
                  f"eval {cached['eval_s']:.2f} s", f"RSS {cached['peak_rss_mb']:.0f} MB"]
    return ", ".join(parts)


def load_results() -> dict:
    if RESULTS.is_file():
        return json.loads(RESULTS.read_text())
    return {"runs": {}}


def save_results(results: dict) -> None:
    import torch

    results["machine"] = {"platform": platform.platform(), "cores": len(os.sched_getaffinity(0)),
                          "torch": torch.__version__}
    results["command"] = "python bench/scale.py run"
    RESULTS.write_text(json.dumps(results, indent=1))


def generate() -> None:
    from models.data.synth import generate as write

    for like in ("amazon-beauty", "ml-1m", "ml-20m"):
        if (SYNTH / f"synth-{like}" / f"synth-{like}.inter").is_file():
            print(f"scale: {SYNTH / f'synth-{like}'} exists")
            continue
        write(like, 0, SYNTH)


# --- the summary ----------------------------------------------------------------------------------

def cost_rows(results: dict) -> list[dict]:
    """One row per (model, dataset): each tool's costs and seqtune's ratios to RecBole."""
    rows = []
    for key, entry in results["runs"].items():
        tool, model, dataset = key.split("/")
        if tool != "seqtune":
            continue
        other = results["runs"].get(f"recbole/{model}/{dataset}", {})
        rows.append({"model": model, "dataset": dataset, "seqtune": costs(entry), "recbole": costs(other)})
    rows.sort(key=lambda r: (r["model"], INTERACTIONS[r["dataset"]]))
    return rows


def costs(entry: dict) -> dict:
    cold, cached = entry.get("cold", {}), entry.get("cached", {})
    out: dict[str, Any] = {"stopped": cold.get("stopped") or cached.get("stopped")}
    if "prep_s" in cold:
        out.update(cold_s=cold["prep_s"], cold_rss_mb=cold["peak_rss_mb"])
    if "train" in cached:
        out.update(cached_s=cached["prep_s"], samples_per_s=cached["train"]["samples_per_s"],
                   eval_s=cached["eval_s"], trial_rss_mb=cached["peak_rss_mb"],
                   epoch_s=cached["counts"]["train_samples"] / cached["train"]["samples_per_s"],
                   users_x_items=cached["counts"]["valid_users"] * cached["counts"]["items"])
    if "peak_rss_mb" in cold or "peak_rss_mb" in cached:
        out["peak_rss_mb"] = max(cold.get("peak_rss_mb", 0.0), cached.get("peak_rss_mb", 0.0))
    return out


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log y on log x over (x, y) points; None under two points."""
    if len(points) < 2:
        return None
    logs = [(math.log(x), math.log(y)) for x, y in points]
    mx, my = sum(a for a, _ in logs) / len(logs), sum(b for _, b in logs) / len(logs)
    return sum((a - mx) * (b - my) for a, b in logs) / sum((a - mx) ** 2 for a, _ in logs)


METRICS = [("cold_s", "data preparation, first run"), ("cached_s", "data preparation, cached"),
           ("epoch_s", "one training epoch (samples / throughput)"), ("eval_s", "full-sort evaluation"),
           ("peak_rss_mb", "peak RSS")]


# The slopes are fitted on the MovieLens family (ml-100k -> ml-1m -> ml-20m: histories of the same
# shape, mostly at the 50-item window). Amazon-Beauty's histories average 9 items, and the packed GRU
# costs per real step, so its epoch sits below that line: it is shown, and the fit over all four too.
FAMILY = ("ml-100k", "synth-ml-1m", "synth-ml-20m")


def slopes(rows: list[dict]) -> dict:
    out: dict[str, Any] = {}
    for tool in ("seqtune", "recbole"):
        for model in sorted({r["model"] for r in rows}):
            mine = [r for r in rows if r["model"] == model]
            for metric, _ in METRICS:
                measured = [r for r in mine if metric in r[tool]]
                out[f"{tool}/{model}/{metric}"] = slope([(INTERACTIONS[r["dataset"]], r[tool][metric])
                                                         for r in measured if r["dataset"] in FAMILY])
                out[f"{tool}/{model}/{metric}/all_sizes"] = slope([(INTERACTIONS[r["dataset"]], r[tool][metric])
                                                                   for r in measured])
            # full-sort evaluation scores every user against every item: its own axis
            points = [(r[tool]["users_x_items"], r[tool]["eval_s"]) for r in mine
                      if "eval_s" in r[tool] and r["dataset"] in FAMILY]
            out[f"{tool}/{model}/eval_s_vs_users_x_items"] = slope(points)
    return out


def ratio(a: float | None, b: float | None) -> str:
    if a is None or not b:
        return "-"
    return f"{a / b:.2f}x" if a / b >= 0.1 else f"{a / b:.3f}x"


def table(rows: list[dict]) -> str:
    head = ("| model | dataset | tool | prep first run (s) | prep cached (s) | train samples/s | full-sort eval (s) "
            "| peak RSS (MB) | epoch (s) |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        for tool in ("recbole", "seqtune"):
            c = r[tool]
            if not c.get("cold_s") and not c.get("stopped"):
                continue
            cells = [c.get("stopped") or fmt(c.get("cold_s"), 1), fmt(c.get("cached_s"), 2),
                     fmt(c.get("samples_per_s"), 0), fmt(c.get("eval_s"), 2), fmt(c.get("peak_rss_mb"), 0),
                     fmt(c.get("epoch_s"), 1)]
            lines.append(f"| {r['model']} | {r['dataset']} | {tool} | " + " | ".join(cells) + " |")
        s, b = r["seqtune"], r["recbole"]
        if b.get("samples_per_s"):
            lines.append(
                f"| | | **seqtune / RecBole** | {ratio(s.get('cold_s'), b.get('cold_s'))} "
                f"| {ratio(s.get('cached_s'), b.get('cold_s'))} of RecBole's first run, "
                f"{ratio(s.get('cached_s'), b.get('cached_s'))} of its cached | "
                f"{ratio(s.get('samples_per_s'), b.get('samples_per_s'))} "
                f"| {ratio(s.get('eval_s'), b.get('eval_s'))} | {ratio(s.get('peak_rss_mb'), b.get('peak_rss_mb'))} "
                f"| {ratio(s.get('epoch_s'), b.get('epoch_s'))} |")
    return "\n".join(lines)


def fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def loglog_png(rows: list[dict], path: Path = PNG) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(len(models), len(METRICS), figsize=(4 * len(METRICS), 3.4 * len(models)),
                             squeeze=False)
    for i, model in enumerate(models):
        for j, (metric, label) in enumerate(METRICS):
            ax = axes[i][j]
            for tool, style in (("seqtune", "o-"), ("recbole", "s--")):
                pts = [(INTERACTIONS[r["dataset"]], r[tool][metric]) for r in rows
                       if r["model"] == model and metric in r[tool] and r["dataset"] in FAMILY]
                beauty = [(INTERACTIONS[r["dataset"]], r[tool][metric]) for r in rows
                          if r["model"] == model and metric in r[tool] and r["dataset"] not in FAMILY]
                if beauty:
                    ax.loglog([x for x, _ in beauty], [y for _, y in beauty], "x" if tool == "seqtune" else "+",
                              color="grey", label=f"{tool}, Amazon-Beauty size")
                if pts:
                    k = slope(pts)
                    legend = tool if k is None else f"{tool} (slope {k:.2f})"
                    ax.loglog([x for x, _ in pts], [y for _, y in pts], style, label=legend)
            ax.set_title(f"{model}: {label}", fontsize=9)
            ax.set_xlabel("interactions")
            ax.legend(fontsize=7)
            ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def summarize() -> None:
    results = load_results()
    rows = cost_rows(results)
    results["slopes"] = slopes(rows)
    RESULTS.write_text(json.dumps(results, indent=1))
    loglog_png(rows)
    print(table(rows))
    print()
    for key, value in results["slopes"].items():
        if value is not None:
            print(f"slope {key}: {value:.2f}" + ("" if key.endswith("all_sizes") else " (ml-100k, ml-1m, ml-20m)"))
    if results.get("paired_eval"):
        print()
        print("| full-sort eval, paired | seqtune (s) | RecBole (s) | seqtune / RecBole, block-pair median | range |")
        print("|---|---|---|---|---|")
        for key, entry in results["paired_eval"].items():
            print(f"| {key} | {entry['seqtune_median_s']:.3f} | {entry['recbole_median_s']:.3f} "
                  f"| {entry['ratio_median']:.3f}x | {entry['ratio_min']:.3f}-{entry['ratio_max']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["generate", "run", "paired-eval", "summarize", "stage"])
    parser.add_argument("--sizes", type=lambda s: s.split(","), default=SIZES[:3])
    parser.add_argument("--models", type=lambda s: s.split(","), default=["GRU4Rec", "KSR"])
    parser.add_argument("--tools", type=lambda s: s.split(","), default=["recbole", "seqtune"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--eval-passes", type=int, default=3, help="timed full-sort passes; the fastest counts")
    parser.add_argument("--eval-blocks", type=int, default=10, help="paired-eval: blocks per tool")
    parser.add_argument("--eval-per-block", type=int, default=3, help="paired-eval: evaluations per block")
    parser.add_argument("--rss-limit-gb", type=float, default=18.0)
    parser.add_argument("--stage-timeout", type=float, default=900.0)
    # the 'stage' action (a child process of 'run')
    parser.add_argument("--stage", choices=["cold", "cached", "serve"])
    parser.add_argument("--model")
    parser.add_argument("--dataset")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("SEQTUNE_CACHE", str(WORK / "cache"))  # its own cache: the cold stage empties it
    if args.action == "generate":
        generate()
    elif args.action == "run":
        run(args)
    elif args.action == "paired-eval":
        paired_eval(args)
    elif args.action == "summarize":
        summarize()
    else:
        result = seqtune_stage(args.stage, args.model, args.dataset, args.threads, args.warmup, args.batches,
                               args.eval_passes)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
