"""``run_hyper.py``: RecBole's tuning command, with parallel workers, pruning, resume and clear errors.

    python run_hyper.py --model KSR --params_file hyper.test [--config_files "a.yaml b.yaml"]
                        [--output_file hyper_example.result] [--tool optuna|ray] [--key=value ...]

``resolve`` checks everything before anything starts or is written (a bad input is one line and exit
2); then the backend prepares the study, tracking opens the study's parent run, the backend runs it,
and every result file is written, also after Ctrl-C (exit 130; the same command resumes). A study
in which no trial finished exits 1 with the reason.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.cli import run_cli
from tuner.backends.base import Backend, StudyPlan
from tuner.interrupts import redeliver_swallowed_interrupts, report_if_stuck
from tuner.redact import redact_credentials
from tuner.reporting.progress import ProgressCallback, ProgressDisplay, StudyProgress, format_duration
from tuner.request import StudyRequest, cpu_count, resolve, show_notes
from tuner.tracking.base import NullTracker, Tracker
from tuner.trial import TrialRecord, TrialState


def _stop_like_ctrl_c(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():  # `kill`, `docker stop`: stop as Ctrl-C does
        signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
        redeliver_swallowed_interrupts()
    from tuner.leaderboard import model_list, run_leaderboard

    models = model_list(sys.argv[1:] if argv is None else argv)
    try:
        if len(models) > 1:
            return run_leaderboard(sys.argv[1:] if argv is None else list(argv), models)
        return tune(resolve(argv)).code
    except Exception as exc:
        failure = storage_failure(exc)
        if failure is None:
            raise
        detail = str(getattr(failure, "orig", None) or failure).splitlines()[0]
        print(f"error: the study's storage failed ({type(failure).__name__}: {detail}); finished trials are "
              "stored, and the same command resumes the study once the storage works", file=sys.stderr)
        return 1


def storage_failure(exc: BaseException | None) -> BaseException | None:
    """The storage error behind ``exc``, if one is: Optuna raises its own clean-up failure (an
    AssertionError in ``_run_trial``) on top of the database error that stopped a trial."""
    import optuna
    from sqlalchemy.exc import OperationalError

    seen: set[int] = set()
    internal: BaseException | None = None  # Optuna's wrapper, when no database error lies under it
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OperationalError):
            return exc
        if internal is None and isinstance(exc, optuna.exceptions.StorageInternalError):
            internal = exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)  # `from None`: said
    return internal


@dataclass
class TuneOutcome:
    """What one command's study left: its exit code, the study, and the seed study (``--seeds``)."""

    code: int
    study: StudyRun | None = None
    seeds: StudyRun | None = None
    top: list[TrialRecord] | None = None  # the configs the seed study re-ran


def tune(request: StudyRequest) -> TuneOutcome:
    """Run one checked request: plan, study, results, summary, then the seed phase."""
    started = time.monotonic()
    show_notes(request)
    if request.mlflow_uri:  # MLflow's import takes seconds: overlap it with the study's set-up
        threading.Thread(target=importlib.import_module, args=("mlflow.tracking",), daemon=True).start()
    if request.tool == "optuna" and request.workers > 1 and not request.dry_run:  # the same for the workers'
        from tuner.backends.optuna.backend import start_worker_server

        start_worker_server(tracking=request.mlflow_uri is not None)
    plan = make_plan(request)
    seconds_per_trial, plan_lines = None, [
        f"study {plan.study_name!r} ({plan.algo}, {plan.n_trials} trials, {plan.workers} worker(s) x "
        f"{plan.threads_per_worker or cpu_count()} thread(s), {request.tool}) in {redact_credentials(plan.storage)}"]
    if not request.quiet or request.dry_run:
        print(plan_lines[0], file=sys.stderr)
        seconds_per_trial, described = show_plan(request)
        plan_lines += described
    if request.dry_run:
        return TuneOutcome(0)
    study = run_study(request, plan, seconds_per_trial, started)
    best = write_results(request, study, request.output_file, "results.csv", plan_lines)
    print_summary(request, study.records, best)
    url = study.tracker.view_url()
    if url:
        print(f"MLflow: {redact_credentials(url)} (the study's row and columns; report: "
              f"{request.out_dir / 'report.html'})")
    if study.interrupted:
        print(f"interrupted: resume with the same command (study {plan.study_name!r})", file=sys.stderr)
        return TuneOutcome(130, study)
    waiting = sum(r.state == TrialState.WAITING for r in study.records)
    if plan.budget and waiting:
        more = f" (about {format_duration(waiting * seconds_per_trial)} more)" if seconds_per_trial else ""
        print(f"budget spent: {waiting} trial(s) still to run{more}; the same command with a new --budget "
              f"continues (study {plan.study_name!r})", file=sys.stderr)
    if best is None:
        print(f"error: {no_result_reason(study.records)}", file=sys.stderr)
        return TuneOutcome(1, study)
    if best.state != TrialState.COMPLETE:
        print(f"note: no trial has run to its end yet; the best so far is trial {best.number} after "
              f"{best.epochs_run} epoch(s), of the trials that got furthest (the same command continues the "
              f"study)", file=sys.stderr)
    if request.seeds > 0:
        return run_seed_phase(request, study, seconds_per_trial)
    return TuneOutcome(0, study)


@dataclass
class StudyRun:
    """What one run of a study leaves: every trial, whether Ctrl-C stopped it, its tracker and study."""

    plan: StudyPlan
    records: list[TrialRecord]
    interrupted: bool
    tracker: Tracker
    study: Any  # the optuna.Study (plots)
    seconds: float  # this run's wall time
    study_seconds: float  # the study's: every command that ran it (StudyStore.record_run)


def show_plan(request: StudyRequest) -> tuple[float | None, list[str]]:
    """Print the study plan with its estimated wall time; returns the planned seconds per finished trial
    (None when the measurement failed: e.g. a point too large to build, which its trial will report)
    and the lines printed."""
    from tuner.backends.optuna.storage import StorageError
    from tuner.plan import describe, estimate

    try:
        planned = estimate(request)
    except StorageError:  # no study can run either: one line, exit 2, a dry run too
        raise
    except Exception as exc:  # noqa: BLE001 - the plan loses its estimate, the study still runs
        lines = [f"plan: no estimate ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"]
        print(lines[0], file=sys.stderr)
        return None, lines
    lines = describe(request, planned)
    print("\n".join(lines), file=sys.stderr, flush=True)
    return planned.study_seconds / max(planned.to_run, 1), lines


def make_plan(request: StudyRequest) -> StudyPlan:
    return StudyPlan(
        spec=request.spec, space=request.space, study_name=request.study_name, storage=request.storage,
        algo=request.algo, n_trials=request.n_trials, direction_bigger=request.bigger,
        valid_metric=request.valid_metric, pruner=request.pruner, workers=request.workers,
        threads_per_worker=request.threads_per_worker, timeout=request.timeout, budget=request.budget,
        sampler_seed=request.sampler_seed,
        max_epochs=int(request.base["epochs"]), points=request.grid_points)


def make_backend(request: StudyRequest) -> Backend:
    if request.tool == "ray":
        from tuner.backends.ray_backend import RayBackend

        ray = request.ray
        return RayBackend(address=ray.address, cpus_per_trial=ray.cpus_per_trial, gpus_per_trial=ray.gpus_per_trial,
                          storage_path=ray.storage_path, reuse_actors=ray.reuse_actors)
    from tuner.backends.optuna.backend import OptunaBackend

    return OptunaBackend(tracking=request.mlflow_uri is not None)


def run_study(request: StudyRequest, plan: StudyPlan, seconds_per_trial: float | None = None,
              started: float | None = None) -> StudyRun:
    """Prepare, track and run one study (Ctrl-C included: its trials are collected as stored). A budget
    counts from ``started`` (time.monotonic()): the plan's measurement and the set-up are in it."""
    backend = make_backend(request)
    backend.prepare(plan)
    tracker = start_tracking(request, plan)
    plan.tracker = tracker.handle()
    tic, started_at = time.monotonic(), time.time()
    if plan.budget and plan.timeout is not None and started is not None:
        plan.timeout = max(1.0, plan.timeout - (tic - started))
    limit = None if plan.timeout is None else ("budget" if plan.budget else "timeout", plan.timeout)
    display = ProgressDisplay(request.valid_metric, request.quiet, planned_seconds_per_trial=seconds_per_trial,
                              time_limit=limit)
    follow = follow_on_parent(tracker, backend, plan)

    def progress(snap: StudyProgress) -> None:
        display(snap)
        follow(snap)

    try:
        records, interrupted = backend.run(plan, progress), False
    except KeyboardInterrupt:
        report_if_stuck()
        records, interrupted = backend.collect(plan), True
    finally:
        display.close()
    seconds = time.monotonic() - tic
    study_seconds = backend.opened().record_run(started_at, started_at + seconds)
    return StudyRun(plan, records, interrupted, tracker, backend.study(), seconds, study_seconds)


def follow_on_parent(tracker: Tracker, backend: Backend, plan: StudyPlan) -> ProgressCallback:
    """Keep the tracking parent run current while the study runs: called by the progress poller every
    second, it re-reads the trials and updates the parent each time one more has finished."""
    finished: list[int] = []

    def update(snap: StudyProgress) -> None:
        if isinstance(tracker, NullTracker) or (finished and finished[-1] == snap.done):
            return
        finished.append(snap.done)
        tracker.log_study(backend.collect(plan), plan.direction_bigger)

    return update


def start_tracking(request: StudyRequest, plan: StudyPlan) -> Tracker:
    """The study's MLflow parent run: created once, found again by its study name when it resumes."""
    if request.mlflow_uri is None:
        return NullTracker()
    import yaml

    from models.errors import SeqtuneError
    from tuner.tracking.mlflow_tracker import MlflowTracker

    tags = {"model": request.spec.model, "dataset": request.spec.dataset, "algorithm": plan.algo,
            "sampler_seed": str(plan.sampler_seed), "pruner": plan.pruner, "storage": redact_credentials(plan.storage),
            "tool": request.tool, **request.tags}
    artifacts = {"hyper.test": Path(request.space.source).read_text(),
                 "base_config.yaml": yaml.safe_dump(request.base.to_dict(), sort_keys=False)}
    try:
        tracker = MlflowTracker.start_study(request.mlflow_uri, request.experiment, plan.study_name, tags, artifacts)
        tracker.share_view(request.valid_metric, list(plan.space.parameters))
    except Exception as exc:  # noqa: BLE001 - an unreachable server or a bad URI
        reason = redact_credentials(str(exc).splitlines()[0])
        raise SeqtuneError(f"MLflow at {redact_credentials(request.mlflow_uri)!r} is not usable: {reason} "
                           "(or pass --no-mlflow)") from None
    return tracker


def write_results(request: StudyRequest, study: StudyRun, output: Path, csv_name: str,
                  plan_lines: Sequence[str] = ()) -> TrialRecord | None:
    """The output file (RecBole's layout), the csv beside it, best_config.yaml (the main study's), the
    plots and report.html, and the tracking artifacts; returns the best trial."""
    from tuner.reporting import best_config_yaml, best_trial, recbole_output, write_results_csv, write_text
    from tuner.reporting.plots import write_plots
    from tuner.reporting.report import StudyFacts, write_report

    plan, records = study.plan, study.records
    write_text(output, recbole_output(records, plan.direction_bigger, plan.spec.model))
    write_results_csv(output.parent / csv_name, records, request.base.metric_keys)
    best = best_trial(records, plan.direction_bigger)
    written = [output, output.parent / csv_name]
    main_study = plan.study_name == request.study_name
    if best is not None and main_study:
        written.append(output.parent / "best_config.yaml")
        write_text(written[-1], best_config_yaml(plan.spec.model, plan.spec.dataset, plan.spec.overrides, best.params))
    plots = write_plots(study.study, output.parent / "plots" / ("" if main_study else "seeds"))
    facts = StudyFacts(plan.study_name, plan.spec.model, plan.spec.dataset, request.valid_metric,
                       plan.direction_bigger, tuple(plan_lines), request.command, study.seconds, study.study_seconds,
                       study.tracker.view_url())
    report = output.parent / ("report.html" if main_study else "seeds_report.html")
    written.append(write_report(report, facts, records, {p.stem: p for p in plots}))
    if isinstance(study.tracker, NullTracker):
        return best
    checkpoint = plan.spec.checkpoint(best.number) if best is not None else None
    if best is not None and best.run_id and checkpoint and checkpoint.is_file() and not plan.spec.log_checkpoints:
        study.tracker.log_trial_artifact(best.run_id, checkpoint)
    study.tracker.backfill(records, lambda params: plan.spec.config(params).to_dict())
    study.tracker.log_study(records, plan.direction_bigger, study.study_seconds)
    study.tracker.finish_study({"": written, "plots": plots})
    return best


def print_summary(request: StudyRequest, records: list[TrialRecord], best: TrialRecord | None) -> None:
    from tuner.reporting import state_counts, summary_table

    print(summary_table(records, request.bigger, request.valid_metric))
    counts = state_counts(records)
    print(f"{counts[TrialState.COMPLETE]} finished, {counts[TrialState.PRUNED]} pruned, "
          f"{counts[TrialState.FAIL]} failed; results in {request.output_file}, {request.out_dir / 'results.csv'}")
    if best is not None:
        print(f"best params:  {dict(sorted(best.params.items()))}")
        print("best result: ")
        print({"model": request.spec.model, "best_valid_score": best.best_valid_score,
               "valid_score_bigger": request.bigger, "best_valid_result": best.best_valid_result,
               "test_result": best.test_result})


def no_result_reason(records: list[TrialRecord]) -> str:
    failed = [r for r in records if r.state == TrialState.FAIL]
    if not records:
        return "no trial ran"
    if failed and len(failed) == len(records):
        return f"no trial finished: all {len(records)} failed (first: trial {failed[0].number}: {failed[0].error})"
    return f"no trial finished ({len(records)} trials: none complete); see results.csv"


def run_seed_phase(request: StudyRequest, main_study: StudyRun, seconds_per_trial: float | None = None) -> TuneOutcome:
    """Re-run the best configs with ``--seeds`` seeds as their own study; mean ± std per config, printed
    and on the main study's parent run. Its progress takes the main plan's seconds per trial (a seed run
    trains a full config: no pruning)."""
    from tuner.seeds import seed_metrics, seed_plan, seed_summary, top_records

    top = top_records(main_study.records, request.bigger, request.seeds_top)
    splan = seed_plan(main_study.plan, top, int(request.base["seed"]), request.seeds)
    study = run_study(request, splan, seconds_per_trial)
    write_results(request, study, request.out_dir / "seeds.result", "seeds.csv")
    main_study.tracker.log_metrics(seed_metrics(top, study.records))
    print(f"\nTop configurations over {request.seeds} seeds: mean ± std "
          f"(study {splan.study_name!r}; {request.out_dir / 'seeds.csv'})")
    for line in seed_summary(top, study.records, request.valid_metric):
        print(line)
    if study.interrupted:
        print(f"interrupted: resume with the same command (study {splan.study_name!r})", file=sys.stderr)
        return TuneOutcome(130, main_study, study, top)
    return TuneOutcome(0, main_study, study, top)


def cli() -> None:
    """Console-script entry (``seqtune-hyper``)."""
    run_cli(main)


if __name__ == "__main__":
    cli()
