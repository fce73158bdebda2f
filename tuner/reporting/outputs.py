"""Study results in every form users read: RecBole's output file, results.csv, best_config.yaml and a
terminal table. Every backend's trials arrive as ``TrialRecord``s; nothing here knows which backend ran."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import yaml

from models.metrics import format_result
from models.utils import atomic_path, to_plain
from tuner.trial import TrialRecord, TrialState


def params2str(params: dict[str, Any]) -> str:
    """RecBole's key: ``name:value`` pairs in alphabetical order (hyperopt sorts its dict space)."""
    return ", ".join(f"{k}:{params[k]}" for k in sorted(params))


def ranked_pool(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The trials a study's best is chosen from: the COMPLETE ones with a score. A study none of whose
    trials has run to its end yet (sync-halving's rungs, cut short by a budget) has none: then the
    PRUNED ones that trained the most epochs (the highest rung reached), in their order."""
    complete = [r for r in records if r.state == TrialState.COMPLETE and r.best_valid_score is not None]
    if complete:
        return complete
    pruned = [r for r in records if r.state == TrialState.PRUNED and r.best_valid_score is not None]
    deepest = max((r.epochs_run or 0 for r in pruned), default=0)
    return [r for r in pruned if (r.epochs_run or 0) == deepest]


def best_trial(records: Sequence[TrialRecord], bigger: bool) -> TrialRecord | None:
    """The first trial with the best validation score (a later tie does not replace it, as RecBole),
    among ``ranked_pool(records)``."""
    pool = ranked_pool(records)
    if not pool:
        return None
    pick = max if bigger else min  # both keep the first of equal scores
    return pick(pool, key=lambda record: cast(float, record.best_valid_score))


def best_so_far(records: Sequence[TrialRecord], bigger: bool) -> list[tuple[int, float, float]]:
    """The study's anytime curve: (trials finished, when (Unix time), best valid score so far), one point
    per finished trial from the first complete one on, in the order they finished."""
    ended = sorted((r for r in records if r.state.finished and r.finished_at is not None),
                   key=lambda r: (r.finished_at, r.number))
    curve, best = [], None
    for count, record in enumerate(ended, start=1):
        score = record.best_valid_score if record.state == TrialState.COMPLETE else None
        if score is not None and (best is None or (score > best if bigger else score < best)):
            best = score
        if best is not None:
            curve.append((count, record.finished_at, best))
    return curve  # type: ignore[return-value]


def state_counts(records: Sequence[TrialRecord]) -> dict[TrialState, int]:
    return {state: sum(r.state == state for r in records) for state in TrialState}


def recbole_output(records: Sequence[TrialRecord], bigger: bool, model: str) -> str:
    """RecBole's export_result layout, then the best parameters and result it prints to stdout."""
    out = io.StringIO()
    for record in records:
        if not record.has_result:
            continue
        out.write(f"{params2str(record.params)}\nValid result:\n{format_result(record.best_valid_result)}\n"
                  f"Test result:\n{format_result(record.test_result)}\n\n")
    best = best_trial(records, bigger)
    if best is not None:
        result = {"model": model, "best_valid_score": best.best_valid_score, "valid_score_bigger": bigger,
                  "best_valid_result": best.best_valid_result, "test_result": best.test_result}
        out.write(f"best params:  {dict(sorted(best.params.items()))}\nbest result: \n{result}\n")
    return out.getvalue()


def parse_recbole_output(text: str) -> list[tuple[dict[str, str], dict[str, float], dict[str, float]]]:
    """Read back the trial blocks of an output file (RecBole's or ours)."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i + 4 < len(lines):
        if lines[i + 1] == "Valid result:" and lines[i + 3] == "Test result:":
            params = dict(part.split(":", 1) for part in lines[i].split(", ")) if lines[i] else {}
            blocks.append((params, _metrics(lines[i + 2]), _metrics(lines[i + 4])))
            i += 5
        else:
            i += 1
    return blocks


def _metrics(line: str) -> dict[str, float]:
    pairs = [p.split(" : ") for p in line.split("    ") if p]
    return {k: float(v) for k, v in pairs}


def write_results_csv(path: Path, records: Sequence[TrialRecord], metric_keys: Sequence[str]) -> None:
    param_names = sorted({name for r in records for name in r.params})
    header = ["trial", "state", *param_names, "best_valid_score",
              *[f"valid_{k}" for k in metric_keys], *[f"test_{k}" for k in metric_keys],
              "epochs_run", "seconds", "error"]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for r in records:
            writer.writerow([r.number, r.state.value, *[_cell(r.params.get(p)) for p in param_names],
                             _cell(r.best_valid_score),
                             *[_cell(r.best_valid_result.get(k)) for k in metric_keys],
                             *[_cell(r.test_result.get(k)) for k in metric_keys],
                             _cell(r.epochs_run), _cell(None if r.seconds is None else round(r.seconds, 2)),
                             r.error or ""])


def _cell(value: Any) -> Any:
    return "" if value is None else value


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def best_config_yaml(model: str, dataset: str, fixed: dict[str, Any], params: dict[str, Any]) -> str:
    """A config file that retrains the winner: ``python -m models.train --config_files best_config.yaml``."""
    content = {"model": model, "dataset": dataset, **fixed, **params}
    header = (f"# Best configuration found by seqtune. Retrain it with:\n"
              f"#   python -m models.train --model {model} --dataset {dataset} --config_files best_config.yaml\n")
    return header + yaml.safe_dump(to_plain(content), sort_keys=False)


def summary_rows(records: Sequence[TrialRecord], bigger: bool, metric: str,
                 limit: int | None = 15) -> tuple[list[str], list[list[str]], int]:
    """The summary as cells: header, rows (best first; failures and pruned trials last), and how many
    trials the limit left out."""
    done = [r for r in records if r.best_valid_score is not None]
    done.sort(key=lambda r: (r.state != TrialState.COMPLETE,
                             -(r.best_valid_score or 0) if bigger else (r.best_valid_score or 0)))
    ordered = done + [r for r in records if r.best_valid_score is None]
    shown = ordered if limit is None else ordered[:limit]
    names = sorted({n for r in shown for n in r.params})
    test_key = metric.lower()
    header = ["#", "state", *names, f"valid {metric}", f"test {metric}", "epochs", "s"]
    rows = [[str(r.number), r.state.value.lower(), *[str(r.params.get(n, "")) for n in names],
             "" if r.best_valid_score is None else f"{r.best_valid_score:.4f}",
             "" if test_key not in r.test_result else f"{r.test_result[test_key]:.4f}",
             "" if r.epochs_run is None else str(r.epochs_run),
             "" if r.seconds is None else f"{r.seconds:.1f}"] for r in shown]
    return header, rows, len(ordered) - len(shown)


def summary_table(records: Sequence[TrialRecord], bigger: bool, metric: str, limit: int = 15) -> str:
    """Trials sorted by the validation metric, best first, as aligned text."""
    header, rows, more = summary_rows(records, bigger, metric, limit)
    if not rows:
        return "no trials"
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if more:
        lines.append(f"... {more} more in results.csv")
    return "\n".join(lines)
