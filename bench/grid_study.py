"""The 8-config GRU4Rec grid that several benches run through `run_hyper.py`, each in a fresh directory.

learning_rate [0.01, 0.005, 0.001, 0.0005] x dropout_prob [0.1, 0.3], ml-100k, `--quiet --no-mlflow`;
a Ray study keeps its results inside that directory.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACE = "learning_rate choice [0.01, 0.005, 0.001, 0.0005]\ndropout_prob choice [0.1, 0.3]\n"
TRIALS = 8


@dataclass
class GridStudy:
    wall_s: float
    output_text: str  # out/hyper.result, RecBole's layout
    rows: list[dict[str, str]]  # out/results.csv, one row per trial

    def best_params(self) -> str:
        return self.output_text.split("best params:")[-1].splitlines()[0].strip()


def run_grid_study(tool: str, epochs: int, *flags: str) -> GridStudy:
    """One study of the grid with ``--tool tool --epochs=epochs`` and ``flags``, timed from start to exit."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "h.test").write_text(SPACE)
        command = [sys.executable, str(ROOT / "run_hyper.py"), "--model", "GRU4Rec", "--params_file", "h.test",
                   f"--epochs={epochs}", "--tool", tool, "--quiet", "--no-mlflow", "--output_file", "out/hyper.result",
                   *([f"--ray-storage={work / 'ray'}"] if tool == "ray" else []), *flags]
        tic = time.perf_counter()
        subprocess.run(command, cwd=work, check=True, capture_output=True)
        wall = time.perf_counter() - tic
        with (work / "out" / "results.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        return GridStudy(wall, (work / "out" / "hyper.result").read_text(), rows)
