"""seqtune's built-in TransE beside PyKEEN's (the field's standard KG-embedding library), issue 17.

    bash bench/setup_pykeen.sh                      # PyKEEN 1.11.1 in its own venv, same torch build
    python bench/kg_pykeen.py linkpred              # both TransEs on the same triples, one evaluator, 3 seeds
    python bench/kg_pykeen.py train                 # KSR, GRU4RecKG; seeds 2020-2022; resumable, mid-run too
    python bench/kg_pykeen.py summarize             # the tables for docs/kg.md

linkpred: ml-100k's graph split as ``python -m models.kg_embed --evaluate`` splits it (90,631 training
triples, 1,000 held out, seed 2020); both TransEs train on the training triples with the same recipe
(dim 64, L2, margin 1, one negative per triple, unit-length entities, Adam lr 0.01, batch 4096, 100
epochs) and are scored by one evaluator (models.kg_embed.link_prediction: filtered ranks over all
entities, head and tail). PyKEEN's own evaluator scores PyKEEN's model too, a check on ours.

train: each KG model trained to RecBole's early stop (the model's defaults, out of the box) on each
vector set: "builtin" (seqtune's cached TransE) and "pykeen" (PyKEEN's TransE on the full graph, as
the dataset's own ml-100k.ent / ml-100k.rel in a data folder beside symlinks to the atomic files).
One JSON per run in bench/results/kg_pykeen/; an existing one is not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "results" / "kg_pykeen"
WORK = Path(os.environ.get("SEQTUNE_PYKEEN_DIR", Path.home() / ".cache" / "seqtune-pykeen"))
DATASET = "ml-100k"
KEYS = ("mrr@10", "ndcg@10", "recall@10")
SPLIT_SEED = 2020  # the held-out triples, as `python -m models.kg_embed --evaluate` holds them out


def pykeen_python() -> str:
    return str(Path(os.environ.get("PYKEEN_VENV", Path.home() / "pykeen-venv")) / "bin" / "python")


def pykeen_transe(train: np.ndarray, n_entities: int, n_relations: int, params, test: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, list[float], dict]:
    """PyKEEN's TransE on id triples, in PyKEEN's venv (bench/pykeen_transe.py): vectors, losses, report."""
    with tempfile.TemporaryDirectory() as tmp:
        triples, vectors = Path(tmp) / "triples.npz", Path(tmp) / "vectors.npz"
        arrays = {"train": train, "n_entities": n_entities, "n_relations": n_relations}
        np.savez(triples, **arrays, **({"test": test} if test is not None else {}))
        command = [pykeen_python(), str(ROOT / "bench" / "pykeen_transe.py"), "--triples", str(triples),
                   "--dim", str(params.dim), "--epochs", str(params.epochs), "--lr", str(params.learning_rate),
                   "--margin", str(params.margin), "--batch-size", str(params.batch_size), "--seed",
                   str(params.seed), "--out", str(vectors)]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        report = json.loads(done.stdout.strip().splitlines()[-1])
        result = np.load(vectors)
        return result["entity"], result["relation"], result["losses"].tolist(), report


def linkpred(seeds: Sequence[int]) -> dict:
    """Both TransEs once per training seed on the one held-out split (seed 2020); seeds already in
    linkpred.json are kept, so the spread grows run by run."""
    import time

    from models.data.datasets import resolve_dataset_dir
    from models.data.kg import read_kg
    from models.kg_embed import TransEModel, TransEParams, held_out_split, link_prediction, train_transe

    result = load_linkpred()
    entities, relations, train, test = held_out_split(read_kg(resolve_dataset_dir(DATASET), DATASET), SPLIT_SEED)
    result.update({"split_seed": SPLIT_SEED, "train_triples": len(train), "test_triples": len(test),
                   "entities": len(entities), "relations": len(relations),
                   "command": "python bench/kg_pykeen.py linkpred --seeds " + " ".join(map(str, seeds))})
    for seed in seeds:
        if str(seed) in result["runs"]:
            continue
        params = TransEParams(seed=seed)
        tic = time.perf_counter()
        entity, relation, losses = train_transe(train, len(entities), len(relations), params)
        ours_s = time.perf_counter() - tic
        ours = TransEModel(entities, relations, entity.numpy(), relation.numpy(), losses)
        p_entity, p_relation, p_losses, report = pykeen_transe(train, len(entities), len(relations), params, test)
        theirs = TransEModel(entities, relations, p_entity, p_relation, p_losses)
        result["params"] = {k: v for k, v in params.__dict__.items() if k != "seed"}
        result["runs"][str(seed)] = {
            "seqtune": {**link_prediction(ours, train, test), "first_loss": losses[0], "last_loss": losses[-1],
                        "train_s": ours_s},
            "pykeen": {**link_prediction(theirs, train, test), "first_loss": p_losses[0], "last_loss": p_losses[-1],
                       "train_s": report["train_s"], "pykeen_evaluator": report.get("pykeen_evaluator"),
                       "version": report["pykeen"]}}
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "linkpred.json").write_text(json.dumps(result, indent=1))  # after each seed: a stop keeps it
        print(f"kg_pykeen: link prediction, seed {seed} written", flush=True)
    return result


def load_linkpred() -> dict:
    """linkpred.json; its first form (one seed, 2020, at the top level) read as a run of seed 2020."""
    path = OUT / "linkpred.json"
    if not path.is_file():
        return {"runs": {}}
    data = json.loads(path.read_text())
    if "runs" in data:
        return data
    seed = data["params"]["seed"]
    return {**{k: v for k, v in data.items() if k not in ("seqtune", "pykeen")},
            "runs": {str(seed): {"seqtune": data["seqtune"], "pykeen": data["pykeen"]}}}


def pykeen_data_dir(dim: int) -> Path:
    """A folder RecBole's format reads as ml-100k with its own .ent/.rel: PyKEEN's TransE on the full graph."""
    from models.data.datasets import resolve_dataset_dir
    from models.data.kg import read_kg
    from models.kg_embed import TransEParams, _index_triples, write_vectors

    target = WORK / f"dim{dim}" / DATASET
    if (target / f"{DATASET}.ent").is_file():
        return target.parent
    source = resolve_dataset_dir(DATASET)
    params = TransEParams(dim=dim)
    entities, relations, triples = _index_triples(read_kg(source, DATASET))
    entity, relation, losses, report = pykeen_transe(triples, len(entities), len(relations), params)
    target.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(source):
        if name.startswith(DATASET + ".") and not (target / name).exists():
            (target / name).symlink_to(source / name)
    (target / "pykeen.json").write_text(json.dumps({**params.__dict__, **report, "losses": losses}, indent=1))
    write_vectors(target / f"{DATASET}.rel", "rel_id", "rel_emb", relations, relation)
    write_vectors(target / f"{DATASET}.ent", "ent_id", "ent_emb", entities, entity)  # last: marks it complete
    return target.parent


def kg_dim(model: str) -> int:
    from recbole_env import kg_vector_dim  # bench/ is this script's directory

    from models.config import build_config

    return kg_vector_dim(build_config(model, DATASET))


def run_one(model: str, vectors: str, seed: int, threads: int) -> str:
    """One KG model to early stop on one vector set; its JSON in OUT (the file marks it done)."""
    out = OUT / f"{model.lower()}_{vectors}_seed{seed}.json"
    extra = [f"--data_path={pykeen_data_dir(kg_dim(model))}"] if vectors == "pykeen" else []
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "result.json"
        subprocess.run([sys.executable, "-m", "models.train", "--model", model, "--dataset", DATASET,
                        f"--seed={seed}", f"--threads={threads}", "--show_progress=false", "--quiet",
                        "--result_json", str(full), "--resume_dir", str(WORK / "resume"), *extra],
                       cwd=ROOT, check=True)  # a run stopped mid-way continues from its last epoch
        result = json.loads(full.read_text())
    keep = {k: result.get(k) for k in ("test_result", "best_valid_result", "best_epoch", "epochs_run")}
    history = result.get("history", [])
    keep["train_losses"] = [round(h["train_loss"], 4) for h in history]
    keep["epoch_seconds"] = [round(h["train_seconds"] + h["valid_seconds"], 1) for h in history]  # this session's
    keep["threads"], keep["resumed_epochs"] = threads, result.get("resumed_epochs", 0)
    out.write_text(json.dumps({"model": model, "vectors": vectors, "seed": seed, **keep}, indent=1))
    return out.name


def train(models: list[str], seeds: list[int], threads: int, workers: int) -> None:
    """Every (seed, model, vectors) run not yet in OUT, seed by seed, ``workers`` at a time, each with
    ``threads`` threads. On 2 cores one two-thread run is the faster way for KSR: alone it trains an epoch
    in ~120 s at 2 threads and ~209 s at 1, and two one-thread runs side by side take ~330 s an epoch each
    (0.73x the work of one two-thread run; session 12). A run stopped mid-way continues from its saved
    state, at any thread count."""
    from concurrent.futures import ThreadPoolExecutor

    OUT.mkdir(parents=True, exist_ok=True)
    for dim in sorted({kg_dim(m) for m in models}):
        pykeen_data_dir(dim)  # once, before the runs that read it
    todo = [(model, vectors, seed) for seed in seeds for model in models for vectors in ("builtin", "pykeen")
            if not (OUT / f"{model.lower()}_{vectors}_seed{seed}.json").is_file()]
    with ThreadPoolExecutor(max_workers=workers) as pool:  # threads only wait on the subprocesses
        for model, vectors, seed in todo:
            print(f"kg_pykeen: to run: {model} on {vectors} vectors, seed {seed}", flush=True)
        for name in pool.map(lambda job: run_one(*job, threads), todo):
            print(f"kg_pykeen: {name} written", flush=True)


def in_progress() -> list[str]:
    """The runs a stopped ``train`` left part-way (their saved fit states): which, and how far."""
    from models.fit_state import load

    lines = []
    for path in sorted((WORK / "resume").glob("*.pt")):
        state = load(path)
        if state is None or "config" not in state:
            continue
        loop, config = state["loop"], state["config"]
        vectors = "pykeen" if config.get("data_path") and str(WORK) in str(config["data_path"]) else "builtin"
        best = loop["best_result"] or {}
        lines.append(f"- in progress: {config['model']} on {vectors} vectors, seed {config['seed']}: "
                     f"{loop['next_epoch']} epochs, best valid MRR@10 {best.get('mrr@10', float('nan')):.4f} at "
                     f"epoch {loop['best_epoch']}, {loop['bad_evals']} without improvement")
    return [*lines, ""] if lines else []


def summarize() -> str:
    lines = []
    link = load_linkpred()
    if link["runs"]:
        lines += [f"Link prediction on {link['test_triples']:,} held-out triples ({link['train_triples']:,} training, "
                  f"{link['entities']:,} entities), one evaluator (filtered, head and tail), one row per training "
                  "seed:", "",
                  "| TransE | seed | first / last epoch loss | filtered MRR | filtered Hits@10 | PyKEEN's evaluator "
                  "(MRR / Hits@10) | training (s) |", "|---|---|---|---|---|---|---|"]
        seeds = sorted(link["runs"], key=int)
        for name in ("seqtune", "pykeen"):
            for seed in seeds:
                t = link["runs"][seed][name]
                check = t.get("pykeen_evaluator")
                lines.append(f"| {name} | {seed} | {t['first_loss']:.3f} / {t['last_loss']:.3f} | {t['mrr']:.4f} | "
                             f"{t['hits@10']:.4f} | "
                             + (f"{check['mrr']:.4f} / {check['hits@10']:.4f}" if check else "-")
                             + f" | {t['train_s']:.0f} |")
            if len(seeds) > 1:
                runs = [link["runs"][seed][name] for seed in seeds]
                lines.append(f"| {name} | mean ± std | | {mean_std([t['mrr'] for t in runs])} | "
                             f"{mean_std([t['hits@10'] for t in runs])} | | |")
        lines.append("")
    lines += in_progress()
    runs = [json.loads(p.read_text()) for p in sorted(OUT.glob("*_seed*.json"))]
    if runs:
        lines += ["| model | vectors | seeds | epochs run (best) | valid MRR@10 | test MRR@10 | NDCG@10 | Recall@10 |",
                  "|---|---|---|---|---|---|---|---|"]
        for model in sorted({r["model"] for r in runs}):
            for vectors in ("builtin", "pykeen"):
                group = runs_of(runs, model, vectors)
                if not group:
                    continue
                values = [[r["best_valid_result"]["mrr@10"] for r in group]]
                values += [[r["test_result"][key] for r in group] for key in KEYS]
                epochs = ", ".join(f"{r['epochs_run']} ({r['best_epoch']})" for r in group)
                lines.append(f"| {model} | {vectors} | {', '.join(str(r['seed']) for r in group)} | {epochs} | "
                             + " | ".join(mean_std(v) for v in values) + " |")
        lines += ["", *verdicts(runs)]
    return "\n".join(lines)


def runs_of(runs: list[dict], model: str, vectors: str) -> list[dict]:
    return sorted((r for r in runs if r["model"] == model and r["vectors"] == vectors), key=lambda r: r["seed"])


def mean_std(values: list[float]) -> str:
    spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.4f}{spread}"


def verdicts(runs: list[dict]) -> list[str]:
    """The issue's test, per model and test metric, once both vector sets have every seed the other has
    and at least two: the built-in vectors' mean is above PyKEEN's, or below it by no more than the larger
    of the two seed standard deviations ("within seed spread")."""
    lines = []
    for model in sorted({r["model"] for r in runs}):
        ours, theirs = runs_of(runs, model, "builtin"), runs_of(runs, model, "pykeen")
        seeds = [r["seed"] for r in ours]
        if len(seeds) < 2 or seeds != [r["seed"] for r in theirs]:
            lines.append(f"- {model}: no verdict yet (built-in seeds {seeds}, PyKEEN seeds "
                         f"{[r['seed'] for r in theirs]}; both need the same seeds, at least two)")
            continue
        cells = []
        for key in KEYS:
            a, b = [r["test_result"][key] for r in ours], [r["test_result"][key] for r in theirs]
            gap, spread = statistics.fmean(a) - statistics.fmean(b), max(statistics.stdev(a), statistics.stdev(b))
            verdict = "above" if gap >= 0 else "within seed spread" if -gap <= spread else "BELOW, outside seed spread"
            cells.append(f"{key} {gap:+.4f} (spread {spread:.4f}): {verdict}")
        lines.append(f"- {model}, built-in minus PyKEEN over seeds {seeds}: " + "; ".join(cells))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["linkpred", "train", "summarize"])
    parser.add_argument("--models", nargs="+", default=["KSR", "GRU4RecKG"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022])
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each run")
    parser.add_argument("--workers", type=int, default=1, help="runs at once")
    args = parser.parse_args()
    if args.action == "linkpred":
        linkpred(args.seeds)
    elif args.action == "train":
        train(args.models, args.seeds, args.threads, args.workers)
    print(summarize())


if __name__ == "__main__":
    main()
