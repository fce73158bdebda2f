"""The study's plots as PNG files (MLflow artifacts): optimization history, parallel coordinates and
parameter importances, drawn by Optuna's matplotlib visualizations from the study's storage."""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path
from typing import Any

PARALLEL_MARGIN = 0.05  # of each axis's range, above and below: lines at the extremes are not clipped


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
                                    ("parallel_coordinate", parallel_coordinate)]
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


def parallel_coordinate(study: Any) -> Any:
    """Optuna's parallel coordinates, with every trial visible. Optuna sets each axis's limits to the
    values' own range, so the best and the worst trial run along the clipped top and bottom edges, and
    its colour map starts at white, the worst trial's colour. Every axis gets the same margin (each
    parameter's axis is a twin of the objective's: the same share of its range, in log space where it is
    logarithmic, keeps the lines on its ticks), and the colour map starts at a visible blue."""
    import numpy as np
    import optuna.visualization.matplotlib as vis
    from matplotlib.collections import LineCollection
    from matplotlib.colors import ListedColormap

    axes = vis.plot_parallel_coordinate(study)
    for ax in axes.figure.axes:
        if ax.get_label() == "<colorbar>":
            continue
        log = ax.get_yscale() == "log"
        low, high = np.log10(ax.get_ylim()) if log else ax.get_ylim()
        pad = PARALLEL_MARGIN * (high - low)
        ax.set_ylim(*(10 ** np.array([low - pad, high + pad]) if log else (low - pad, high + pad)))
        for lines in ax.collections:
            if isinstance(lines, LineCollection):
                lines.set_cmap(ListedColormap(lines.get_cmap()(np.linspace(0.35, 1.0, 256))))
                if lines.colorbar is not None:
                    lines.colorbar.update_normal(lines)
    return axes
