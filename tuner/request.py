"""The command line, parsed and checked into a typed ``StudyRequest`` before anything starts.

Everything a user can get wrong is caught here, as one line naming ``file:line`` (exit 2 through
``models.cli.run_cli``): the flags, the search space's grammar and keys, and every value the space
can produce: each choice value and the bounds (and an interior point) of each continuous
distribution are built into the model's typed config, which rejects what the model would.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.cli import command_parser, parse_with_overrides, split_files
from models.config import Config
from models.errors import ConfigError, SeqtuneError
from models.utils import check_writable
from tuner.evidence import budget_pruner
from tuner.objective import StudySpec
from tuner.redact import redact_credentials
from tuner.space import Choice, Distribution, SearchSpace, SpaceError, decode_value, parse_space_file

DEFAULT_STORAGE = "sqlite:///seqtune_studies.db"


RAY_DESTS = ("ray_address", "cpus_per_trial", "gpus_per_trial", "ray_storage", "reuse_actors")  # --tool ray's


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("run_hyper.py", "Tune a sequential recommender over a RecBole hyper.test search space.")
    recbole = p.add_argument_group("RecBole's flags")
    recbole.add_argument("--model", "-m", required=True,
                         help="model name (GRU4Rec, GRU4RecKG, KSR, S3Rec); several, comma separated, with --budget: "
                              "a leaderboard (each tuned on an equal share, its best re-run over --seeds, 3 by "
                              "default; search_spaces/<Model>.test unless --params_file names one per model)")
    recbole.add_argument("--dataset", "-d", default="ml-100k", help="dataset name; --data_path=DIR for your own")
    recbole.add_argument("--config_files", nargs="*", default=[], help="fixed-setting YAML files, space separated")
    recbole.add_argument("--params_file", required=True,
                         help="search space in RecBole's hyper.test format (a leaderboard: optional, or one per model, "
                              "comma separated)")
    recbole.add_argument("--output_file", default="hyper_example.result",
                         help="RecBole-format results; results.csv and best_config.yaml go beside it")
    recbole.add_argument("--tool", default="optuna", type=str.lower,
                         choices=["optuna", "ray", "hyperopt"], help="backend (hyperopt = optuna)")
    recbole.add_argument("--display_file", default=None, help="accepted for RecBole compatibility; use MLflow")
    ours = p.add_argument_group("seqtune's flags")
    ours.add_argument("--algo", choices=["grid", "tpe", "random"], default=None,
                      help="search algorithm (default: grid for an all-choice space, else tpe)")
    ours.add_argument("--grid-order", "--grid_order", dest="grid_order", choices=["file", "random"], default=None,
                      help="a grid's run order: the file's, or shuffled by --sampler-seed as RecBole's exhaustive "
                           "search does (a study stopped early has then sampled the grid without bias); default: "
                           "random with --budget, else file")
    ours.add_argument("--n-trials", "--n_trials", dest="n_trials", type=int, default=None,
                      help="trial budget (default: the grid size, or 100 as RecBole's max_evals)")
    ours.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    ours.add_argument("--budget", default=None, metavar="DURATION",
                      help="wall time for this run (90m, 2h, 1h30m): a grid in random order with successive "
                           "halving over epochs (every point gets a first epoch, the best third go on, ...), a "
                           "sampled space with TPE and Hyperband, Ray with ASHA (docs/tuning.md: the evidence); "
                           "at the end of the budget nothing new starts and running trials stop at their next "
                           "epoch and are queued again; the same command resumes with a new budget")
    ours.add_argument("--workers", type=int, default=1, help="parallel workers (processes, or Ray trials at once)")
    ours.add_argument("--storage", default=DEFAULT_STORAGE,
                      help="Optuna storage: a sqlite file (one host) or postgresql://... (many hosts)")
    ours.add_argument("--study-name", "--study_name", dest="study_name", default=None,
                      help="the same name resumes a study (default: derived from model, dataset, space, config)")
    ours.add_argument("--pruner", choices=["none", "median", "hyperband", "halving", "sync-halving", "asha"],
                      default="none",
                      help="stop unpromising trials early on the validation metric; sync-halving (a grid, Optuna): "
                           "every point's first epoch before any goes on, then the best third of each rung "
                           "continue from their saved state")
    ours.add_argument("--seeds", type=int, default=0, help="re-run the top configs with N seeds: mean and std")
    ours.add_argument("--seeds-top", "--seeds_top", dest="seeds_top", type=int, default=3,
                      help="how many of the best configs --seeds re-runs (default 3)")
    ours.add_argument("--sampler-seed", "--sampler_seed", dest="sampler_seed", type=int, default=2020,
                      help="seeds the sampler (TPE, random) and a random grid order; not the trials' own --seed")
    ours.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    ours.add_argument("--quiet", action="store_true", help="no progress display; only the final summary")
    ours.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                      help="print the study plan (trials, workers, estimated wall time) and exit; nothing runs")
    ray = p.add_argument_group("Ray Tune (--tool ray)")  # RAY_DESTS: given without --tool ray, an error
    ray.add_argument("--ray-address", "--ray_address", dest="ray_address", default=None,
                     help="an existing cluster (auto, ray://host:10001); default: start a local Ray")
    ray.add_argument("--cpus-per-trial", "--cpus_per_trial", dest="cpus_per_trial", type=float, default=1,
                     help="CPUs Ray reserves for each trial, which trains with that many torch threads")
    ray.add_argument("--gpus-per-trial", "--gpus_per_trial", dest="gpus_per_trial", type=float, default=0,
                     help="fractions such as 0.25 pack several small trials on one GPU")
    ray.add_argument("--ray-storage", "--ray_storage", dest="ray_storage", default=None,
                     help="where Ray keeps its own trial logs (made absolute; default ./ray_results); the study "
                          "itself lives in --storage, as under Optuna")
    ray.add_argument("--reuse-actors", "--reuse_actors", dest="reuse_actors", action=argparse.BooleanOptionalAction,
                     default=True, help="run the next trial in a finished trial's process (no new interpreter, "
                                        "torch import, CUDA context or dataset load per trial)")
    track = p.add_argument_group("tracking")
    track.add_argument("--mlflow-uri", "--mlflow_uri", dest="mlflow_uri", default=None,
                       help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    track.add_argument("--no-mlflow", "--no_mlflow", dest="no_mlflow", action="store_true",
                       help="do not log to MLflow")
    track.add_argument("--experiment", default=None, help="MLflow experiment (default: <model>-<dataset>)")
    track.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                       help="a tag on the study's MLflow parent run (repeatable)")
    track.add_argument("--log-checkpoints", "--log_checkpoints", dest="log_checkpoints", action="store_true",
                       help="log every trial's best checkpoint (default: only the best trial's)")
    return p


@dataclass(frozen=True)
class RayOptions:
    address: str | None
    cpus_per_trial: float
    gpus_per_trial: float
    storage_path: str | None
    reuse_actors: bool


@dataclass(frozen=True)
class StudyRequest:
    """One checked command line: what to tune, how, and where results and tracking go."""

    spec: StudySpec
    base: Config  # the fixed config every trial starts from
    space: SearchSpace
    output_file: Path
    tool: str  # optuna | ray
    algo: str  # grid | tpe | random
    n_trials: int
    grid_points: list[dict[str, Any]] | None  # a grid in run order (None: the file's order)
    workers: int
    threads_per_worker: int
    storage: str
    study_name: str
    pruner: str
    timeout: float | None  # --timeout or --budget, in seconds
    budget: bool  # the timeout is a budget: trials still running at its end are stopped
    seeds: int
    seeds_top: int
    sampler_seed: int
    quiet: bool
    dry_run: bool
    ray: RayOptions
    mlflow_uri: str | None  # None: no tracking
    experiment: str
    notes: list[str] = field(default_factory=list)  # warnings to show before the study starts
    command: str = "run_hyper.py"  # the command line, as the report shows it
    tags: dict[str, str] = field(default_factory=dict)  # --tag: on the MLflow parent run

    @property
    def bigger(self) -> bool:
        return bool(self.base["valid_metric_bigger"])

    @property
    def valid_metric(self) -> str:
        return str(self.base["valid_metric"])

    @property
    def out_dir(self) -> Path:
        return self.output_file.parent


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def resolve(argv: Sequence[str] | None) -> StudyRequest:
    """Parse and check everything; nothing is started or written here."""
    from models.config import build_config, known_keys
    from models.data.datasets import local_dataset_dir
    from models.registry import canonical_model_name
    from tuner.tracking.mlflow_tracker import tracking_uri

    parser = build_parser()
    args, overrides = parse_with_overrides(parser, argv)
    model = canonical_model_name(args.model)
    tool = "optuna" if args.tool == "hyperopt" else args.tool
    if args.device:
        overrides["device"] = args.device
    _check_flags(parser, args, tool)
    space = parse_space_file(args.params_file)
    space.check_keys(known_keys(model, args.dataset), f"model {model}")
    clash = sorted(set(space.parameters) & set(overrides))
    if clash:
        param = space.parameters[clash[0]]
        raise SpaceError(f"{space.source}:{param.line}: {clash[0]!r} is searched here and fixed on the command "
                         "line; drop one of them")
    config_files = [str(Path(f).resolve()) for f in split_files(args.config_files)]
    base = build_config(model, args.dataset, config_files, overrides, "command line")
    local_dataset_dir(args.dataset, base.get("data_path"))  # a missing dataset stops here, not in every trial
    check_writable(Path(args.output_file), "--output_file")
    checkpoints = (Path(args.output_file).parent / "checkpoints").resolve()
    spec = StudySpec(model, args.dataset, config_files, overrides, checkpoint_dir=str(checkpoints),
                     log_checkpoints=args.log_checkpoints, resume_dir=str(checkpoints / "resume"))
    preflight(spec, space)
    # the data files parsed once here: a malformed row is one line naming file:line before anything is
    # written, and the prepared data is cached for every worker (a no-op when it already is)
    from models.data.sequential import load_sequential_data

    load_sequential_data(base)
    algo = args.algo or ("grid" if space.is_grid else "tpe")
    if algo == "grid" and not space.is_grid:
        names = [n for n, p in space.parameters.items() if not isinstance(p.distribution, Choice)]
        raise SpaceError(f"{space.source}: --algo grid needs every parameter to be a choice; not: {', '.join(names)}")
    notes = [f"warning: {w}" for w in base.warnings]
    if args.display_file:
        notes.append("warning: --display_file is not written; compare trials in MLflow or optuna-dashboard")
    if args.pruner == "sync-halving" and algo != "grid":
        raise SeqtuneError(f"--pruner sync-halving ranks every point of a grid at each rung; {space.source} is "
                           f"searched with {algo}: use --pruner hyperband or halving")
    budget = parse_duration(args.budget) if args.budget is not None else None
    pruner = args.pruner if args.pruner != "none" or budget is None else budget_pruner(algo, tool)
    points = None
    n_trials = args.n_trials or (space.grid_size if algo == "grid" else 100)
    if algo == "grid":
        if args.n_trials:
            notes.append("note: a grid runs every point; --n-trials is ignored")
        n_trials = space.grid_size
        if (args.grid_order or ("random" if budget else "file")) == "random":
            points = space.shuffled_grid(args.sampler_seed)
    threads = max(1, cpu_count() // args.workers) if args.workers > 1 else int(base.get("threads") or 0)
    return StudyRequest(
        spec=spec, base=base, space=space, output_file=Path(args.output_file), tool=tool, algo=algo,
        n_trials=n_trials, grid_points=points, workers=args.workers, threads_per_worker=threads,
        storage=args.storage, study_name=args.study_name or default_study_name(spec, algo, space),
        pruner=pruner, timeout=budget or args.timeout, budget=budget is not None, seeds=args.seeds,
        seeds_top=args.seeds_top,
        sampler_seed=args.sampler_seed,
        quiet=args.quiet, dry_run=args.dry_run,
        ray=RayOptions(args.ray_address, args.cpus_per_trial, args.gpus_per_trial, args.ray_storage,
                       args.reuse_actors),
        mlflow_uri=None if args.no_mlflow else tracking_uri(args.mlflow_uri),
        experiment=args.experiment or f"{model}-{args.dataset}", notes=notes,
        command=redact_credentials(shlex.join(["run_hyper.py", *(sys.argv[1:] if argv is None else argv)])),
        tags=_tags(args.tag))


def _tags(pairs: Sequence[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SeqtuneError(f"--tag {pair!r}: expected KEY=VALUE")
        tags[key.strip()] = value
    return tags


def _check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace, tool: str) -> None:
    if args.workers < 1:
        raise SeqtuneError("--workers must be >= 1")
    if args.n_trials is not None and args.n_trials < 1:
        raise SeqtuneError("--n-trials must be >= 1")
    if args.seeds < 0:
        raise SeqtuneError("--seeds must be >= 0")
    if args.seeds_top < 1:
        raise SeqtuneError("--seeds-top must be >= 1")
    if args.timeout is not None and args.timeout <= 0:
        raise SeqtuneError("--timeout must be > 0 seconds")
    if args.timeout is not None and args.budget is not None:
        raise SeqtuneError("--timeout and --budget both limit the run's time: give one")
    from tuner.backends.optuna.storage import check_storage_url

    check_storage_url(args.storage)
    if tool == "ray":
        from tuner.backends.ray_backend import check_ray_address

        check_ray_address(args.ray_address)
    ray_flags = [("--no-" if value is False else "--") + dest.replace("_", "-")
                 for dest in RAY_DESTS if (value := getattr(args, dest)) != parser.get_default(dest)]
    if ray_flags and tool != "ray":  # else the study runs here, not on the cluster the user named
        raise SeqtuneError(f"{', '.join(ray_flags)}: Ray Tune's, but this study runs under {tool}; add --tool ray")
    if args.pruner == "asha" and tool != "ray":
        raise SeqtuneError("--pruner asha is Ray Tune's scheduler: use it with --tool ray (optuna: median, hyperband)")
    if tool == "ray" and args.pruner in ("median", "hyperband", "halving", "sync-halving"):
        raise SeqtuneError(f"--pruner {args.pruner} is Optuna's; with --tool ray use --pruner asha")


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str) -> float:
    """``90m``, ``2h``, ``1h30m``, ``45s`` -> seconds; anything else is one clear error."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match or not any(match.groups()):
        raise SeqtuneError(f"--budget: expected a duration like 90m, 2h or 1h30m, got {text!r}")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise SeqtuneError(f"--budget must be longer than zero, got {text!r}")
    return total


def preflight(spec: StudySpec, space: SearchSpace) -> None:
    """Build the config for every value the space can give a trial: each choice value, and for a
    continuous distribution its bounds and an interior point (which catches a non-integer range for
    an integer key). The first value the model's typed config rejects is one line naming file:line."""
    for name, param in space.parameters.items():
        for value, shown in probe_values(param.distribution):
            try:
                spec.config({name: decode_value(value)})
            except ConfigError as exc:
                message = str(exc).split(": ", 1)[-1]
                raise SpaceError(f"{space.source}:{param.line}: {name}={shown}: {message}") from None


def probe_values(distribution: Distribution) -> list[tuple[Any, str]]:
    """(value, how to show it) for every value of a choice; bounds and one interior point otherwise."""
    if isinstance(distribution, Choice):
        return [(value, repr(value)) for value in distribution.values]
    optuna_distribution = distribution.to_optuna()
    low, high, step = optuna_distribution.low, optuna_distribution.high, optuna_distribution.step
    inside = low * (high / low) ** 0.37 if optuna_distribution.log else low + 0.37 * (high - low)
    probes = [low, high, inside] + ([low + step] if step and low + step <= high else [])  # a q like 8.5
    described = distribution.describe()
    return [(distribution.from_optuna(v), f"{distribution.from_optuna(v)!r} (from {described})") for v in probes]


def default_study_name(spec: StudySpec, algo: str, space: SearchSpace) -> str:
    recipe = {"model": spec.model, "dataset": spec.dataset, "algo": algo, "overrides": spec.overrides,
              "space": {n: p.distribution.describe() for n, p in space.parameters.items()},
              "config_files": [Path(f).read_text() for f in spec.config_files]}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=repr).encode()).hexdigest()[:8]
    return f"{spec.model}-{spec.dataset}-{digest}"


def show_notes(request: StudyRequest) -> None:
    for note in request.notes:
        print(note, file=sys.stderr)
