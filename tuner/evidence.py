"""What the learning-curve table and its replay decided (issue 15; docs/tuning.md).

The table (bench/learning_curves.py) trains every point of the seed's GRU4Rec learning_rate x dropout_prob
grid to RecBole's early stop on ml-100k; bench/replay.py replays every strategy on it with measured epoch
costs and writes these values to bench/results/replay.json ("defaults"). tests/test_plan.py checks that
the constants here are the ones it wrote, so a new table cannot leave them stale.
"""

from __future__ import annotations

import math
import statistics

# Mean epochs a trial trains before RecBole's early stop (10 epochs without improvement) or the 50-epoch cap:
# trial_epochs(10, 50), rounded.
EXPECTED_EPOCHS = 31

# The epoch (from 1) of each table trial's best valid MRR@10: a trial trains to it, then stopping_step + 1
# evaluations without improvement (RecBole stops when its count passes stopping_step), or to the cap.
TABLE_PEAK_EPOCHS = (4, 4, 4, 4, 8, 8, 10, 12, 12, 14, 14, 14, 17, 17, 17, 17, 17, 17, 18, 19, 19, 31, 39, 39, 39, 39,
                     39, 45, 46, 48)


def trial_epochs(stopping_step: int, epochs_cap: int, eval_step: int = 1) -> float:
    """Mean epochs a trial trains under this early stop and cap, over the table's peaks (stopping_step 10,
    cap 50, evaluation every epoch: the table's own mean). Evaluating every ``eval_step`` epochs, a peak is
    seen at the next evaluation and patience counts evaluations; 0 never evaluates, so never stops early.
    A table trial that reached its 50-epoch cap is taken to peak where it did, and a shorter stop may end
    a trial before a late peak: an estimate, not a bound."""
    if eval_step <= 0:
        return float(epochs_cap)
    return statistics.fmean(min(epochs_cap, (math.ceil(peak / eval_step) + stopping_step + 1) * eval_step)
                            for peak in TABLE_PEAK_EPOCHS)


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
