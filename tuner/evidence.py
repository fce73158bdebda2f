"""What the learning-curve table and its replay decided (issue 15; docs/tuning.md).

The table (bench/learning_curves.py) trains every point of the seed's GRU4Rec learning_rate x dropout_prob
grid to RecBole's early stop on ml-100k; bench/replay.py replays every strategy on it with measured epoch
costs and writes these values to bench/results/replay.json ("defaults"). tests/test_plan.py checks that
the constants here are the ones it wrote, so a new table cannot leave them stale.
"""

from __future__ import annotations

# Mean epochs a trial trains before RecBole's early stop (10 epochs without improvement) or the 50-epoch cap.
EXPECTED_EPOCHS = 31

# Epochs a pruner lets a grid train, as a fraction of the same grid unpruned (median over the replay's
# seeds, 1 worker). It holds where trials run to early stop: a cap shorter than the pruner's later rungs
# prunes less, so the plan applies it only when the cap is at least EXPECTED_EPOCHS.
PRUNED_EPOCH_FRACTION = {"median": 0.26, "halving": 0.2, "hyperband": 0.37, "asha": 0.24, "sync-halving": 0.13}

# What --budget runs: over a grid, the pruner of the replay's fastest Optuna grid strategy to a config within
# the metric's noise of the grid's best at 2 workers, among those that finish a config before the first rung
# is over (not sync-halving: a budget may end before any point passed its rungs); over a sampled space, TPE
# with Hyperband (the choice: the replay's TPE strategies are compared in docs/tuning.md). Ray has
# ASHA only.
BUDGET_GRID_PRUNER = "halving"
BUDGET_SAMPLED_PRUNER = "hyperband"


def budget_pruner(algo: str, tool: str) -> str:
    if tool == "ray":
        return "asha"
    return BUDGET_GRID_PRUNER if algo == "grid" else BUDGET_SAMPLED_PRUNER


def pruned_epoch_fraction(pruner: str, epochs_cap: int) -> float:
    """The share of an unpruned study's epochs that ``pruner`` trains (1.0: no pruner, or a short cap)."""
    return PRUNED_EPOCH_FRACTION.get(pruner, 1.0) if epochs_cap >= EXPECTED_EPOCHS else 1.0
