"""Where RecBole 1.2.1's venv lives and the environment every RecBole process needs (bench/setup_recbole.sh)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def recbole_python() -> str:
    return str(Path(os.environ.get("RECBOLE_VENV", Path.home() / "recbole-venv")) / "bin" / "python")


def recbole_env(**extra: str) -> dict[str, str]:
    """The ray stub on PYTHONPATH, full torch.load for RecBole's pickled checkpoints, quiet warnings."""
    return {**os.environ, "PYTHONPATH": os.environ.get("RAYSTUB", str(Path.home() / "raystub")),
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONWARNINGS": "ignore::FutureWarning", **extra}


def kg_vector_dim(config: Any) -> int:
    """The dimension of the KG vectors a model reads: KSR's kg_embedding_size, else GRU4RecKG's
    embedding_size."""
    return int(config.get("kg_embedding_size") or config["embedding_size"])


def recbole_model_args(model: str, dataset: str = "ml-100k", data_path: str | None = None) -> list[str]:
    """Extra recbole_runner.py arguments a model needs: KG models get the .ent/.rel files seqtune uses
    (its TransE output, trained and cached on first use), so both tools start from the same vectors."""
    from models.config import build_config
    from models.data.datasets import resolve_dataset_dir
    from models.data.sequential import data_kind

    if data_kind(model) != "kg":
        return []
    from models.kg_embed import TransEParams, kg_vector_files

    config = build_config(model, dataset, overrides={"data_path": data_path} if data_path else None)
    dim = kg_vector_dim(config)
    directory = resolve_dataset_dir(dataset, config.get("data_path"))
    ent, _ = kg_vector_files(dataset, directory, TransEParams.from_config(config, dim))
    return ["--kg-vectors", str(ent.parent)]
