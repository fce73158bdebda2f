from __future__ import annotations

from pathlib import Path

import pytest

from models.config import build_config, parse_value
from models.errors import ConfigError


def test_layering_order(tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    first.write_text("learning_rate: 0.01\nhidden_size: 32\nepochs: 7\n")
    second = tmp_path / "b.yaml"
    second.write_text("hidden_size: 16\n")
    config = build_config("GRU4Rec", "ml-100k", [first, second], {"epochs": 3})
    assert config["train_batch_size"] == 2048  # overall.yaml
    assert config["dropout_prob"] == 0.3  # model yaml
    assert config["MAX_ITEM_LIST_LENGTH"] == 50  # dataset yaml
    assert config["learning_rate"] == 0.01 and config.sources["learning_rate"] == str(first)
    assert config["hidden_size"] == 16  # later config file wins
    assert config["epochs"] == 3 and config.sources["epochs"] == "overrides"
    assert config["valid_metric_bigger"] is True
    assert config.metric_keys == ["recall@10", "mrr@10", "ndcg@10", "hit@10", "precision@10"]


def test_unknown_key_suggests_closest(tmp_path: Path) -> None:
    expected = r"overrides: unknown config key 'learnig_rate' \(did you mean 'learning_rate'\?\)"
    with pytest.raises(ConfigError, match=expected):
        build_config("GRU4Rec", overrides={"learnig_rate": 0.1})
    bad = tmp_path / "c.yaml"
    bad.write_text("hiden_size: 3\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown config key 'hiden_size' \(did you mean 'hidden_size'\?\)"):
        build_config("GRU4Rec", config_files=[bad])


def test_recbole_only_keys_warn() -> None:
    config = build_config("GRU4Rec", overrides={"gpu_id": "0", "show_progress": False})
    assert any("gpu_id" in w for w in config.warnings)
    assert "gpu_id" not in config


def test_unknown_model_and_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown model 'GRU5Rec' \(did you mean 'GRU4Rec'\?\)"):
        build_config("GRU5Rec")
    with pytest.raises(ConfigError, match="valid_metric 'MRR@20' is not computed"):
        build_config("GRU4Rec", overrides={"valid_metric": "MRR@20"})
    with pytest.raises(ConfigError, match="unsupported metric 'AUC'"):
        build_config("GRU4Rec", overrides={"metrics": ["AUC"]})
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="broken.yaml:"):
        build_config("GRU4Rec", config_files=[broken])
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        build_config("GRU4Rec", config_files=[tmp_path / "missing.yaml"])


def test_smaller_is_better_metric_and_model_case() -> None:
    assert build_config("gru4rec").model == "GRU4Rec"
    assert build_config("GRU4Rec", overrides={"valid_metric": "NDCG@10"})["valid_metric_bigger"] is True


def test_parse_value_never_evaluates_code() -> None:
    assert parse_value("[64, 128]") == [64, 128]
    assert parse_value("0.001") == 0.001
    assert parse_value("true") is True and parse_value("None") is None
    assert parse_value("CE") == "CE"
    assert parse_value("__import__('os').system('echo pwned')") == "__import__('os').system('echo pwned')"


def test_a_config_file_is_read_again_when_it_changes_and_callers_get_their_own_copy(tmp_path: Path) -> None:
    """read_yaml keeps parsed files by path, mtime and size: an edited file is parsed again, and a
    caller that changes what it got does not change what the next caller gets."""
    import os

    from models.config import read_yaml

    path = tmp_path / "c.yaml"
    path.write_text("hidden_size: 32\nmetrics: [MRR]\n")
    first = read_yaml(path)
    first["metrics"].append("NDCG")
    assert read_yaml(path) == {"hidden_size": 32, "metrics": ["MRR"]}
    stat = path.stat()
    path.write_text("hidden_size: 64\nmetrics: [MRR]\n")  # same size: the mtime tells them apart
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert build_config("GRU4Rec", "ml-100k", [path])["hidden_size"] == 64
    path.write_text("hidden_size: [\n")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: not valid YAML"):
        read_yaml(path)


def test_the_device_is_one_this_machine_has() -> None:
    """--device cuda where torch sees no GPU failed every trial, one by one, with torch's assertion; now one
    line before anything runs. The form is checked too, and "CPU" is read as torch's "cpu"."""
    import torch

    with pytest.raises(ConfigError, match=r"overrides: device must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        build_config("GRU4Rec", overrides={"device": "gpu"})
    assert build_config("GRU4Rec", overrides={"device": "CPU"})["device"] == "cpu"
    assert build_config("GRU4Rec")["device"] == "auto"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        with pytest.raises(ConfigError, match=r"device 'cuda', but torch .* sees no CUDA device here; use cpu"):
            build_config("GRU4Rec", overrides={"device": "cuda"})
    else:  # a GPU machine: its devices pass, one past them does not
        assert build_config("GRU4Rec", overrides={"device": f"cuda:{count - 1}"})["device"] == f"cuda:{count - 1}"
        with pytest.raises(ConfigError, match=rf"device 'cuda:{count}', but torch sees {count} CUDA device"):
            build_config("GRU4Rec", overrides={"device": f"cuda:{count}"})
