"""Does the knowledge graph help on ml-100k? seqtune's GRU4Rec, GRU4RecKG and KSR side by side.

    python bench/kg_compare.py [--run]

--run trains what is missing (seqtune only: RecBole gives the same numbers, docs/fidelity.md):
each model with the defaults (early stopping, up to 300 epochs) at seed 2020, and with epochs
capped at 3 at seeds 2020-2022. Without --run it reads what bench/results holds: the capped runs
of bench/fidelity.py --epochs 3 (KSR, GRU4RecKG), kg_compare_seqtune_<model>_seed<S>_epochs3.json
(GRU4Rec) and the full runs (kg_compare_seqtune_<model>_seed2020_full.json; GRU4Rec's full runs are
fidelity_seqtune_gru4rec_seed<S>.json). Prints a Markdown table for docs/fidelity.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MODELS = ("GRU4Rec", "GRU4RecKG", "KSR")
KEYS = ("mrr@10", "ndcg@10", "recall@10")
CAPPED_SEEDS = (2020, 2021, 2022)


def candidates(model: str, seed: int, capped: bool) -> list[Path]:
    name = model.lower()
    if capped:
        return [RESULTS / f"fidelity_seqtune_{name}_seed{seed}_epochs3.json",
                RESULTS / f"kg_compare_seqtune_{name}_seed{seed}_epochs3.json"]
    return [RESULTS / f"kg_compare_seqtune_{name}_seed{seed}_full.json",
            RESULTS / f"fidelity_seqtune_{name}_seed{seed}.json"]


def result(model: str, seed: int, capped: bool, run: bool) -> dict | None:
    for path in candidates(model, seed, capped):
        if path.is_file():
            return json.loads(path.read_text())
    if not run:
        return None
    out = candidates(model, seed, capped)[-1 if capped else 0]
    extra = ["--epochs=3"] if capped else []
    subprocess.run([sys.executable, "-m", "models.train", "--model", model, "--dataset", "ml-100k", f"--seed={seed}",
                    "--show_progress=false", "--quiet", "--result_json", str(out), *extra], cwd=ROOT, check=True)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true", help="train the runs that are missing")
    args = parser.parse_args()
    print("| model | protocol | seeds | epochs run (best) | test MRR@10 | NDCG@10 | Recall@10 |")
    print("|---|---|---|---|---|---|---|")
    for capped, seeds, label in ((False, (2020,), "defaults (early stopping)"), (True, CAPPED_SEEDS, "3 epochs")):
        for model in MODELS:
            runs = [r for s in seeds if (r := result(model, s, capped, args.run)) is not None]
            if not runs:
                print(f"| {model} | {label} | - | not run | | | |")
                continue
            mean = {k: statistics.mean(r["test_result"][k] for r in runs) for k in KEYS}
            epochs = ", ".join(f"{r['epochs_run']} ({r['best_epoch']})" for r in runs)
            print(f"| {model} | {label} | {len(runs)} | {epochs} | {mean['mrr@10']:.4f} | {mean['ndcg@10']:.4f} | "
                  f"{mean['recall@10']:.4f} |")


if __name__ == "__main__":
    main()
