"""``run_hyper.py --model GRU4Rec,GRU4RecKG,KSR,S3Rec --budget 4h``: a fair leaderboard across models.

One protocol for every model: the same data, split, metrics and command-line settings; an equal share
of the budget each; each model's space from ``search_spaces/<Model>.test`` (or one ``--params_file``
per model, comma separated); each model's best config re-run over ``--seeds`` seeds (default 3). Each
share is planned with the study plan's cost model: the seed runs are reserved first (half the share at
most), and when full-length training would not leave that, every model's epochs are capped at the same
number (printed, and in the leaderboard), so the budget sets the fidelity, equally for all. Everything
is checked before anything runs. Results: ``leaderboard.md`` and ``leaderboard.csv`` beside the output
file, each model's own results under ``<model>/``, and one MLflow parent run per model in one experiment,
tagged with the leaderboard's id. The same command resumes every model's studies.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import SeqtuneError
from models.utils import atomic_path
from tuner.reporting.outputs import write_text
from tuner.reporting.progress import format_duration
from tuner.request import StudyRequest, parse_duration, resolve
from tuner.seeds import seed_runs_to_train
from tuner.trial import TrialRecord, TrialState

if TYPE_CHECKING:
    from tuner.plan import StudyEstimate

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
DEFAULT_SEEDS = 3
SEED_SHARE = 0.5  # of a model's share, at most, for its seed runs


def model_list(argv: Sequence[str]) -> list[str]:
    """The models of ``--model A,B``; one model (or none given) is an ordinary study."""
    return [m.strip() for m in (_flag(argv, "--model", "-m") or "").split(",") if m.strip()]


def _flag(argv: Sequence[str], *names: str) -> str | None:
    """The value of one flag in argv (the last if repeated), without parsing the rest."""
    peek = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    peek.add_argument(*names, dest="value", default=None)
    return peek.parse_known_args(list(argv))[0].value


def _without(argv: Sequence[str], *names: str) -> list[str]:
    """argv with the given flags (and their values) removed."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in names:
            skip = True
            continue
        if any(arg.startswith(f"{n}=") for n in names):
            continue
        out.append(arg)
    return out


@dataclass(frozen=True)
class Entry:
    """One model's line: its best config and that config's metrics over the seeds."""

    model: str
    params: dict
    valid: dict[str, tuple[float, float]]  # metric -> (mean, std) over seeds
    test: dict[str, tuple[float, float]]
    seeds: int
    trials: int
    pruned: int
    seconds: float


def spaces_for(models: Sequence[str], params_file: str | None) -> list[str]:
    if params_file is None:
        paths = [str(SPACES / f"{m}.test") for m in models]
    else:
        paths = [p.strip() for p in params_file.split(",")]
        if len(paths) != len(models):
            raise SeqtuneError(f"--params_file names {len(paths)} file(s) for {len(models)} models: give one "
                               "per model, comma separated, or none (search_spaces/<Model>.test)")
    for model, path in zip(models, paths, strict=True):
        if not Path(path).is_file():
            raise SeqtuneError(f"{path}: no search space for {model} (expected search_spaces/{model}.test or one "
                               "--params_file per model)")
    return paths


def run_leaderboard(argv: list[str], models: list[str]) -> int:
    from models.registry import canonical_model_name
    from tuner.cli import tune
    from tuner.plan import estimate

    models = [canonical_model_name(m) for m in models]  # an unknown model: one line, exit 2
    if len(set(models)) != len(models):
        raise SeqtuneError(f"--model lists a model twice: {','.join(models)}")
    budget_text = _flag(argv, "--budget")
    if budget_text is None:
        raise SeqtuneError("--model with several models needs --budget DURATION (each model gets an equal share)")
    budget = parse_duration(budget_text)
    spaces = spaces_for(models, _flag(argv, "--params_file"))
    seeds = int(_flag(argv, "--seeds") or DEFAULT_SEEDS)
    output = Path(_flag(argv, "--output_file") or "hyper_example.result")
    dataset = _flag(argv, "--dataset", "-d") or "ml-100k"
    key = json.dumps([models, spaces, _without(argv, "--model", "-m")], sort_keys=True)
    board = f"lb-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    share = budget / len(models)
    common = _without(argv, "--model", "-m", "--params_file", "--budget", "--seeds", "--seeds-top", "--seeds_top",
                      "--study-name", "--study_name", "--output_file", "--experiment")
    experiment = _flag(argv, "--experiment") or f"leaderboard-{dataset}"

    def model_argv(model: str, space: str, extra: Sequence[str] = ()) -> list[str]:
        return [*common, "--model", model, "--params_file", space, "--budget", f"{max(1, int(share))}s",
                "--seeds", str(seeds), "--seeds-top", "1", "--study-name", f"{board}-{model}",
                "--output_file", str(output.parent / model / output.name), "--experiment", experiment,
                "--tag", f"leaderboard={board}", *extra]

    requests = [resolve(model_argv(m, s)) for m, s in zip(models, spaces, strict=True)]  # all checked first
    estimates = [estimate(r) for r in requests]
    cap = epoch_cap(requests, estimates, share, seeds)
    if cap is not None:
        requests = [resolve(model_argv(m, s, [f"--epochs={cap}"])) for m, s in zip(models, spaces, strict=True)]
        estimates = [estimate(r) for r in requests]
    plans = []
    for request, planned in zip(requests, estimates, strict=True):
        seed_seconds = math.ceil(seed_runs_to_train(request.space, seeds) / request.workers) * planned.trial_seconds
        plans.append((request, max(60.0, share - seed_seconds)))
    print(f"leaderboard {board}: {', '.join(models)} on {dataset}; {format_duration(share)} per model "
          f"(the best config's {seeds} seeds included: its search trial is one of them); "
          + (f"epochs capped at {cap} for every model so that the seed runs fit" if cap else "full-length training"),
          file=sys.stderr)

    entries, code = [], 0
    for request, search_budget in plans:
        print(f"\n=== {request.spec.model}: search {format_duration(search_budget)}, then {seeds} seeds",
              file=sys.stderr)
        outcome = tune(dataclasses.replace(request, timeout=search_budget))
        if request.dry_run:  # every model's plan, and nothing runs or is written
            continue
        if outcome.code == 130:
            return 130
        if outcome.study is None or outcome.seeds is None or not outcome.top:
            code = code or outcome.code or 1
            continue
        entries.append(entry_of(request, outcome.study.records, outcome.seeds.records, outcome.top[0],
                                outcome.study.seconds + outcome.seeds.seconds))
    if requests[0].dry_run:
        return 0
    write_leaderboard(output.parent, board, entries, requests[0], cap, seeds)
    print(f"\nleaderboard: {output.parent / 'leaderboard.md'}, {output.parent / 'leaderboard.csv'}")
    print((output.parent / "leaderboard.md").read_text())
    return code


def epoch_cap(requests: Sequence[StudyRequest], estimates: Sequence[StudyEstimate], share: float,
              seeds: int) -> int | None:
    """The epochs every model trains when its seed runs at full length would take more than SEED_SHARE of
    its share (None: no cap needed). The same cap for all: one protocol."""
    from tuner.plan import busy_measurement

    caps = []
    for request, planned in zip(requests, estimates, strict=True):
        runs = seed_runs_to_train(request.space, seeds)
        rounds = math.ceil(runs / request.workers)
        if rounds == 0:
            continue
        if rounds * planned.trial_seconds <= SEED_SHARE * share:
            continue
        epochs = int(SEED_SHARE * share / (rounds * planned.epoch_seconds))
        if epochs < 1:
            one_epoch = format_duration(rounds * planned.epoch_seconds)
            busy = f" ({busy_measurement(planned)}: a quieter machine may fit it)" if planned.measured_busy else ""
            raise SeqtuneError(f"--budget {format_duration(share * len(requests))} is too small: "
                               f"{request.spec.model}'s {runs} seed runs of one epoch take ~{one_epoch} "
                               f"of its {format_duration(share)}{busy}")
        caps.append(epochs)
    if not caps:
        return None
    current = min(int(r.base["epochs"]) for r in requests)
    return min(min(caps), current)


def entry_of(request: StudyRequest, search: Sequence[TrialRecord], seed_runs: Sequence[TrialRecord],
             best: TrialRecord, seconds: float) -> Entry:
    from tuner.seeds import runs_of, spread

    runs = runs_of(best, seed_runs)
    return Entry(request.spec.model, best.params, spread([r.best_valid_result for r in runs]),
                 spread([r.test_result for r in runs]), len(runs), sum(r.state.finished for r in search),
                 sum(r.state == TrialState.PRUNED for r in search), seconds)


def write_leaderboard(out_dir: Path, board: str, entries: list[Entry], request: StudyRequest, cap: int | None,
                      seeds: int) -> None:
    metric = request.valid_metric.lower()
    ranked = rank_entries(entries, metric, request.bigger)
    shown = [m for m in request.base.metric_keys if any(m in e.test for e in ranked)]
    lines = [f"# Leaderboard {board}: {request.spec.dataset}",
             "",
             f"Each model tuned on its own search space with an equal share of the budget, its best config (by valid "
             f"{request.valid_metric}) re-run over {seeds} seeds; mean ± std over those seeds. "
             + (f"Every model trained at most {cap} epoch{'s' if cap != 1 else ''} (the budget's limit)." if cap else
                f"Every model trained to its early stop or {request.base['epochs']} epochs."),
             "",
             "| # | model | valid " + request.valid_metric + " | " + " | ".join(f"test {m}" for m in shown)
             + " | best config | trials (pruned) | time | note |",
             "|---|---|---|" + "---|" * len(shown) + "---|---|---|---|"]
    for rank, entry in enumerate(ranked, start=1):
        note = separation_note(ranked[rank - 2], entry, metric, rank - 1, request.valid_metric) if rank > 1 else ""
        valid = entry.valid.get(metric)
        lines.append(f"| {rank} | {entry.model} | {_fmt(valid)} | " + " | ".join(_fmt(entry.test.get(m)) for m in shown)
                     + f" | `{json.dumps(entry.params, sort_keys=True)}` | {entry.trials} ({entry.pruned}) | "
                       f"{format_duration(entry.seconds)} | {note} |")
    write_text(out_dir / "leaderboard.md", "\n".join(lines) + "\n")
    header = ["rank", "model", "params", "seeds", "trials", "pruned", "seconds",
              *[f"valid_{m}_{s}" for m in shown for s in ("mean", "std")],
              *[f"test_{m}_{s}" for m in shown for s in ("mean", "std")]]
    with atomic_path(out_dir / "leaderboard.csv") as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for rank, entry in enumerate(ranked, start=1):
            writer.writerow([rank, entry.model, json.dumps(entry.params, sort_keys=True), entry.seeds, entry.trials,
                             entry.pruned, round(entry.seconds, 1),
                             *[v for m in shown for v in entry.valid.get(m, (math.nan, math.nan))],
                             *[v for m in shown for v in entry.test.get(m, (math.nan, math.nan))]])


def rank_entries(entries: Sequence[Entry], metric: str, bigger: bool) -> list[Entry]:
    """Best valid mean first (valid, never test: ranking on test would tune on it); a model without the
    metric last."""
    sign = -1 if bigger else 1
    return sorted(entries, key=lambda e: (metric not in e.valid, sign * e.valid.get(metric, (0.0, 0.0))[0]))


def separation_note(above: Entry, entry: Entry, metric: str, above_rank: int, metric_name: str) -> str:
    """Where the two models' valid mean ± std ranges overlap, the seeds do not separate them: said, so a
    rank is not read as a difference. Empty where they are apart."""
    if metric not in above.valid or metric not in entry.valid:
        return ""
    (m1, s1), (m2, s2) = above.valid[metric], entry.valid[metric]
    if abs(m1 - m2) > s1 + s2:
        return ""
    return (f"valid {metric_name} mean ± std overlaps #{above_rank}'s: not separated at {entry.seeds} seeds")


def _fmt(pair: tuple[float, float] | None) -> str:
    return "" if pair is None else f"{pair[0]:.4f} ± {pair[1]:.4f}"
