"""bench/replay.py on a small synthetic learning-curve table: the virtual clock, RecBole's early stop, and
every strategy of the tool over a grid giving each point its first rung exactly once."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import replay  # noqa: E402

from tuner.space import parse_space_text  # noqa: E402

RATES, DROPOUTS = [0.01, 0.005, 0.001, 0.0005, 0.0001], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
SPACE = f"learning_rate choice {RATES}\ndropout_prob choice {DROPOUTS}\n"
COST = replay.TrialCost(train=10.0, valid=1.0, setup=2.0)


def table() -> list[replay.Point]:
    """30 points as the seed's grid; curves of different lengths and heights (the best: lr 0.01, dropout 0.2)."""
    points = []
    for i, lr in enumerate(RATES):
        for j, dropout in enumerate(DROPOUTS):
            top = 0.05 - 0.005 * i - 0.002 * abs(j - 2)
            epochs = 4 + i + j
            valid = tuple(top * (k + 1) / epochs for k in range(epochs))
            points.append(replay.Point({"learning_rate": lr, "dropout_prob": dropout}, valid, max(valid), top / 2))
    return points


def test_a_serial_grid_costs_its_trials_one_after_another() -> None:
    points = table()
    run = replay.replay_tool(points, parse_space_text(SPACE, "s.test"), replay.Strategy("grid", "grid"), 1, 0, COST)
    expected = sum(COST.setup + COST.epochs(len(p.valid)) + COST.valid for p in points)
    assert run.wall == pytest.approx(expected)
    assert run.trials == len(points) and len(run.finished) == len(points) and run.pruned == 0
    assert run.chosen()[1] == replay.grid_best(points).best_valid


def test_a_capped_study_replays_the_first_epochs_of_each_curve() -> None:
    """bench/replay.py check compares real studies capped at a few epochs with the table cut there."""
    full = table()
    points = replay.truncated(full, 3)
    assert all(p.valid == q.valid[:3] and p.best_valid == max(q.valid[:3]) for p, q in zip(points, full, strict=True))
    run = replay.replay_tool(points, parse_space_text(SPACE, "s.test"), replay.Strategy("grid", "grid"), 1, 0, COST,
                             max_epochs=3)
    assert run.wall == pytest.approx(len(points) * (COST.setup + COST.epochs(3) + COST.valid))
    assert run.chosen()[3] == replay.grid_best(points).params


def test_two_workers_halve_a_grid_of_equal_trials() -> None:
    points = [replay.Point(p.params, (0.01,) * 5, 0.01, 0.005) for p in table()]
    space = parse_space_text(SPACE, "s.test")
    one = replay.replay_tool(points, space, replay.Strategy("grid", "grid"), 1, 0, COST)
    two = replay.replay_tool(points, space, replay.Strategy("grid", "grid"), 2, 0, COST)
    assert two.wall == pytest.approx(one.wall / 2)


def test_recbole_stops_after_ten_trials_without_improvement() -> None:
    """hyperopt's no_progress_loss(10): the first trial counts as one, an improvement resets to 0."""
    points, stopped_short = table(), 0
    for seed in range(20):
        run = replay.replay_recbole(points, COST, seed)
        scores = [valid for _, valid, *_ in run.finished]
        best, streak = scores[0], 1
        for score in scores[1:]:
            best, streak = (score, 0) if score > best else (best, streak + 1)
        assert streak == 10 or len(scores) == len(points)
        stopped_short += len(scores) < len(points)
        finish_times = [t for t, *_ in run.finished]
        assert finish_times == sorted(set(finish_times))  # one trial after another
    assert stopped_short > 0  # the early stop fired in some orders


@pytest.mark.parametrize("pruner", ["halving", "hyperband", "median", "asha"])
def test_every_grid_point_gets_its_first_rung_exactly_once(pruner: str) -> None:
    points = table()
    space = parse_space_text(SPACE, "s.test")
    for workers in (1, 3):
        run = replay.replay_tool(points, space, replay.Strategy(pruner, "grid", pruner), workers, 7, COST)
        assert run.trials == len(points)  # each point once: no trial twice, none skipped
        assert run.epochs >= len(points)  # ... and each trained at least its first epoch
        assert run.pruned + len(run.finished) == len(points)
        assert run.pruned > 0 or pruner == "median"  # a pruner that never prunes here would be a broken replay


def test_summary_counts_a_run_that_misses_the_target_at_its_full_length() -> None:
    points = table()
    runs = [replay.replay_recbole(points, COST, seed) for seed in range(20)]
    row = replay.summarize(runs, points)[0]
    target = replay.grid_best(points).best_valid * (1 - replay.WITHIN)
    missed = [r for r in runs if r.time_to(target) is None]
    assert missed  # some orders stop before the grid's best
    assert row["reached"] == len(runs) - len(missed)
    assert row["chosen_below_target"] == len(missed)
    assert row["time_to_target_s"]["max"] >= max([r.wall for r in missed], default=0.0)


def test_a_tool_run_that_misses_the_target_never_counts_as_reaching_it() -> None:
    """A best that rises only at its last epoch: successive halving prunes it at the first rung in every
    order, so its time to the target is infinite, not its (short) wall time."""
    points = table()
    late = replay.Point({"learning_rate": 0.0001, "dropout_prob": 0.5}, (0.001,) * 8 + (0.09,), 0.09, 0.04)
    points = [late if p.params == late.params else p for p in points]
    halving = next(s for s in replay.STRATEGIES if s.pruner == "halving")
    runs = [replay.replay_tool(points, parse_space_text(SPACE, "s.test"), halving, 2, s, COST) for s in range(5)]
    target = replay.targets(points)["within_1pct"]
    assert all(r.time_to(target) is None for r in runs)
    row = replay.summarize(runs, points)[0]
    assert row["reached"] == 0 and row["time_to_target_s"]["median"] == float("inf")
    assert row["wall_s"]["max"] < float("inf")


def test_the_noise_floor_is_a_lower_bound_on_the_standard_error() -> None:
    """Against the exact standard error of users whose reciprocal ranks are known."""
    ranks = [1.0] * 5 + [0.5] * 10 + [0.2] * 20 + [0.0] * 965
    mrr, hit = sum(ranks) / len(ranks), sum(r > 0 for r in ranks) / len(ranks)
    exact = (sum((r - mrr) ** 2 for r in ranks) / len(ranks) / len(ranks)) ** 0.5
    floor = replay.mrr_standard_error_floor(mrr, hit, users=len(ranks))
    assert 0 < floor <= exact
    assert replay.mrr_standard_error_floor(0.05, 0.0) == 0.0


def test_no_strategy_beats_the_oracle() -> None:
    """The bound: the cheapest trial that finishes at the target, trained first and alone."""
    points = table()
    target = replay.targets(points)["within_1pct"]
    oracle = replay.oracle_seconds(points, target, COST)
    space = parse_space_text(SPACE, "s.test")
    for strategy in replay.STRATEGIES[1:]:
        for seed in range(3):
            run = replay.replay_tool(points, space, strategy, 1, seed, COST)
            reached = run.time_to(target)
            assert reached is None or reached >= oracle - 1e-9


def test_rung_synchronous_halving_gives_every_point_its_first_rung_first() -> None:
    points = table()
    space = parse_space_text(SPACE, "s.test")
    for workers in (1, 3):
        run = replay.replay_rung_synchronous(points, space, workers, 0, COST)
        assert run.trials == len(points) and run.pruned + len(run.finished) == len(points)
        first_rung = math.ceil(len(points) / workers) * (COST.setup + COST.epochs(1))
        assert min(t for t, *_ in run.finished) >= first_rung - 1e-9  # nothing finishes before the barrier
    serial = replay.replay_rung_synchronous(points, space, 1, 0, COST)
    assert serial.epochs < sum(len(p.valid) for p in points)  # it prunes


def test_the_checks_real_studies_run_on_points_the_table_has() -> None:
    """Both real studies of `replay.py check` are sub-grids of the table's space, and the table
    (bench/results/learning_curves_gru4rec.json, as far as it is built) has every point of each."""
    points, _ = replay.load_table()
    have = {p.key for p in points}
    full = parse_space_text(replay.SPACE.read_text(), replay.SPACE.name)
    in_full = {replay.params_key(full.to_config_values(p)) for p in full.grid()}
    for text, size in ((replay.CHECK_GRID, 8), (replay.CHECK_HYPERBAND_GRID, 18)):
        space = parse_space_text(text, "check.test")
        keys = {replay.params_key(space.to_config_values(p)) for p in space.grid()}
        assert len(keys) == size and keys <= in_full and keys <= have


def test_the_docs_reading_of_the_replay_is_its_numbers() -> None:
    """docs/tuning.md's prose on the table and the verdict is printed by `replay.py table` from
    replay.json and the table, so no number in it goes stale when the table grows."""
    from dataclasses import asdict, replace

    points = [replace(p, best_valid_hit=0.2) for p in table()]
    costs = replay.Costs(COST, replay.TrialCost(train=17.0, valid=1.5, setup=2.0),
                         replay.TrialCost(train=30.0, valid=2.0, setup=3.0))
    rows = replay.summarize(replay.replay_all(points, costs, [0, 1], [2, 8]), points)
    result = {"rows": rows, "verdict": replay.verdict(rows, points, costs),
              "costs": {k: asdict(getattr(costs, k)) for k in ("serial", "parallel", "recbole")}}
    said = replay.verdict_findings(result, points)
    first, noise = result["verdict"]["target_1pct"], result["verdict"]["target_noise"]
    assert said.count("\n") == 7 and said.startswith("1. ") and "\n8. " in said
    for number in (f"{first['bound_speedup']:.1f}x", f"{noise['speedup_vs_recbole']:.2f}x", "1.18x throughput",
                   f"{first['oracle_s'] / 60:.0f} min"):
        assert number in said
    facts = replay.table_findings(points)
    assert "Trials run 4 to 13 epochs" in facts and "lr 0.01, dropout 0.2 reaches 0.0500" in facts


def test_the_docs_blocks_are_spliced_between_their_markers_and_a_missing_one_is_an_error() -> None:
    doc = "head\n<!-- replay.py table: tables -->\nold\nlines\n<!-- /replay.py table: tables -->\ntail\n"
    assert replay.splice(doc, {"tables": "new"}) == \
        "head\n<!-- replay.py table: tables -->\nnew\n<!-- /replay.py table: tables -->\ntail\n"
    with pytest.raises(SystemExit, match="no block 'defaults'"):
        replay.splice(doc, {"defaults": "x"})
    text = replay.DOC.read_text()  # the real doc has every block `replay.py table --write` fills
    for name in ("tables", "table-findings", "verdict-findings", "defaults"):
        assert f"<!-- replay.py table: {name} -->" in text and f"<!-- /replay.py table: {name} -->" in text
