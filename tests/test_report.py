"""report.html rendered from trial records: every section, the best trial marked, the anytime curve and
learning curves drawn, text escaped, and nothing that would fetch from a network."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from tuner.reporting.report import SECTIONS, StudyFacts, render, write_report
from tuner.trial import TrialRecord, TrialState

FACTS = StudyFacts("s<1>", "GRU4Rec", "toy", "MRR@10", True, ("plan: 3 trials (grid)",), "run_hyper.py --x", 12.0, 12.0,
                   "http://127.0.0.1:5000/#/experiments/1/runs?viewStateShareKey=seqtune")


def _record(number: int, state: TrialState, score: float | None, error: str | None = None) -> TrialRecord:
    curve = [{"epoch": e, "train_loss": 5.0 - e, "valid_result": {"mrr@10": (score or 0) * (e + 1) / 3}}
             for e in range(3 if state != TrialState.PRUNED else 1)] if score is not None else None
    return TrialRecord(number, state, {"learning_rate": 10.0 ** -(number + 2), "layers": "<b>"},
                       best_valid_result={"mrr@10": score} if score is not None else {},
                       test_result={"mrr@10": score / 2} if score is not None else {}, curve=curve,
                       started_at=1000.0 + number, finished_at=1010.0 + 5 * number if state.finished else None,
                       epochs_run=len(curve) if curve else None, seconds=3.0, error=error)


def records() -> list[TrialRecord]:
    return [_record(0, TrialState.COMPLETE, 0.03), _record(1, TrialState.COMPLETE, 0.05),
            _record(2, TrialState.PRUNED, 0.01), _record(3, TrialState.FAIL, None, "ValueError: <bad>"),
            _record(4, TrialState.WAITING, None)]


def test_every_section_with_its_content(tmp_path: Path) -> None:
    page = write_report(tmp_path / "report.html", FACTS, records(), {}).read_text()
    assert re.findall(r"<h2>(.*?)</h2>", page) == list(SECTIONS)
    assert "plan: 3 trials (grid)" in page and "run_hyper.py --x" in page
    assert "5 trials: 2 complete, 1 pruned, 1 failed, 1 waiting, 0 running; this run took 12 s." in page
    assert "Best: trial 1, valid MRR@10 0.0500, test MRR@10 0.0250" in page
    best_row = re.search(r"<tr class='best'>(.*?)</tr>", page)
    assert best_row is not None and best_row.group(1).startswith("<td>1</td><td>complete</td>")
    assert page.count("<tr") == 1 + 5  # header and every trial (the report has no row limit)
    # anytime curve and learning curves drawn; the plots of Optuna are absent here and say why
    assert page.count("src='data:image/png;base64,") == 2
    assert "needs at least two finished trials" in page
    assert "needs two searched parameters and two finished trials" in page
    assert "viewStateShareKey=seqtune" in page
    resumed = render(dataclasses.replace(FACTS, study_seconds=12.0 + 3600.0), records(), {})
    assert "this run took 12 s, the study 60 min over every run of it." in resumed


def test_text_is_escaped_and_nothing_is_fetched() -> None:
    page = render(FACTS, records(), {})
    assert "<b>" not in page and "&lt;b&gt;" in page and "ValueError: &lt;bad&gt;" in page and "s&lt;1&gt;" in page
    assert not re.search(r"<(script|link|iframe)|@import|url\(", page)  # no script, stylesheet or font
    assert not re.search(r"src=['\"](?!data:)", page)  # every image inline


def test_a_study_with_no_finished_trial_still_reports() -> None:
    page = render(FACTS, [_record(0, TrialState.FAIL, None, "RuntimeError: x")], {})
    assert "No trial finished." in page and "First failure: trial 0" in page
    assert "no trial has finished yet" in page and "no trial has a learning curve yet" in page


def test_importances_are_drawn_only_where_there_is_something_to_compare(tmp_path: Path) -> None:
    """One searched parameter's importance is 1 by definition: no plot (and no scikit-learn import)."""
    import optuna

    from tuner.reporting.plots import write_plots

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for names, expected in ((["lr"], 2), (["lr", "dropout"], 3)):
        study = optuna.create_study(direction="maximize")
        study.optimize(lambda t, names=names: sum(t.suggest_float(n, 0.0, 1.0) for n in names), n_trials=6)
        written = write_plots(study, tmp_path / str(len(names)))
        assert len(written) == expected
        assert any(p.name == "param_importances.png" for p in written) == (len(names) > 1)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_parallel_coordinates_keep_the_best_and_worst_trial_inside_the_frame_and_visible() -> None:
    """Optuna draws them on the clipped top and bottom edges, the worst in white: both were invisible."""
    import optuna
    from matplotlib.collections import LineCollection

    from tuner.reporting.plots import parallel_coordinate

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scores = {(16, 0.001): 0.0772, (16, 0.01): 0.0724, (8, 0.01): 0.0526, (8, 0.001): 0.0422}
    study = optuna.create_study(direction="maximize")
    for hidden, rate in scores:
        study.enqueue_trial({"hidden_size": hidden, "learning_rate": rate})
    study.optimize(lambda t: scores[(t.suggest_categorical("hidden_size", [8, 16]),
                                     t.suggest_float("learning_rate", 0.001, 0.01, log=True))], n_trials=4)
    axes = parallel_coordinate(study)
    twins = [ax for ax in axes.figure.axes if ax is not axes and ax.get_label() != "<colorbar>"]
    rate_axis = next(ax for ax in twins if ax.get_yscale() == "log")

    def height(ax, value: float) -> float:  # where a value sits, as a share of the axis's height
        return float(ax.transAxes.inverted().transform(ax.transData.transform((0.0, value)))[1])

    for ax, worst, best in ((axes, 0.0422, 0.0772), (rate_axis, 0.001, 0.01)):
        assert 0.02 < height(ax, worst) < height(ax, best) < 0.98  # inside the frame, not on its edges
    assert height(rate_axis, 0.001) == pytest.approx(height(axes, 0.0422))  # the twins stay aligned
    lines = next(c for c in axes.collections if isinstance(c, LineCollection))
    worst_colour = lines.get_cmap()(lines.norm(0.0422))
    assert sum(worst_colour[:3]) < 2.4  # not white on the white legend, nor lost on the grey plot area
    import matplotlib.pyplot as plt

    plt.close("all")


def test_learning_curves_show_a_one_epoch_trial_and_keep_the_legend_off_the_curves() -> None:
    from tuner.reporting.report import curves_figure

    fig = curves_figure(records(), FACTS)
    valid_ax, loss_ax = fig.axes
    lines = {line.get_label(): line for line in valid_ax.get_lines()}
    pruned = next(line for label, line in lines.items() if label.startswith("#2 "))  # pruned after one epoch
    assert len(pruned.get_xdata()) == 1 and pruned.get_marker() == "o"  # a point: a line of one point is invisible
    assert all(line.get_marker() in ("None", None, "") for label, line in lines.items() if not label.startswith("#2 "))
    assert valid_ax.get_legend() is None and loss_ax.get_legend() is not None
    fig.canvas.draw()
    legend = loss_ax.get_legend().get_window_extent()
    assert legend.x0 > loss_ax.get_window_extent().x1  # beside the plots, covering no curve
    import matplotlib.pyplot as plt

    plt.close(fig)
