"""Typed model configs: every declared key is coerced and checked by build_config, in every layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from models import registry
from models.config import (
    TrainingConfig,
    build_config,
    config_fields,
    known_keys,
    model_config_type,
    model_yaml,
)
from models.config_types import FieldSpec
from models.data.sequential import data_kind
from models.errors import ConfigError
from models.kg_embed import TransEConfig, TransEParams
from models.registry import ZOO_DIR, available_models

MODELS = ["GRU4Rec", "GRU4RecKG", "KSR", "S3Rec"]
KG_MODELS = ["GRU4RecKG", "KSR"]


def _invalid_cases() -> list[Any]:
    return [
        pytest.param(model, spec, bad, id=f"{model}-{spec.name}-{bad!r}")
        for model in MODELS
        for spec in config_fields(model)
        for bad in spec.invalid_examples()
    ]


def test_every_model_is_covered_and_every_field_has_invalid_examples() -> None:
    assert available_models() == sorted(MODELS)
    for model in MODELS:
        specs = config_fields(model)
        assert len({s.name for s in specs}) == len(specs)  # the training keys and the model's do not overlap
        for spec in specs:
            assert spec.invalid_examples(), spec.name


@pytest.mark.parametrize(("model", "spec", "bad"), _invalid_cases())
def test_each_invalid_example_fails_at_build_time_in_one_line(model: str, spec: FieldSpec, bad: Any) -> None:
    with pytest.raises(ConfigError) as error:
        build_config(model, overrides={spec.name: bad}, overrides_source="command line")
    assert str(error.value) == f"command line: {spec.name} must be {spec.describe()}, got {bad!r}"


@pytest.mark.parametrize(
    ("model", "key", "value", "message"),
    [
        ("GRU4Rec", "dropout_prob", 1.5, "dropout_prob must be in [0, 1), got 1.5"),
        ("GRU4Rec", "dropout_prob", -0.1, "dropout_prob must be in [0, 1), got -0.1"),
        ("GRU4Rec", "hidden_size", 0, "hidden_size must be a positive integer, got 0"),
        ("GRU4Rec", "hidden_size", 128.5, "hidden_size must be a positive integer, got 128.5"),
        ("GRU4Rec", "num_layers", 0, "num_layers must be a positive integer, got 0"),
        ("GRU4Rec", "loss_type", "XYZ", "loss_type must be one of CE, BPR, got 'XYZ'"),
        ("GRU4Rec", "learning_rate", -1, "learning_rate must be a number > 0, got -1"),
        ("GRU4Rec", "weight_decay", -0.5, "weight_decay must be a number >= 0, got -0.5"),
        ("GRU4Rec", "seed", "x", "seed must be an integer, got 'x'"),
        ("GRU4Rec", "train_batch_size", 0, "train_batch_size must be a positive integer, got 0"),
        ("KSR", "freeze_kg", "yes", "freeze_kg must be true or false, got 'yes'"),
        ("KSR", "transe_margin", 0, "transe_margin must be a number > 0, got 0"),
        ("S3Rec", "hidden_act", "GELU", "hidden_act must be one of gelu, relu, swish, tanh, sigmoid, got 'GELU'"),
        ("S3Rec", "pretrain_batch_size", 0, "pretrain_batch_size must be a positive integer or ~, got 0"),
        ("S3Rec", "pretrain_epochs", -1, "pretrain_epochs must be an integer >= 0, got -1"),
    ],
)
def test_messages_say_what_is_allowed(model: str, key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        build_config(model, overrides={key: value})
    assert str(error.value) == f"overrides: {message}"


def test_the_message_names_the_layer_the_bad_value_came_from(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("dropout_prob: 1.5\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: dropout_prob must be in \[0, 1\), got 1.5$"):
        build_config("GRU4Rec", config_files=[bad])
    # a later layer that fixes the value wins: the value is checked once everything is resolved
    assert build_config("GRU4Rec", config_files=[bad], overrides={"dropout_prob": 0.2})["dropout_prob"] == 0.2
    with pytest.raises(ConfigError, match=r"^trial parameters / command line: hidden_size must be"):
        build_config("GRU4Rec", overrides={"hidden_size": 0}, overrides_source="trial parameters / command line")


def test_coercions_are_written_back_into_the_config() -> None:
    config = build_config("GRU4Rec", overrides={"hidden_size": 64.0, "loss_type": "ce", "learning_rate": 1,
                                                "epochs": 3.0, "seed": 7.0, "dropout_prob": 0})
    assert config["hidden_size"] == 64 and type(config["hidden_size"]) is int
    assert config["epochs"] == 3 and type(config["epochs"]) is int
    assert config["seed"] == 7 and type(config["seed"]) is int
    assert config["loss_type"] == "CE"
    assert config["learning_rate"] == 1.0 and type(config["learning_rate"]) is float
    assert config["dropout_prob"] == 0.0 and type(config["dropout_prob"]) is float
    s3rec = build_config("S3Rec", overrides={"train_stage": "AUTO", "layer_norm_eps": "1e-12", "aap_weight": 1,
                                             "pretrain_batch_size": 32.0})
    assert s3rec["train_stage"] == "auto"
    assert s3rec["layer_norm_eps"] == 1e-12  # YAML 1.1 reads 1e-12 as a string; RecBole reads a float
    assert type(s3rec["aap_weight"]) is float and s3rec["pretrain_batch_size"] == 32
    assert s3rec["pretrain_learning_rate"] is None  # ~ is allowed where declared optional


def test_the_model_reads_the_validated_config(synthetic_dir: Path) -> None:
    from models.trainer import prepare

    config = build_config("GRU4Rec", "toy", overrides={"data_path": str(synthetic_dir), "hidden_size": 16.0,
                                                       "embedding_size": 8, "loss_type": "ce"})
    _, model = prepare(config)
    assert model.cfg.hidden_size == 16 and type(model.cfg.hidden_size) is int and model.loss_type == "CE"
    assert model.gru_layers.hidden_size == 16
    with pytest.raises(ConfigError, match=r"GRU4RecConfig: dropout_prob must be in \[0, 1\), got 2"):
        model.cfg.dropout_prob = 2  # assignment is checked too


@pytest.mark.parametrize("model", MODELS)
def test_yaml_keys_are_exactly_the_declared_fields(model: str) -> None:
    declared = [spec.name for spec in model_config_type(model).fields()]
    assert len(declared) == len(set(declared))
    assert model_yaml(model).keys() == set(declared)
    # and the training keys are declared once, in overall.yaml's layer
    assert not {spec.name for spec in TrainingConfig.fields()} & set(declared)


@pytest.mark.parametrize("model", MODELS)
def test_data_kind_comes_from_the_model_yaml_and_cannot_be_set(model: str) -> None:
    expected = {"GRU4Rec": "sequential", "GRU4RecKG": "kg", "KSR": "kg", "S3Rec": "item_attribute"}[model]
    assert data_kind(model) == expected
    assert "data_kind" not in known_keys(model, "ml-100k") and "data_kind" not in build_config(model)
    with pytest.raises(ConfigError, match=rf"^command line: data_kind is fixed by {model}.yaml and cannot be set$"):
        build_config(model, overrides={"data_kind": "sequential"}, overrides_source="command line")


def test_transe_keys_live_in_one_shared_file() -> None:
    transe_keys = {spec.name for spec in TransEConfig.fields()}
    assert transe_keys == {"transe_epochs", "transe_learning_rate", "transe_margin", "transe_batch_size",
                           "transe_seed"}
    holders = {path.name: set(yaml.safe_load(path.read_text())) & transe_keys for path in ZOO_DIR.glob("*.yaml")}
    assert {name for name, keys in holders.items() if keys} == {"_transe.yaml"}
    assert holders["_transe.yaml"] == transe_keys
    shared = yaml.safe_load((ZOO_DIR / "_transe.yaml").read_text())
    for model in KG_MODELS:
        assert issubclass(model_config_type(model), TransEConfig)
        config = build_config(model)
        assert {key: config.sources[key] for key in transe_keys} == dict.fromkeys(transe_keys, "_transe.yaml")
        assert {key: config[key] for key in transe_keys} == shared
        params = TransEParams.from_config(config, 64)
        assert (params.epochs, params.learning_rate, params.margin, params.batch_size, params.seed) == (
            shared["transe_epochs"], shared["transe_learning_rate"], shared["transe_margin"],
            shared["transe_batch_size"], shared["transe_seed"])
    assert TransEParams(dim=64) == TransEParams.from_config(build_config("KSR"), 64)  # the same defaults
    for model in set(MODELS) - set(KG_MODELS):
        assert not transe_keys & known_keys(model, "ml-100k")


def test_transe_params_take_the_typed_values() -> None:
    params = TransEParams.from_config(build_config("KSR", overrides={"transe_epochs": 5.0, "transe_margin": 2}), 8)
    assert params == TransEParams(dim=8, epochs=5, margin=2.0)
    assert type(params.epochs) is int and type(params.margin) is float


def _zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own: str, shared: str = "a: 1\n") -> None:
    (tmp_path / "Toy.yaml").write_text(own)
    (tmp_path / "_shared.yaml").write_text(shared)
    monkeypatch.setattr(registry, "ZOO_DIR", tmp_path)


def test_include_merges_shared_defaults_and_refuses_a_second_source(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _zoo(tmp_path, monkeypatch, "data_kind: kg\ninclude: [_shared.yaml]\nb: 2\n")
    assert available_models() == ["Toy"]  # _*.yaml files are shared defaults, not models
    spec = model_yaml("Toy")
    assert spec.data_kind == "kg" and spec.layers == [("_shared.yaml", {"a": 1}), ("Toy.yaml", {"b": 2})]
    _zoo(tmp_path, monkeypatch, "data_kind: kg\ninclude: [_shared.yaml]\na: 2\n")
    with pytest.raises(ConfigError, match=r"^Toy.yaml: a is already set by _shared.yaml; a default lives in one file$"):
        model_yaml("Toy")
    _zoo(tmp_path, monkeypatch, "data_kind: kg\ninclude: [_shared.yaml]\n", shared="data_kind: sequential\n")
    with pytest.raises(ConfigError, match=r"^_shared.yaml: data_kind belongs in a model's own YAML"):
        model_yaml("Toy")
    _zoo(tmp_path, monkeypatch, "data_kind: graph\n")
    with pytest.raises(ConfigError, match=r"^Toy.yaml: data_kind must be one of sequential, kg, item_attribute, got"):
        model_yaml("Toy")
    _zoo(tmp_path, monkeypatch, "data_kind: kg\ninclude: _shared.yaml\n")
    with pytest.raises(ConfigError, match=r"^Toy.yaml: include must be a list of file names"):
        model_yaml("Toy")
