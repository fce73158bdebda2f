"""The study's plots as PNG files (MLflow artifacts): optimization history, parallel coordinates and
parameter importances, drawn by Optuna's matplotlib visualizations from the study's storage."""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path
from typing import Any


def write_plots(study: Any, out_dir: Path) -> list[Path]:
    """Every plot the study's trials allow (importances need two finished trials and two searched
    parameters: one parameter's importance is 1 by definition); the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis

    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: list[tuple[str, Any]] = [("optimization_history", vis.plot_optimization_history),
                                    ("parallel_coordinate", vis.plot_parallel_coordinate)]
    if len({name for trial in study.trials for name in trial.params}) >= 2:
        # optuna.importance imports scikit-learn (~2 s) for fANOVA; PED-ANOVA itself takes milliseconds
        from optuna.importance import PedAnovaImportanceEvaluator

        plots.append(("param_importances", partial(vis.plot_param_importances,
                                                   evaluator=PedAnovaImportanceEvaluator())))
    for name, plot in plots:
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
