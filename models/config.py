"""Configuration layering exactly in RecBole's order, with RecBole's key names.

Priority, lowest first: ``properties/overall.yaml`` < the model's YAML < the dataset's YAML <
``config_files`` (in the order given) < overrides (a dict, e.g. trial parameters or ``--key=value``).
A key that RecBole knows but that has no effect here is accepted with a warning; a key that
neither knows is an error naming the closest known key.

A model's YAML may pull in shared defaults with ``include: [_transe.yaml]`` (files next to it), so
each default lives in one file. Values are then coerced and checked against the typed configs
(``TrainingConfig`` here, the model's ``config_type``; see models/config_types.py), so a bad value
in any layer fails here, naming its layer, before any data or model is built.
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml

from models.config_types import Above, AtLeast, FieldSpec, OneOf, TypedConfig
from models.errors import ConfigError, closest
from models.registry import canonical_model_name, get_model_class, model_yaml_path

PROPERTIES = Path(__file__).parent / "properties"

# RecBole keys that are valid there but change nothing here (hardware, logging, distributed, ...).
RECBOLE_ONLY_KEYS = frozenset(
    {
        "gpu_id", "use_gpu", "state", "log_wandb", "wandb_project", "worker", "save_dataset",
        "dataset_save_path", "save_dataloaders", "dataloaders_save_path", "shuffle", "repeatable",
        "loss_decimal_place", "enable_amp", "enable_scaler", "transform", "nproc", "world_size",
        "offset", "ip", "port", "single_spec", "local_rank", "require_pow", "NEG_PREFIX",
        "LABEL_FIELD", "POSITION_FIELD", "threshold", "val_interval", "seq_len",
        "benchmark_filename", "numerical_features", "discretization", "normalize_field",
        "unused_col", "log_root", "eval_type", "train_batch_size_list", "hyper_parameters",
    }
)
# Metrics whose smaller value is better (RecBole's list); every other metric is "bigger is better".
SMALLER_IS_BETTER = frozenset({"mae", "rmse", "logloss", "averagepopularity", "giniindex"})
SUPPORTED_METRICS = {"recall": "Recall", "mrr": "MRR", "ndcg": "NDCG", "hit": "Hit", "precision": "Precision"}
# Keys of a model's YAML that describe the model instead of configuring a run: they never become
# config values, and any other layer that sets them is an error (not an override that would be
# silently ignored: the data pipeline reads data_kind from the model's YAML alone).
MODEL_YAML_ONLY_KEYS = ("include", "data_kind")
DATA_KIND = FieldSpec("data_kind", str, constraint=OneOf("sequential", "kg", "item_attribute"))


@dataclass
class TrainingConfig(TypedConfig):
    """The overall keys that the trainer and the data pipeline would reject, or misuse, when wrong."""

    epochs: Annotated[int, AtLeast(1)]
    train_batch_size: Annotated[int, AtLeast(1)]
    eval_batch_size: Annotated[int, AtLeast(1)]
    eval_score_mb: Annotated[int, AtLeast(1)]  # full-sort scores held at once: fewer users per batch at many items
    MAX_ITEM_LIST_LENGTH: Annotated[int, AtLeast(1)]
    learning_rate: Annotated[float, Above(0)]
    weight_decay: Annotated[float, AtLeast(0)]
    stopping_step: Annotated[int, AtLeast(0)]  # 0: stop at the first evaluation without improvement
    eval_step: Annotated[int, AtLeast(0)]  # 0: no validation, the last epoch is kept (RecBole's meaning)
    seed: int


def parse_value(text: str) -> Any:
    """Decode a command-line or params-file value as RecBole does, but with literal_eval only."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        lowered = text.strip().lower()
        if lowered in {"true", "false"}:
            return lowered == "true"
        if lowered in {"none", "~", "null"}:
            return None
        return text


# parsed YAML files by (path, mtime, size): a study builds a config per trial from the same few files,
# and parsing them was ~1 s of every toy study's start-up
_YAML_CACHE: dict[tuple[str, int, int], dict[str, Any]] = {}


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file's mapping (a fresh copy: callers may change it)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _YAML_CACHE:
        _YAML_CACHE[key] = _parse_yaml(path)
    return copy.deepcopy(_YAML_CACHE[key])


def _parse_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(content).__name__}")
    return content


@dataclass
class Config:
    """The resolved configuration of one run: a read-mostly mapping plus where each key came from."""

    model: str
    dataset: str
    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self.values

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "dataset": self.dataset, **copy.deepcopy(self.values)}

    @property
    def topk(self) -> list[int]:
        return list(self.values["topk"])

    @property
    def metric_keys(self) -> list[str]:
        """Result keys in RecBole's order: every metric at every k, lower case (``mrr@10``)."""
        return [f"{m.lower()}@{k}" for m in self.values["metrics"] for k in self.topk]


@dataclass(frozen=True)
class ModelYaml:
    """A model's YAML with its includes resolved."""

    data_kind: str  # what the data pipeline builds: "sequential", "kg" or "item_attribute"
    layers: list[tuple[str, dict[str, Any]]]  # (file name, its defaults): included files, then the model's

    def keys(self) -> set[str]:
        return {key for _, layer in self.layers for key in layer}


def model_yaml(model: str) -> ModelYaml:
    """Read ``zoo/<Model>.yaml`` and the files it includes; a key set in two of them is an error."""
    path = model_yaml_path(model)
    own = read_yaml(path)
    includes = own.pop("include", [])
    if not isinstance(includes, list) or not all(isinstance(name, str) for name in includes):
        raise ConfigError(f"{path.name}: include must be a list of file names, got {includes!r}")
    data_kind = DATA_KIND.validate(own.pop("data_kind", None), path.name)
    layers = [(name, read_yaml(path.parent / name)) for name in includes] + [(path.name, own)]
    seen: dict[str, str] = {}
    for source, layer in layers:
        for key in layer:
            if key in MODEL_YAML_ONLY_KEYS:
                raise ConfigError(f"{source}: {key} belongs in a model's own YAML, not in an included file")
            if key in seen:
                raise ConfigError(f"{source}: {key} is already set by {seen[key]}; a default lives in one file")
            seen[key] = source
    return ModelYaml(data_kind, layers)


def model_config_type(model: str) -> type[TypedConfig]:
    """The model's typed config (imports the model's module, and so torch)."""
    return get_model_class(model).config_type


def config_fields(model: str) -> list[FieldSpec]:
    """Every typed key ``build_config`` checks for this model: the training keys, then the model's."""
    return [*TrainingConfig.fields(), *model_config_type(model).fields()]


def known_keys(model: str, dataset: str) -> set[str]:
    """Every key the trainer, the data pipeline and this model understand."""
    keys = set(read_yaml(PROPERTIES / "overall.yaml")) | model_yaml(model).keys()
    dataset_yaml = PROPERTIES / "dataset" / f"{dataset}.yaml"
    if dataset_yaml.is_file():
        keys |= set(read_yaml(dataset_yaml))
    return keys


def check_key(key: str, known: set[str], where: str) -> str | None:
    """Raise for an unknown key; return a warning for a RecBole-only key, else None."""
    if key in known or key in {"model", "dataset"}:
        return None
    if key in RECBOLE_ONLY_KEYS:
        return f"{where}: RecBole key {key!r} has no effect in seqtune; ignored"
    raise ConfigError(f"{where}: unknown config key {key!r}{closest(key, sorted(known))}")


def build_config(
    model: str,
    dataset: str = "ml-100k",
    config_files: Iterable[str | Path] = (),
    overrides: Mapping[str, Any] | None = None,
    overrides_source: str = "overrides",
) -> Config:
    model = canonical_model_name(model)
    layers = [("overall.yaml", read_yaml(PROPERTIES / "overall.yaml")), *model_yaml(model).layers]
    dataset_yaml = PROPERTIES / "dataset" / f"{dataset}.yaml"
    if dataset_yaml.is_file():
        layers.append((dataset_yaml.name, read_yaml(dataset_yaml)))
    layers += [(str(f), read_yaml(f)) for f in config_files]
    layers.append((overrides_source, dict(overrides or {})))

    known = known_keys(model, dataset)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    warnings: list[str] = []
    for source, layer in layers:
        for key, value in layer.items():
            if key in MODEL_YAML_ONLY_KEYS:
                raise ConfigError(f"{source}: {key} is fixed by {model}.yaml and cannot be set")
            warning = check_key(key, known, source)
            if warning:
                warnings.append(warning)
                continue
            if key == "model" and canonical_model_name(str(value)) != model:
                raise ConfigError(f"{source}: sets model {value!r} but the run is for {model!r}")
            if key == "dataset" and value != dataset:
                raise ConfigError(f"{source}: sets dataset {value!r} but the run is for {dataset!r}")
            if key in {"model", "dataset"}:
                continue
            values[key] = copy.deepcopy(value)
            sources[key] = source
    config = Config(model=model, dataset=dataset, values=values, sources=sources, warnings=warnings)
    _normalize(config)
    for config_type in (TrainingConfig, model_config_type(model)):  # typed values replace the raw ones
        config.values.update(config_type.from_config(config).as_dict())
    return config


def _normalize(config: Config) -> None:
    """Coerce RecBole's shorthand forms of the evaluation keys and check them against each other."""
    v = config.values
    if isinstance(v["metrics"], str):
        v["metrics"] = [v["metrics"]]
    if isinstance(v["topk"], int):
        v["topk"] = [v["topk"]]
    metrics = []
    for metric in v["metrics"]:
        name = SUPPORTED_METRICS.get(str(metric).lower())
        if name is None:
            raise ConfigError(
                f"{config.sources['metrics']}: unsupported metric {metric!r}"
                f"{closest(str(metric), SUPPORTED_METRICS.values())}; "
                f"supported: {', '.join(SUPPORTED_METRICS.values())}"
            )
        metrics.append(name)
    v["metrics"] = metrics
    if not v["topk"] or any(not isinstance(k, int) or k <= 0 for k in v["topk"]):
        raise ConfigError(f"{config.sources['topk']}: topk must be positive integers, got {v['topk']!r}")
    valid_metric = str(v["valid_metric"]).lower()
    if valid_metric not in config.metric_keys:
        raise ConfigError(
            f"{config.sources['valid_metric']}: valid_metric {v['valid_metric']!r} is not computed; "
            f"choose one of {', '.join(config.metric_keys)}"
        )
    if v.get("valid_metric_bigger") is None:
        v["valid_metric_bigger"] = valid_metric.split("@")[0] not in SMALLER_IS_BETTER
    eval_args = v.get("eval_args") or {}
    split = eval_args.get("split", {"LS": "valid_and_test"})
    if split != {"LS": "valid_and_test"} or eval_args.get("order", "TO") != "TO":
        raise ConfigError(
            f"{config.sources.get('eval_args', 'eval_args')}: only RecBole's sequential protocol is "
            "supported: eval_args {split: {LS: valid_and_test}, order: TO, mode: full}"
        )
    mode = eval_args.get("mode", "full")
    modes = set(mode.values()) if isinstance(mode, dict) else {mode}
    if modes != {"full"}:
        raise ConfigError(f"{config.sources.get('eval_args')}: only full-sort evaluation (mode: full) is supported")
    _check_device(config)


_DEVICE = re.compile(r"auto|cpu|cuda(?::(\d+))?")


def _check_device(config: Config) -> None:
    """A device this machine has: asking for cuda where torch sees none failed every trial, one by one."""
    value = config.values.get("device")
    if value in (None, ""):
        return
    match = _DEVICE.fullmatch(str(value).strip().lower())
    where = config.sources.get("device", "device")
    if match is None:
        raise ConfigError(f"{where}: device must be auto, cpu, cuda or cuda:N, got {value!r}")
    config.values["device"] = match[0]  # torch reads only the lower-case form
    if not match[0].startswith("cuda"):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ConfigError(f"{where}: device {value!r}, but torch {torch.__version__} sees no CUDA device here; "
                          "use cpu (or auto: cuda where there is one)")
    if match[1] is not None and int(match[1]) >= count:
        raise ConfigError(f"{where}: device {value!r}, but torch sees {count} CUDA device(s): cuda:0 to "
                          f"cuda:{count - 1}")
