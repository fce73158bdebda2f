"""Model registry (timm style): ``@register_model`` on a class, ``create_model(name, config, data)``.

A model is one module in ``models/zoo/`` plus a YAML of defaults named after the model
(``GRU4Rec.yaml``), as RecBole keeps ``properties/model/<Model>.yaml``; YAMLs named ``_*.yaml`` are
defaults shared by several models (``include``d by them), not models. The YAMLs alone answer
"which models exist and which keys do they take", so those answers need no torch; checking the
values needs the model's typed config (``config_type``), which lives in its module.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.errors import ConfigError, closest

if TYPE_CHECKING:
    from models.base import SequentialRecommender

ZOO_DIR = Path(__file__).parent / "zoo"
_REGISTRY: dict[str, type[SequentialRecommender]] = {}


def available_models() -> list[str]:
    return sorted(p.stem for p in ZOO_DIR.glob("*.yaml") if not p.name.startswith("_"))


def canonical_model_name(name: str) -> str:
    """Resolve a model name case-insensitively, or raise with the closest known name."""
    by_lower = {m.lower(): m for m in available_models()}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    raise ConfigError(
        f"unknown model {name!r}{closest(name, by_lower.values())}; known models: "
        + ", ".join(by_lower.values())
    )


def model_yaml_path(name: str) -> Path:
    return ZOO_DIR / f"{canonical_model_name(name)}.yaml"


def register_model(cls: type[SequentialRecommender]) -> type[SequentialRecommender]:
    _REGISTRY[cls.__name__] = cls
    return cls


def get_model_class(name: str) -> type[SequentialRecommender]:
    name = canonical_model_name(name)
    if name not in _REGISTRY:
        importlib.import_module(f"models.zoo.{name.lower()}")
    return _REGISTRY[name]


def create_model(name: str, config: Any, data: Any) -> SequentialRecommender:
    """Build a registered model from a resolved config and the dataset it trains on."""
    return get_model_class(name)(config, data)
