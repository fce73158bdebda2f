"""Where RecBole 1.2.1's venv lives and the environment every RecBole process needs (bench/setup_recbole.sh)."""

from __future__ import annotations

import os
from pathlib import Path


def recbole_python() -> str:
    return str(Path(os.environ.get("RECBOLE_VENV", Path.home() / "recbole-venv")) / "bin" / "python")


def recbole_env(**extra: str) -> dict[str, str]:
    """The ray stub on PYTHONPATH, full torch.load for RecBole's pickled checkpoints, quiet warnings."""
    return {**os.environ, "PYTHONPATH": os.environ.get("RAYSTUB", str(Path.home() / "raystub")),
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONWARNINGS": "ignore::FutureWarning", **extra}
