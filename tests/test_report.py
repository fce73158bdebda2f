"""report.html rendered from trial records: every section, the best trial marked, the anytime curve and
learning curves drawn, text escaped, and nothing that would fetch from a network."""

from __future__ import annotations

import re
from pathlib import Path

from tuner.reporting.report import SECTIONS, StudyFacts, render, write_report
from tuner.trial import TrialRecord, TrialState

FACTS = StudyFacts("s<1>", "GRU4Rec", "toy", "MRR@10", True, ("plan: 3 trials (grid)",), "run_hyper.py --x", 12.0,
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
