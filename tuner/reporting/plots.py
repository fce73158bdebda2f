"""The study's plots as PNG files (MLflow artifacts): optimization history, parallel coordinates and
parameter importances, drawn by Optuna's matplotlib visualizations from the study's storage."""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path
from typing import Any


def write_plots(study: Any, out_dir: Path) -> list[Path]:
    """Every plot the study's trials allow (importances need two finished trials); the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis
    from optuna.importance import PedAnovaImportanceEvaluator

    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, plot in (("optimization_history", vis.plot_optimization_history),
                       ("parallel_coordinate", vis.plot_parallel_coordinate),
                       # PED-ANOVA: milliseconds; fANOVA's forest (and scikit-learn's import) ~1 s
                       ("param_importances", partial(vis.plot_param_importances,
                                                     evaluator=PedAnovaImportanceEvaluator()))):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = plot(study)
            figure = getattr(axes, "figure", None) or plt.gcf()
            path = out_dir / f"{name}.png"
            figure.savefig(path, dpi=90, bbox_inches="tight")
            written.append(path)
        except (ValueError, RuntimeError, TypeError):  # too few finished trials for this plot
            pass
        finally:
            plt.close("all")
    return written
