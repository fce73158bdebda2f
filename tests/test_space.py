from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from tuner.space import Choice, LogUniform, QUniform, SpaceError, Uniform, parse_space_file, parse_space_text


def test_every_distribution_and_comments() -> None:
    space = parse_space_text(
        "# RecBole's example, with comments\n"
        "learning_rate loguniform -8,0\n"
        "\n"
        "embedding_size choice [64,96,128]   # sizes\n"
        "mlp_hidden_size choice ['[64,64,64]','[128, 128]']\n"
        "dropout_prob uniform 0.0, 0.5\n"
        "hidden_size quniform 32,128,32\n"
        "loss_type choice ['CE', 'BPR']\n",
        "h.test",
    )
    p = {n: q.distribution for n, q in space.parameters.items()}
    assert p["learning_rate"] == LogUniform(-8.0, 0.0)
    assert p["embedding_size"] == Choice((64, 96, 128))
    assert p["mlp_hidden_size"] == Choice(("[64,64,64]", "[128,128]"))  # spaces removed, as RecBole
    assert p["dropout_prob"] == Uniform(0.0, 0.5)
    assert p["hidden_size"] == QUniform(32.0, 128.0, 32.0)
    assert space.parameters["loss_type"].line == 8
    assert not space.is_grid
    values = space.to_config_values({"mlp_hidden_size": "[128,128]", "hidden_size": 95.99999, "loss_type": "CE"})
    assert values == {"mlp_hidden_size": [128, 128], "hidden_size": 96.0, "loss_type": "CE"}


def test_grid_size_and_points() -> None:
    space = parse_space_text("a choice [1, 2, 3]\nb choice [True, False]\nc choice ['x']\n", "h")
    assert space.is_grid and space.grid_size == 6
    assert {tuple(sorted(p.items())) for p in space.grid()} == {
        (("a", a), ("b", b), ("c", "x")) for a in (1, 2, 3) for b in (True, False)
    }


def test_loguniform_uses_natural_log_exponents() -> None:
    dist = LogUniform(-8, 0)
    low, high = dist.bounds
    assert low == pytest.approx(math.exp(-8)) and high == 1.0
    optuna_dist = dist.to_optuna()
    assert optuna_dist.log and optuna_dist.low == pytest.approx(3.3546e-4, rel=1e-4)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = [dist.suggest(study.ask(), "lr") for _ in range(200)]
    assert all(low <= v <= high for v in values)
    assert min(values) < 0.01  # log-uniform: small values are common


def test_quniform_steps() -> None:
    dist = QUniform(0.0, 0.5, 0.1)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    values = {dist.from_optuna(dist.suggest(study.ask(), "p")) for _ in range(100)}
    assert values == {0.0, 0.1, 0.2, 0.3, 0.4, 0.5}
    assert QUniform(10, 100, 25).to_optuna().low == 0 and QUniform(10, 100, 25).to_optuna().high == 100


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr normal 0,1", "h.test:1: unknown distribution 'normal'"),
        ("lr choise [1]", "h.test:1: unknown distribution 'choise' (did you mean 'choice'?)"),
        ("a choice [1]\n\na choice [2]", "h.test:3: duplicate parameter 'a' (first defined on line 1)"),
        ("a choice []", "h.test:1: choice list is empty"),
        ("a choice [1, 1]", "h.test:1: choice list has repeated values"),
        ("a uniform 1,1", "h.test:1: uniform needs low < high, got low=1, high=1"),
        ("a loguniform 0,-1", "h.test:1: loguniform needs low < high"),
        ("a quniform 0,10,0", "h.test:1: quniform needs q > 0, got q=0"),
        ("a quniform 0,10", "h.test:1: quniform expects low,high,q"),
        ("a uniform x,1", "h.test:1: uniform expects numbers low,high"),
        ("a choice [os.system('x')]", "h.test:1: choice expects a list of literals"),
        ("a choice __import__('os')", "h.test:1: choice expects a list of literals"),
        ("a choice 5", "h.test:1: choice expects a list like"),
        ("a choice", "h.test:1: expected 'name distribution value'"),
        ("# only comments\n", "h.test: no parameters"),
    ],
)
def test_errors_name_file_line_and_expectation(text: str, message: str) -> None:
    with pytest.raises(SpaceError) as info:
        parse_space_text(text, "h.test")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_key_for_model_and_missing_file(tmp_path: Path) -> None:
    from models.config import known_keys

    space = parse_space_text("learning_rate choice [0.1]\nhiden_size choice [8]\n", "h.test")
    with pytest.raises(SpaceError, match=r"h.test:2: unknown parameter 'hiden_size' for model GRU4Rec "
                                         r"\(did you mean 'hidden_size'\?\)"):
        space.check_keys(known_keys("GRU4Rec", "ml-100k"), "model GRU4Rec")
    with pytest.raises(SpaceError, match="nope.test: params file not found"):
        parse_space_file(tmp_path / "nope.test")
