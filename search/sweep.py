"""`sftune sweep`: Ray Tune + Optuna (TPE) + ASHA over the SFT search space.

This is the only module that imports ``ray.tune``: Ray's API moves between releases, so it is
kept in one place. Each trial runs the one :class:`search.train.Trainer`; progress leaves it
through the trainer's ``report`` callback and becomes ``tune.report``. The data is tokenized once
on the driver and shared with every trial through ``tune.with_parameters`` (Ray's object store).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import ray
from ray import tune

from search.config import AppConfig, Choice, Range, TrialParams
from search.data import PreparedData, prepare_data
from search.model import load_tokenizer, resolve_model_dir
from search.recorder import ResultsRecorder
from search.results import update_sweep_meta, write_sweep_meta

__all__ = ["SweepError", "experiment_path", "run_sweep", "run_trial", "validate_space"]

log = logging.getLogger("sftune")
TRAINABLE_NAME = "sftune_trial"


class SweepError(ValueError):
    """The sweep cannot start (bad space, missing experiment to resume, ...)."""


def is_remote(storage_path: str) -> bool:
    return "://" in storage_path


def storage_root(storage_path: str) -> str:
    """Absolute local path, or the URI unchanged (s3://, gs://, ...)."""
    return storage_path if is_remote(storage_path) else str(Path(storage_path).resolve())


def experiment_path(cfg: AppConfig, name: str) -> str:
    root = storage_root(cfg.tune.storage_path)
    return f"{root.rstrip('/')}/{name}" if is_remote(root) else str(Path(root) / name)


def results_path(cfg: AppConfig, name: str) -> str:
    """Where sftune's own results (``sftune/``) go: beside Tune's experiment when it is local;
    under ``./runs/NAME`` on the driver when Tune writes to a bucket (pandas writes local files).
    """
    if is_remote(cfg.tune.storage_path):
        return str(Path("runs").resolve() / name)
    return experiment_path(cfg, name)


def _model_layers(model_dir: Path) -> int:
    config = json.loads((model_dir / "config.json").read_text())
    return int(config["num_hidden_layers"])


def validate_space(cfg: AppConfig, model_dir: Path) -> None:
    """Checks that need the model (config-only checks already ran when the config was built)."""
    layers = _model_layers(model_dir)
    dim = cfg.space.frozen_depth
    values = [dim.low, dim.high] if isinstance(dim, Range) else getattr(dim, "choices", [dim])
    if max(values) > layers:
        raise SweepError(
            f"space.frozen_depth reaches {max(values):g} but model {cfg.model.name!r} has "
            f"{layers} layers; allowed values are 0..{layers}"
        )
    if isinstance(cfg.space.dropout, Range) and cfg.space.dropout.high >= 1:
        raise SweepError(f"space.dropout.high must be < 1, got {cfg.space.dropout.high}")


def optuna_space(cfg: AppConfig) -> dict[str, Any]:
    """Optuna distributions of the searched dimensions (integers stay integers)."""
    import optuna.distributions as dist

    space: dict[str, Any] = {}
    for name, dim in cfg.space.searched().items():
        if isinstance(dim, Choice):
            space[name] = dist.CategoricalDistribution(dim.choices)
        elif name in ("frozen_depth", "batch_size", "joint_epochs"):
            space[name] = dist.IntDistribution(int(dim.low), int(dim.high), log=dim.log)
        else:
            space[name] = dist.FloatDistribution(dim.low, dim.high, log=dim.log)
    return space


def fixed_params(cfg: AppConfig) -> dict[str, Any]:
    """The point's values that are not searched (constants, or train.* defaults)."""
    searched = cfg.space.searched()
    return {k: v for k, v in cfg.default_params().model_dump().items() if k not in searched}


def prefix_cache_dir(experiment_dir: str) -> Path:
    """Where a node's trials share frozen-prefix activations (memory-mapped files).

    Under the experiment dir when it is local; in the node's temp dir when the experiment lives
    in a bucket (a memory map needs a local file).
    """
    if is_remote(experiment_dir):
        import tempfile

        return Path(tempfile.gettempdir()) / "sftune-prefix-cache" / Path(experiment_dir).name
    return Path(experiment_dir) / "prefix_cache"


def run_trial(config: dict[str, Any], *, cfg: AppConfig, data: PreparedData,
              fixed: dict[str, Any], experiment: str, experiment_dir: str) -> None:
    """The Tune trainable: one trial of the one Trainer, reporting every epoch to Tune."""
    from search.train import Trainer

    params = TrialParams.from_values({**fixed, **config})
    context = tune.get_context()
    workdir = Path(context.get_trial_dir()).resolve()

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report(metrics, checkpoint=checkpoint)

    trainer = Trainer(
        cfg=cfg, params=params, data=data, model_dir=resolve_model_dir(cfg.model.name),
        workdir=workdir, report=report,
        trial_meta={"trial_id": context.get_trial_id(), "sweep": experiment},
        cache_dir=prefix_cache_dir(experiment_dir),
    )
    restored = tune.get_checkpoint()
    try:
        with restored.as_directory() if restored else nullcontext() as resume_dir:
            result = trainer.fit(resume_from=Path(resume_dir) if resume_dir else None)
    finally:
        del trainer
        _release_memory()
    if result.stop_reason == "diverged":
        # A diverged trial ends normally (it is not a bug to retry); its score is the best epoch
        # before the blow-up, or 0 so the sampler learns to avoid that region.
        best = result.best["score"] if result.best else 0.0
        tune.report({"score": best, "stop_reason": "diverged", "error": result.message,
                     "epoch": len(result.history) + 1})


def _release_memory() -> None:
    """Hand a finished trial's memory back before the reused worker starts the next trial.

    Whatever of its model, optimizer and batches sits in reference cycles waits for the collector,
    and glibc keeps freed heap pages in the process unless told to return them. Measured on the
    default sweep: worker reuse alone raised the process tree's peak from 4.1 to 6.3 GiB; with
    this release it is 4.4 GiB (BENCHMARKS.md, the main job).
    """
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


class _RecorderCallback(tune.Callback):
    """Forwards Tune's trial events to the (Ray-free) :class:`ResultsRecorder`."""

    def __init__(self, recorder: ResultsRecorder) -> None:
        self.recorder = recorder

    def setup(self, **info: Any) -> None:
        self.recorder.load_existing()  # on resume, rows of the earlier run come back

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.recorder.on_result(trial.trial_id, trial.config, result)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        self.recorder.on_checkpoint(trial.trial_id, checkpoint.path)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.recorder.on_complete(trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.recorder.on_error(trial.trial_id, trial.config, _error_text(trial))

    def on_experiment_end(self, trials, **info) -> None:
        self.recorder.flush(force=True)


def _error_text(trial) -> str:
    """The exception line of a failed trial's error file (Tune stores the full traceback)."""
    try:
        lines = [ln for ln in Path(trial.error_file).read_text().splitlines() if ln.strip()]
    except (OSError, TypeError):
        return "trial failed (no error file)"
    return lines[-1][:500] if lines else "trial failed"


def _quiet_output() -> None:
    # The legacy reporter honours our column choice; the new engine prints every result.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A snapshot per improved checkpoint is what makes a killed sweep lose nothing; don't warn.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _init_ray(cfg: AppConfig, address: str | None) -> None:
    _quiet_output()
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # The embedded default: a local Ray with the configured CPUs and quiet logs.
        ray.init(num_cpus=cfg.tune.num_cpus, logging_level=logging.WARNING,
                 log_to_driver=False, include_dashboard=False)


def _build_trainable(cfg: AppConfig, data: PreparedData, name: str,
                     trial_fn: Callable[..., None]):
    trainable = tune.with_parameters(
        trial_fn, cfg=cfg, data=data, fixed=fixed_params(cfg), experiment=name,
        experiment_dir=experiment_path(cfg, name),
    )
    resources = {"cpu": cfg.tune.cpus_per_trial, "gpu": cfg.tune.gpus_per_trial}
    return tune.with_resources(trainable, resources)


def _searcher(cfg: AppConfig):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    # TPE needs a few random points first; Optuna's default of 10 would make a small sweep
    # purely random, so scale the start-up phase with the budget.
    startup = max(2, min(10, cfg.tune.num_samples // 3))
    sampler = optuna.samplers.TPESampler(
        seed=cfg.tune.seed, multivariate=True, n_startup_trials=startup
    )
    return OptunaSearch(space=optuna_space(cfg), metric="score", mode="max", sampler=sampler)


def _scheduler(cfg: AppConfig):
    from ray.tune.schedulers import ASHAScheduler

    # "score" is the best epoch so far: ASHA's rungs and TPE both judge a trial by its best epoch.
    return ASHAScheduler(
        metric="score", mode="max", time_attr="training_iteration", max_t=cfg.train.epochs,
        grace_period=min(cfg.tune.grace_period, cfg.train.epochs),
        reduction_factor=cfg.tune.reduction_factor,
    )


def _progress_table(cfg: AppConfig):
    """A compact live table: the searched params, epoch, best score and why a trial stopped."""
    return tune.CLIReporter(
        metric_columns={"epoch": "epoch", "score": "best " + cfg.train.metric,
                        "stop_reason": "stop"},
        parameter_columns=list(cfg.space.searched()),
        max_report_frequency=15, metric="score", mode="max", sort_by_metric=True,
    )


def _run_config(cfg: AppConfig, name: str, recorder: ResultsRecorder):
    return tune.RunConfig(
        name=name,
        storage_path=storage_root(cfg.tune.storage_path),
        callbacks=[_RecorderCallback(recorder)],
        failure_config=tune.FailureConfig(max_failures=cfg.tune.max_failures),
        # Trials report a checkpoint only when an epoch improves, so keeping one keeps the best.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        progress_reporter=_progress_table(cfg),
        verbose=1,  # status tables only, not every result
    )


def _new_tuner(cfg: AppConfig, name: str, trainable, recorder: ResultsRecorder):
    searched = cfg.space.searched()
    if not searched:
        raise SweepError("the search space has no searched dimension; give one a {low, high}")
    tune_config = tune.TuneConfig(
        search_alg=_searcher(cfg), scheduler=_scheduler(cfg), num_samples=cfg.tune.num_samples,
        max_concurrent_trials=cfg.tune.max_concurrent_trials,
        time_budget_s=cfg.tune.time_budget_s,
        # A trial's worker process stays for the next trial: no new process, no second import
        # of torch and transformers per trial.
        reuse_actors=True,
    )
    return tune.Tuner(trainable, tune_config=tune_config,
                      run_config=_run_config(cfg, name, recorder))


def _restored_tuner(path: str, trainable):
    if not tune.Tuner.can_restore(path):
        raise SweepError(f"no sweep to resume at {path}")
    # restart_errored would crash OptunaSearch on Ray 2.60 (KeyError on new trial ids).
    return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True,
                              resume_errored=True)


def run_sweep(
    cfg: AppConfig,
    *,
    name: str,
    address: str | None = None,
    resume: bool = False,
    trial_fn: Callable[..., None] = run_trial,
) -> Path:
    """Run (or resume) the sweep ``name``; returns the experiment directory.

    ``trial_fn`` is the trainable body (default :func:`run_trial`); wrapping it is how tests
    inject faults into real trials.
    """
    model_dir = resolve_model_dir(cfg.model.name)
    validate_space(cfg, model_dir)
    tune_path, path = experiment_path(cfg, name), results_path(cfg, name)
    data = prepare_data(cfg.data, load_tokenizer(model_dir))  # once per sweep, for every trial
    _init_ray(cfg, address)
    trainable = _build_trainable(cfg, data, name, trial_fn)
    recorder = ResultsRecorder(experiment_dir=path, keep_checkpoints=cfg.tune.keep_checkpoints,
                               fixed=fixed_params(cfg))
    if resume:
        tuner = _restored_tuner(tune_path, trainable)
    else:
        _start_meta(cfg, path, name, data)
        tuner = _new_tuner(cfg, name, trainable, recorder)
    update_sweep_meta(path, status="running", resumed=resume or None)
    try:
        tuner.fit()
    except KeyboardInterrupt:
        update_sweep_meta(path, status="interrupted", ended_at=time.time())
        raise
    _finish_meta(cfg, path)
    return Path(path)


def _start_meta(cfg: AppConfig, path: str, name: str, data: PreparedData) -> None:
    if Path(path).exists() and any(Path(path).iterdir()):
        raise SweepError(f"sweep {name!r} already exists at {path}; use --resume or another --name")
    write_sweep_meta(path, {
        "name": name, "status": "starting", "started_at": time.time(),
        "metric": cfg.train.metric, "mode": "max", "num_samples": cfg.tune.num_samples,
        "config": cfg.model_dump(mode="json"), "label_names": data.label_names,
        "data_fingerprint": data.fingerprint, "data_sizes": data.sizes,
    })


def _finish_meta(cfg: AppConfig, path: str) -> None:
    from search.results import best_trial, read_trials

    best = best_trial(read_trials(path))
    summary = None
    if best is not None:
        summary = {k: (None if _isnan(v) else v) for k, v in best.to_dict().items()}
    update_sweep_meta(path, status="finished", ended_at=time.time(), best=summary)
    if cfg.tune.optuna_db:
        from search.recorder import write_optuna_study

        write_optuna_study(path, cfg)


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and value != value
