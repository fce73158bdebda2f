"""``report.html``: one self-contained file per study that reads at a glance, from disk, with no server
and no network: the plan and what happened, the summary table, the anytime curve, the learning curves
of the top trials, parallel coordinates and parameter importances. Plots are PNGs inlined as data URIs;
no script, stylesheet or font is fetched."""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tuner.reporting.outputs import best_so_far, best_trial, state_counts, summary_rows, write_text
from tuner.reporting.progress import format_duration
from tuner.trial import TrialRecord, TrialState

TOP_CURVES = 5
SECTIONS = ("Plan", "What happened", "Trials", "Anytime curve", "Learning curves of the top trials",
            "Parallel coordinates", "Parameter importances")
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
td, th { padding: 2px 10px; text-align: left; border-bottom: 1px solid #eee; }
tr.best td { font-weight: 600; background: #f3f8ff; }
pre { background: #f7f7f7; padding: 0.8em; white-space: pre-wrap; }
img { max-width: 100%; } .note { color: #666; }
"""


@dataclass(frozen=True)
class StudyFacts:
    """What the report says about the study besides its trials."""

    study_name: str
    model: str
    dataset: str
    metric: str  # the validation metric, as the user wrote it (MRR@10)
    bigger: bool
    plan_lines: tuple[str, ...]  # the plan as printed before the study ran
    command: str
    seconds: float  # this run's wall time
    study_seconds: float  # the study's, over every command that ran it
    tracking_url: str | None = None  # the study in the MLflow UI (a link: the report itself fetches nothing)


def write_report(path: Path, facts: StudyFacts, records: Sequence[TrialRecord], plots: dict[str, Path]) -> Path:
    """Write the report; ``plots``: the PNGs of write_plots by name (parallel_coordinate, param_importances)."""
    write_text(path, render(facts, records, plots))
    return path


def render(facts: StudyFacts, records: Sequence[TrialRecord], plots: dict[str, Path]) -> str:
    esc = html.escape
    counts = state_counts(records)
    best = best_trial(records, facts.bigger)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(facts.study_name)}: seqtune report"
             f"</title><style>{STYLE}</style></head><body>",
             f"<h1>{esc(facts.model)} on {esc(facts.dataset)}: study {esc(facts.study_name)!s}</h1>",
             f"<p class='note'>written {time.strftime('%Y-%m-%d %H:%M:%S')} by <code>{esc(facts.command)}</code></p>"]

    parts.append(_section("Plan", "<pre>" + esc("\n".join(facts.plan_lines) or "no plan was printed") + "</pre>"))

    happened = [f"{len(records)} trials: {counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned, "
                f"{counts[TrialState.FAIL]} failed, {counts[TrialState.WAITING]} waiting, "
                f"{counts[TrialState.RUNNING]} running; this run took {format_duration(facts.seconds)}"
                + ("." if facts.study_seconds <= facts.seconds + 1 else
                   f", the study {format_duration(facts.study_seconds)} over every run of it.")]
    if best is not None:
        happened.append(f"Best: trial {best.number}, valid {esc(facts.metric)} {best.best_valid_score:.4f}, "
                        f"test {esc(facts.metric)} {best.test_result.get(facts.metric.lower(), float('nan')):.4f}, "
                        f"parameters <code>{esc(str(dict(sorted(best.params.items()))))}</code>.")
    else:
        happened.append("No trial finished.")
    failed = [r for r in records if r.state == TrialState.FAIL and r.error]
    if failed:
        happened.append(f"First failure: trial {failed[0].number}: <code>{esc(failed[0].error or '')}</code>.")
    if facts.tracking_url:
        happened.append(f"In MLflow: <a href='{esc(facts.tracking_url)}'>{esc(facts.tracking_url)}</a>.")
    parts.append(_section("What happened", "".join(f"<p>{line}</p>" for line in happened)))

    header, rows, _ = summary_rows(records, facts.bigger, facts.metric, limit=None)
    table = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        mark = " class='best'" if best is not None and row[0] == str(best.number) else ""
        table.append(f"<tr{mark}>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
    parts.append(_section("Trials", "".join(table) + "</table>" if rows else "<p>no trials</p>"))

    parts.append(_section("Anytime curve", _image(anytime_png(records, facts))
                          or "<p class='note'>no trial has finished yet</p>"))
    parts.append(_section("Learning curves of the top trials", _image(curves_png(records, facts))
                          or "<p class='note'>no trial has a learning curve yet</p>"))
    for title, name, needs in (("Parallel coordinates", "parallel_coordinate", "at least two finished trials"),
                               ("Parameter importances", "param_importances",
                                "two searched parameters and two finished trials")):
        path = plots.get(name)
        body = _image(path.read_bytes()) if path is not None and path.is_file() else None
        parts.append(_section(title, body or f"<p class='note'>needs {needs}</p>"))
    parts.append("</body></html>")
    return "\n".join(parts)


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>"


def _image(png: bytes | None) -> str | None:
    if not png:
        return None
    return f"<img alt='' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _figure():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    _figure().close(fig)
    return buffer.getvalue()


def anytime_png(records: Sequence[TrialRecord], facts: StudyFacts) -> bytes | None:
    """Best finished valid score against the study's wall time (from its first trial's start)."""
    curve = best_so_far(records, facts.bigger)
    starts = [r.started_at for r in records if r.started_at is not None]
    if not curve or not starts:
        return None
    origin = min(starts)
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    minutes = [(when - origin) / 60 for _, when, _ in curve]
    ax.step(minutes, [score for *_, score in curve], where="post", marker="o", markersize=3)
    ax.set_xlim(left=0)  # from the study's start: the time to a first result is part of the curve
    ax.set_xlabel("minutes since the first trial started")
    ax.set_ylabel(f"best valid {facts.metric}")
    ax.grid(alpha=0.3)
    return _png(fig)


def curves_png(records: Sequence[TrialRecord], facts: StudyFacts) -> bytes | None:
    fig = curves_figure(records, facts)
    return None if fig is None else _png(fig)


def curves_figure(records: Sequence[TrialRecord], facts: StudyFacts):  # type: ignore[no-untyped-def]
    """Valid metric and train loss per epoch of the best trials (pruned ones included, dashed)."""
    ranked = sorted((r for r in records if r.curve and r.best_valid_score is not None),
                    key=lambda r: r.best_valid_score, reverse=facts.bigger)[:TOP_CURVES]  # type: ignore[arg-type,return-value]
    if not ranked:
        return None
    plt = _figure()
    fig, (valid_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    key = facts.metric.lower()
    for record in ranked:
        epochs = [e["epoch"] for e in record.curve or []]
        style = "--" if record.state == TrialState.PRUNED else "-"
        label = f"#{record.number} " + ", ".join(f"{k}={v}" for k, v in sorted(record.params.items()))
        marker = {"marker": "o", "markersize": 4} if len(epochs) == 1 else {}  # one epoch: a point, no line
        valid_ax.plot(epochs, [(e.get("valid_result") or {}).get(key) for e in record.curve or []], style,
                      label=label[:60], **marker)
        loss_ax.plot(epochs, [e.get("train_loss") for e in record.curve or []], style, **marker)
    valid_ax.set_ylabel(f"valid {facts.metric}")
    loss_ax.set_ylabel("train loss")
    from matplotlib.ticker import MaxNLocator

    for ax in (valid_ax, loss_ax):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 0.25 ticks
        ax.grid(alpha=0.3)
    # beside the plots, not on them: inside, it covered the curves it names
    loss_ax.legend(*valid_ax.get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8,
                   frameon=False)
    return fig
