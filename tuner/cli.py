"""``run_hyper.py``: RecBole's tuning command, with parallel workers, pruning, resume and clear errors.

    python run_hyper.py --model KSR --params_file hyper.test [--config_files "a.yaml b.yaml"]
                        [--output_file hyper_example.result] [--tool optuna|ray] [--key=value ...]

Everything is checked before anything starts or is written; a bad input is one line and exit 2.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import math
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.cli import parse_with_overrides, run_cli, split_files
from models.errors import SeqtuneError
from tuner.space import Choice, SearchSpace, SpaceError, parse_space_file

DEFAULT_STORAGE = "sqlite:///seqtune_studies.db"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_hyper.py",
        description="Tune a sequential recommender over a RecBole hyper.test search space. "
        "Any other --key=value is a fixed config override (RecBole's key names).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    recbole = p.add_argument_group("RecBole's flags")
    recbole.add_argument("--model", "-m", required=True, help="model name (GRU4Rec, GRU4RecKG, KSR, S3Rec)")
    recbole.add_argument("--dataset", "-d", default="ml-100k", help="dataset name; --data_path=DIR for your own")
    recbole.add_argument("--config_files", nargs="*", default=[], help="fixed-setting YAML files, space separated")
    recbole.add_argument("--params_file", required=True, help="search space in RecBole's hyper.test format")
    recbole.add_argument("--output_file", default="hyper_example.result",
                         help="RecBole-format results; results.csv and best_config.yaml go beside it")
    recbole.add_argument("--tool", default="optuna", type=str.lower,
                         choices=["optuna", "ray", "hyperopt"], help="backend (hyperopt = optuna)")
    recbole.add_argument("--display_file", default=None, help="accepted for RecBole compatibility; use MLflow")
    ours = p.add_argument_group("seqtune's flags")
    ours.add_argument("--algo", choices=["grid", "tpe", "random"], default=None,
                      help="search algorithm (default: grid for an all-choice space, else tpe)")
    ours.add_argument("--grid-order", "--grid_order", dest="grid_order", choices=["file", "random"], default="file",
                      help="a grid's run order: the file's, or shuffled by --sampler-seed as RecBole's exhaustive "
                           "search does (a study stopped early has then sampled the grid without bias)")
    ours.add_argument("--n-trials", "--n_trials", dest="n_trials", type=int, default=None,
                      help="trial budget (default: the grid size, or 100 as RecBole's max_evals)")
    ours.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    ours.add_argument("--workers", type=int, default=1, help="parallel worker processes on this machine")
    ours.add_argument("--storage", default=DEFAULT_STORAGE,
                      help="Optuna storage: a sqlite file (one host) or postgresql://... (many hosts)")
    ours.add_argument("--study-name", "--study_name", dest="study_name", default=None,
                      help="the same name resumes a study (default: derived from model, dataset, space, config)")
    ours.add_argument("--pruner", choices=["none", "median", "hyperband", "asha"], default="none",
                      help="stop unpromising trials early on the validation metric")
    ours.add_argument("--seeds", type=int, default=0, help="re-run the top 3 configs with N seeds: mean and std")
    ours.add_argument("--sampler-seed", "--sampler_seed", dest="sampler_seed", type=int, default=2020)
    ours.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    ours.add_argument("--quiet", action="store_true", help="no progress bar; only the final summary")
    ray = p.add_argument_group("Ray Tune (--tool ray)")
    ray.add_argument("--ray-address", "--ray_address", dest="ray_address", default=None,
                     help="an existing cluster (auto, ray://host:10001); default: start a local Ray")
    ray.add_argument("--cpus-per-trial", "--cpus_per_trial", dest="cpus_per_trial", type=float, default=1)
    ray.add_argument("--gpus-per-trial", "--gpus_per_trial", dest="gpus_per_trial", type=float, default=0,
                     help="fractions such as 0.25 pack several small trials on one GPU")
    ray.add_argument("--ray-storage", "--ray_storage", dest="ray_storage", default=None,
                     help="where Ray keeps trial results (made absolute; default ./ray_results)")
    ray.add_argument("--reuse-actors", "--reuse_actors", dest="reuse_actors", action=argparse.BooleanOptionalAction,
                     default=True, help="run the next trial in a finished trial's process (no new interpreter, "
                                        "torch import, CUDA context or dataset load per trial)")
    track = p.add_argument_group("tracking")
    track.add_argument("--mlflow-uri", "--mlflow_uri", dest="mlflow_uri", default=None,
                       help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    track.add_argument("--no-mlflow", "--no_mlflow", dest="no_mlflow", action="store_true",
                       help="do not log to MLflow")
    track.add_argument("--experiment", default=None, help="MLflow experiment (default: <model>-<dataset>)")
    track.add_argument("--log-checkpoints", "--log_checkpoints", dest="log_checkpoints", action="store_true",
                       help="log every trial's best checkpoint (default: only the best trial's)")
    return p


def resolve(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Any, SearchSpace]:
    """Parse and validate everything; nothing is started or written here."""
    from models.config import build_config, known_keys
    from models.registry import canonical_model_name

    args, overrides = parse_with_overrides(build_parser(), argv)
    args.model = canonical_model_name(args.model)
    if args.tool == "hyperopt":
        args.tool = "optuna"
    if args.device:
        overrides["device"] = args.device
    space = parse_space_file(args.params_file)
    space.check_keys(known_keys(args.model, args.dataset), f"model {args.model}")
    clash = sorted(set(space.parameters) & set(overrides))
    if clash:
        param = space.parameters[clash[0]]
        raise SpaceError(f"{space.source}:{param.line}: {clash[0]!r} is searched here and fixed on the command "
                         "line; drop one of them")
    config_files = [str(Path(f).resolve()) for f in split_files(args.config_files)]
    base = build_config(args.model, args.dataset, config_files, overrides, "command line")
    # every value of every parameter must be one the config accepts: fail now, not in trial 37
    for name, param in space.parameters.items():
        if isinstance(param.distribution, Choice):
            for value in param.distribution.values:
                _check_value(args, config_files, overrides, space, name, value)
    args.algo = args.algo or ("grid" if space.is_grid else "tpe")
    if args.algo == "grid" and not space.is_grid:
        names = [n for n, p in space.parameters.items() if not isinstance(p.distribution, Choice)]
        raise SpaceError(f"{space.source}: --algo grid needs every parameter to be a choice; not: {', '.join(names)}")
    if args.workers < 1:
        raise SeqtuneError("--workers must be >= 1")
    if args.n_trials is not None and args.n_trials < 1:
        raise SeqtuneError("--n-trials must be >= 1")
    if args.pruner == "asha" and args.tool != "ray":
        raise SeqtuneError("--pruner asha is Ray Tune's scheduler: use it with --tool ray (optuna: median, hyperband)")
    if args.tool == "ray" and args.grid_order == "random":
        raise SeqtuneError("--grid-order random is the optuna tool's; Ray Tune runs a grid_search in file order")
    if args.tool == "ray" and args.pruner in ("median", "hyperband"):
        raise SeqtuneError(f"--pruner {args.pruner} is Optuna's; with --tool ray use --pruner asha")
    for warning in base.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.display_file:
        print("warning: --display_file is not written; compare trials in MLflow or optuna-dashboard", file=sys.stderr)
    args.config_files = config_files
    return args, (base, overrides), space


def _check_value(args: argparse.Namespace, files: list[str], overrides: dict[str, Any], space: SearchSpace,
                 name: str, value: Any) -> None:
    from models.config import build_config
    from models.errors import ConfigError
    from tuner.space import decode_value

    try:
        build_config(args.model, args.dataset, files, {name: decode_value(value), **overrides})
    except ConfigError as exc:
        message = str(exc).split(": ", 1)[-1]
        raise SpaceError(f"{space.source}:{space.parameters[name].line}: {name}={value!r}: {message}") from None


def default_study_name(args: argparse.Namespace, overrides: dict[str, Any], space: SearchSpace) -> str:
    recipe = {"model": args.model, "dataset": args.dataset, "algo": args.algo, "overrides": overrides,
              "space": {n: p.distribution.describe() for n, p in space.parameters.items()},
              "config_files": [Path(f).read_text() for f in args.config_files]}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=repr).encode()).hexdigest()[:8]
    return f"{args.model}-{args.dataset}-{digest}"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def make_progress(total: int, quiet: bool, metric: str) -> tuple[Any, Any]:
    """A progress callback (trials done, best so far) and its closer: tqdm on a terminal, lines otherwise."""
    if quiet:
        return None, lambda: None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, unit="trial", dynamic_ncols=True, desc="trials")

        def update(done: int, best: float) -> None:
            bar.n = min(done, total)
            if not math.isnan(best):
                bar.set_postfix_str(f"best {metric} {best:.4f}", refresh=False)
            bar.refresh()

        return update, bar.close
    state = {"done": -1, "start": time.monotonic()}

    def log(done: int, best: float) -> None:
        if done != state["done"]:
            state["done"] = done
            elapsed = time.monotonic() - state["start"]
            eta = elapsed / done * (total - done) if done else math.nan
            best_text = "" if math.isnan(best) else f", best {metric} {best:.4f}"
            print(f"[{done}/{total} trials{best_text}, eta {eta:.0f}s]", file=sys.stderr, flush=True)

    return log, lambda: None


def main(argv: Sequence[str] | None = None) -> int:
    args, (base, overrides), space = resolve(argv)
    if not args.no_mlflow:  # MLflow's import takes seconds: overlap it with the study's set-up
        threading.Thread(target=importlib.import_module, args=("mlflow.tracking",), daemon=True).start()
    from tuner.backends.base import StudyPlan
    from tuner.objective import StudySpec
    from tuner.reporting import (
        FINISHED,
        best_config_yaml,
        best_trial,
        recbole_output,
        summary_table,
        write_results_csv,
        write_text,
    )

    metric = base["valid_metric"]
    n_trials = args.n_trials or (space.grid_size if args.algo == "grid" else 100)
    if args.algo == "grid" and args.n_trials:
        print("note: a grid runs every point; --n-trials is ignored", file=sys.stderr)
        n_trials = space.grid_size
    threads = max(1, cpu_count() // args.workers)
    plan = StudyPlan(
        spec=StudySpec(args.model, args.dataset, args.config_files, overrides,
                       checkpoint_dir=str((Path(args.output_file).parent / "checkpoints").resolve()),
                       log_checkpoints=args.log_checkpoints),
        space=space,
        study_name=args.study_name or default_study_name(args, overrides, space),
        storage=args.storage,
        algo=args.algo,
        n_trials=n_trials,
        direction_bigger=bool(base["valid_metric_bigger"]),
        valid_metric=metric,
        pruner=args.pruner,
        workers=args.workers,
        threads_per_worker=threads if args.workers > 1 else int(base.get("threads") or 0),
        timeout=args.timeout,
        sampler_seed=args.sampler_seed,
        max_epochs=base["epochs"],
        quiet=args.quiet,
    )
    if plan.algo == "grid" and args.grid_order == "random":
        plan.extra["points"] = space.grid()
        random.Random(plan.sampler_seed).shuffle(plan.extra["points"])
    if not args.quiet:
        print(f"study {plan.study_name!r} ({plan.algo}, {n_trials} trials, {args.workers} worker(s) x "
              f"{threads} thread(s)) in {plan.storage}", file=sys.stderr)
    backend = _backend(args.tool, args)
    backend.prepare(plan)
    tracker = _start_tracking(args, plan, backend, base, space)
    progress, close = make_progress(n_trials, args.quiet, metric)
    interrupted = False
    try:
        records = backend.run(plan, progress)
    except KeyboardInterrupt:
        interrupted = True
        records = backend.collect(plan)
    finally:
        close()

    output = Path(args.output_file)
    out_dir = output.parent
    bigger = plan.direction_bigger
    write_text(output, recbole_output(records, bigger, args.model))
    write_results_csv(out_dir / "results.csv", records, base.metric_keys)
    best = best_trial(records, bigger)
    if best is not None:
        write_text(out_dir / "best_config.yaml", best_config_yaml(args.model, args.dataset, overrides, best.params))
    if tracker is not None:
        plots = backend.plots(plan, out_dir / "plots")
        best_tags = {"best_trial": str(best.number)} if best is not None else {}
        best_checkpoint = out_dir / "checkpoints" / f"trial-{best.number}.pth" if best is not None else None
        if best is not None and best.run_id and best_checkpoint.is_file() and not args.log_checkpoints:
            tracker.log_trial_artifact(best.run_id, best_checkpoint)
        tracker.finish_study([output, out_dir / "results.csv", out_dir / "best_config.yaml", *plots], best_tags)
    print(summary_table(records, bigger, metric))
    counts = {state: sum(r.state == state for r in records) for state in ("COMPLETE", "PRUNED", "FAIL")}
    print(f"{counts['COMPLETE']} finished, {counts['PRUNED']} pruned, {counts['FAIL']} failed; "
          f"results in {output}, {out_dir / 'results.csv'}")
    if best is not None:
        print(f"best params:  {dict(sorted(best.params.items()))}")
        print("best result: ")
        print({"model": args.model, "best_valid_score": best.best_valid_score, "valid_score_bigger": bigger,
               "best_valid_result": best.best_valid_result, "test_result": best.test_result})
    if interrupted:
        print(f"interrupted: resume with the same command (study {plan.study_name!r})", file=sys.stderr)
        return 130
    if args.seeds > 0 and best is not None:
        top = [r for r in sorted(records, key=lambda r: r.best_valid_score or 0, reverse=bigger)
               if r.state == FINISHED][:3]
        _seed_phase(args, plan, top, base, out_dir)
    return 0


def _start_tracking(args: argparse.Namespace, plan: Any, backend: Any, base: Any, space: SearchSpace) -> Any:
    """The study's MLflow parent run: created once, found again when the study resumes."""
    if args.no_mlflow:
        return None
    import yaml

    from tuner.tracking.mlflow_tracker import MlflowTracker, tracking_uri

    uri = tracking_uri(args.mlflow_uri)
    parent = backend.get_attr(plan, "mlflow_parent_run_id")
    tags = {"model": args.model, "dataset": args.dataset, "algorithm": plan.algo,
            "sampler_seed": str(plan.sampler_seed), "pruner": plan.pruner, "storage": plan.storage, "tool": args.tool}
    artifacts = {"hyper.test": Path(space.source).read_text(),
                 "base_config.yaml": yaml.safe_dump(base.to_dict(), sort_keys=False)}
    try:
        tracker = MlflowTracker.start_study(uri, args.experiment or f"{args.model}-{args.dataset}", plan.study_name,
                                            parent, tags, artifacts)
    except Exception as exc:  # noqa: BLE001 - an unreachable server or a bad URI
        reason = str(exc).splitlines()[0]
        raise SeqtuneError(f"MLflow at {uri!r} is not usable: {reason} (or pass --no-mlflow)") from None
    if parent is None:
        backend.set_attr(plan, "mlflow_parent_run_id", tracker.parent_run_id)
    plan.tracker = tracker.handle()
    return tracker


def _backend(tool: str, args: argparse.Namespace | None = None) -> Any:
    if tool == "ray":
        from tuner.backends.ray_backend import RayBackend

        return RayBackend(address=getattr(args, "ray_address", None), cpus_per_trial=getattr(args, "cpus_per_trial", 1),
                          gpus_per_trial=getattr(args, "gpus_per_trial", 0),
                          storage_path=getattr(args, "ray_storage", None),
                          reuse_actors=getattr(args, "reuse_actors", True))
    from tuner.backends.optuna_backend import OptunaBackend

    return OptunaBackend()


def _seed_phase(args: argparse.Namespace, plan: Any, top: list[Any], base: Any, out_dir: Path) -> None:
    """Re-run the best configs with N seeds, as their own resumable study, and report mean and std."""
    import dataclasses

    from tuner.reporting import write_results_csv
    from tuner.space import Parameter

    seeds = [int(base["seed"]) + i for i in range(args.seeds)]
    points = [{**t.params, "seed": s} for t in top for s in seeds]
    names = sorted({n for p in points for n in p})
    seed_space = SearchSpace(source=plan.space.source)
    for name in names:
        values = []
        for point in points:
            if point[name] not in values:
                values.append(point[name])
        seed_space.parameters[name] = Parameter(name, Choice(tuple(values)), 0)
    seed_plan = dataclasses.replace(plan, space=seed_space, study_name=f"{plan.study_name}:seeds", algo="grid",
                                    n_trials=len(points), pruner="none",
                                    extra={"points": [{k: _encode(v) for k, v in p.items()} for p in points]})
    progress, close = make_progress(len(points), args.quiet, plan.valid_metric)
    try:
        records = _backend(args.tool, args).run(seed_plan, progress)
    finally:
        close()
    write_results_csv(out_dir / "seeds.csv", records, base.metric_keys)
    test_key = plan.valid_metric.lower()
    print(f"\nTop configurations over {len(seeds)} seeds ({', '.join(map(str, seeds))}): mean ± std")
    for rank, trial in enumerate(top, start=1):
        runs = [r for r in records if r.state == "COMPLETE"
                and {k: v for k, v in r.params.items() if k != "seed"} == trial.params]
        valid = [r.best_valid_score for r in runs]
        test = [r.test_result.get(test_key, math.nan) for r in runs]
        if not runs:
            continue
        spread = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
        print(f"{rank}. {dict(sorted(trial.params.items()))}: valid {test_key} {statistics.mean(valid):.4f} ± "
              f"{spread(valid):.4f}, test {statistics.mean(test):.4f} ± {spread(test):.4f} (n={len(runs)})")


def _encode(value: Any) -> Any:
    from tuner.space import encode_choice

    return encode_choice(value)


def cli() -> None:
    """Console-script entry (``seqtune-hyper``)."""
    run_cli(main)


if __name__ == "__main__":
    cli()
