"""Ray Tune backend: the same search space and the same trial objective, scheduled by Ray.

An all-choice space becomes ``tune.grid_search`` (Ray's basic variant generator runs every point);
otherwise ``tune.choice/uniform/quniform/loguniform`` (loguniform with exp'd bounds, as RecBole) are
searched by OptunaSearch. The function trainable reports every epoch with ``tune.report``; ASHA stops
weak trials when ``--pruner asha``. Everything a trial needs travels in its config under ``seqtune``
(model, dataset, files, overrides, the space and the tracker handle), never through ``sys.argv``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from tuner.backends.base import Backend, StudyPlan
from tuner.objective import Reporter, StudySpec, run_tracked_trial
from tuner.reporting import FAILED, FINISHED, PRUNED, TrialRecord
from tuner.space import Choice, LogUniform, QUniform, SearchSpace, Uniform, parse_space_text

CONTEXT_KEY = "seqtune"
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
SCORE = "valid_score"


def ray_param_space(space: SearchSpace) -> dict[str, Any]:
    from ray import tune

    grid = space.is_grid
    params: dict[str, Any] = {}
    for name, param in space.parameters.items():
        d = param.distribution
        if isinstance(d, Choice):
            values = [v for v in d.values]
            params[name] = tune.grid_search(values) if grid else tune.choice(values)
        elif isinstance(d, Uniform):
            params[name] = tune.uniform(d.low, d.high)
        elif isinstance(d, QUniform):
            params[name] = tune.quniform(d.low, d.high, d.q)
        elif isinstance(d, LogUniform):
            params[name] = tune.loguniform(*d.bounds)
    return params


class RayReporter(Reporter):
    def report(self, epoch: int, valid_score: float, metrics: dict[str, float], train_loss: float) -> bool:
        from ray import tune

        tune.report({SCORE: valid_score, "epoch": epoch + 1, "train_loss": train_loss,
                     **{f"valid/{k}": v for k, v in metrics.items()}})
        return False  # Ray's scheduler stops a trial itself


def trainable(config: dict[str, Any]) -> None:
    """One Ray trial: decode the params, run the shared objective, report the final result."""
    from ray import tune

    from tuner.tracking.base import open_tracker

    context = config[CONTEXT_KEY]
    space = parse_space_text(context["space_text"], context["space_source"])
    params = space.to_config_values({k: v for k, v in config.items() if k in space.parameters})
    spec = StudySpec(**context["spec"])
    trial_name = tune.get_context().get_trial_name() or "0"
    number = int(trial_name.rsplit("_", 1)[-1]) if trial_name.rsplit("_", 1)[-1].isdigit() else 0
    if context.get("threads"):
        import torch

        torch.set_num_threads(int(context["threads"]))
    outcome = run_tracked_trial(spec, params, number, RayReporter(), open_tracker(context["tracker"]))
    result = outcome.result
    tune.report({SCORE: result.best_valid_score, "epoch": result.epochs_run + 1, "final": 1.0,
                 "best_epoch": result.best_epoch, "seconds": outcome.seconds,
                 "overhead_seconds": outcome.overhead_seconds,
                 **{f"best_valid/{k}": v for k, v in result.best_valid_result.items()},
                 **{f"test/{k}": v for k, v in result.test_result.items()},
                 "params_json": repr(params)})


class RayBackend(Backend):
    def __init__(self, address: str | None = None, cpus_per_trial: float = 1, gpus_per_trial: float = 0,
                 storage_path: str | None = None, reuse_actors: bool = True) -> None:
        self.address = address
        self.reuse_actors = reuse_actors
        self.cpus_per_trial = cpus_per_trial
        self.gpus_per_trial = gpus_per_trial
        self.storage_path = storage_path

    # the CLI's study hooks: Ray keeps its own experiment state, the MLflow parent id goes beside it
    def prepare(self, plan: StudyPlan) -> None:
        self._root(plan).mkdir(parents=True, exist_ok=True)

    def _root(self, plan: StudyPlan) -> Path:
        base = Path(self.storage_path or Path.cwd() / "ray_results").resolve()  # Ray needs an absolute path
        return base

    def get_attr(self, plan: StudyPlan, key: str) -> Any:
        path = self._root(plan) / f".{plan.study_name}.{key}"
        return path.read_text() if path.is_file() else None

    def set_attr(self, plan: StudyPlan, key: str, value: Any) -> None:
        (self._root(plan) / f".{plan.study_name}.{key}").write_text(str(value))

    def plots(self, plan: StudyPlan, out_dir: Path) -> list[Path]:
        return []

    def collect(self, plan: StudyPlan) -> list[TrialRecord]:
        return []

    def run(self, plan: StudyPlan, progress: Any = None) -> list[TrialRecord]:
        import ray
        from ray import tune

        if not ray.is_initialized():
            for key, value in LOOPBACK_ENV.items():  # keep a local Ray's sockets on 127.0.0.1
                os.environ.setdefault(key, value)
            env = {"MLFLOW_TRACKING_URI": plan.tracker.get("uri", "")} if plan.tracker.get("uri") else {}
            local = {} if self.address else {"_node_ip_address": "127.0.0.1", "include_dashboard": False}
            ray.init(address=self.address, runtime_env={"env_vars": env} if env else None, log_to_driver=False,
                     configure_logging=False, **local)
        mode = "max" if plan.direction_bigger else "min"
        context = {
            "spec": {"model": plan.spec.model, "dataset": plan.spec.dataset, "config_files": plan.spec.config_files,
                     "overrides": plan.spec.overrides, "checkpoint_dir": plan.spec.checkpoint_dir,
                     "log_checkpoints": plan.spec.log_checkpoints},
            "space_text": Path(plan.space.source).read_text(),
            "space_source": plan.space.source,
            "tracker": plan.tracker,
            "threads": max(1, int(self.cpus_per_trial)),
        }
        param_space = {**ray_param_space(plan.space), CONTEXT_KEY: context}
        search_alg = None
        num_samples = 1
        if not plan.space.is_grid:
            from ray.tune.search.optuna import OptunaSearch

            search_alg = OptunaSearch(metric=SCORE, mode=mode, seed=plan.sampler_seed)
            num_samples = plan.n_trials
        scheduler = None
        if plan.pruner == "asha":
            from ray.tune.schedulers import ASHAScheduler

            scheduler = ASHAScheduler(time_attr="epoch", max_t=max(plan.max_epochs, 2) + 1, grace_period=1,
                                      reduction_factor=2)
        resources = {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}
        fn = tune.with_resources(trainable, resources)
        root = self._root(plan)
        path = root / plan.study_name
        if tune.Tuner.can_restore(str(path)):
            tuner = tune.Tuner.restore(str(path), fn, resume_unfinished=True, resume_errored=True,
                                       param_space=param_space)
        else:
            tuner = tune.Tuner(
                fn,
                param_space=param_space,
                tune_config=tune.TuneConfig(metric=SCORE, mode=mode, num_samples=num_samples, search_alg=search_alg,
                                            scheduler=scheduler, max_concurrent_trials=plan.workers,
                                            # a trial reuses a finished one's process: no new interpreter,
                                            # torch import, CUDA context or dataset load per trial
                                            reuse_actors=self.reuse_actors),
                run_config=tune.RunConfig(name=plan.study_name, storage_path=str(root), verbose=0,
                                          failure_config=tune.FailureConfig(max_failures=0)),
            )
        grid = tuner.fit()
        return [self._record(i, result, plan) for i, result in enumerate(grid)]

    @staticmethod
    def _record(index: int, result: Any, plan: StudyPlan) -> TrialRecord:
        config = {k: v for k, v in (result.config or {}).items() if k in plan.space.parameters}
        params = plan.space.to_config_values(config)
        metrics = result.metrics or {}
        number = index
        if result.path:
            suffix = Path(result.path).name.split("_")
            number = int(suffix[2]) if len(suffix) > 2 and suffix[2].isdigit() else index
        if result.error is not None:
            return TrialRecord(number=number, state=FAILED, params=params,
                               error=f"{type(result.error).__name__}: {result.error}".splitlines()[0][:500])
        valid = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("best_valid/")}
        test = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("test/")}
        state = FINISHED if metrics.get("final") else PRUNED
        if state == PRUNED:  # stopped by the scheduler: the last epoch's validation result
            valid = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("valid/")}
        score = metrics.get(SCORE)
        return TrialRecord(number=number, state=state, params=params,
                           best_valid_score=None if score is None or not math.isfinite(score) else score,
                           best_valid_result=valid, test_result=test, seconds=metrics.get("seconds"),
                           epochs_run=int(metrics.get("epoch", 1)) - (1 if metrics.get("final") else 0))
