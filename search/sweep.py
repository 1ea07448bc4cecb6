"""`sftune sweep`: Ray Tune + Optuna (TPE) + ASHA over the SFT search space.

This is the only module that imports ``ray.tune``: Ray's API moves between releases, so it is
kept in one place. Each trial runs the one :class:`search.train.Trainer`; progress leaves it
through the trainer's ``report`` callback and becomes ``tune.report``. The data is tokenized once
on the driver and shared with every trial through ``tune.with_parameters`` (Ray's object store).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search import storage
from search.budget import (
    EXPORT_RESERVE_S,
    choose_final,
    final_config,
    finalist_runs,
    search_budget,
    search_setup,
)
from search.config import AppConfig, TrialParams, build_config, is_point
from search.data import PreparedData, prepare_data
from search.head_init import ProbeHead, probe_for_config
from search.model import load_tokenizer, resolve_model_dir
from search.recorder import ResultsRecorder
from search.results import (
    StopReason,
    experiment_path,
    prefix_cache_dir,
    read_sweep_meta,
    read_trials,
    results_path,
    update_sweep_meta,
    write_row_keys,
    write_sweep_meta,
)
from search.space import default_point, fixed_params, optuna_space, validate_space
from search.tracking import check_tracking, tracking_callbacks
from search.warm_start import WarmStart, plan_warm_start

__all__ = ["DefaultKeepingASHA", "SweepError", "run_sweep", "run_trial"]

log = logging.getLogger("sftune")
TRAINABLE_NAME = "sftune_trial"
#: Seconds a reused trial worker waits for the previous trial's thread to end (see run_trial).
REUSE_WAIT_S = 120


class SweepError(ValueError):
    """The sweep cannot start (missing experiment to resume, name clash, ...)."""


def run_trial(config: dict[str, Any], *, cfg: AppConfig, data: PreparedData,
              fixed: dict[str, Any], experiment: str, experiment_dir: str,
              phase: str = "search", head: ProbeHead | None = None,
              stop_at: float | None = None) -> None:
    """The Tune trainable: one trial of the one Trainer, reporting every evaluation to Tune.

    ``stop_at`` (wall clock) is when the search's time is up: the trial then evaluates once
    more and ends by itself (see :data:`STRAGGLER_FACTOR`)."""
    from search.train import Trainer

    seed = config.get("seed")
    # A reused worker starts its next trial only once this one's thread has ended, and Tune
    # gives that 2 s by default, after which the next trial errors ("Could not re-use actor").
    # With a bucket the last report's checkpoint upload can take longer: measured on the
    # bucket test, one trial in three was lost that way. Read by Tune in this process.
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", str(REUSE_WAIT_S))
    config = {k: v for k, v in config.items() if k not in FINALIST_KEYS}
    if seed is not None:  # a finalist's re-run: the same configuration, another seed
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": int(seed)})})
    params = TrialParams.from_values({**fixed, **config})
    context = tune.get_context()
    workdir = Path(context.get_trial_dir()).resolve()

    node = ray.get_runtime_context().get_node_id()

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report({**metrics, "node": node}, checkpoint=checkpoint)

    trainer = Trainer(
        cfg=cfg, params=params, data=data, model_dir=resolve_model_dir(cfg.model.name),
        workdir=workdir, report=report,
        trial_meta={"trial_id": context.get_trial_id(), "sweep": experiment, "phase": phase},
        cache_dir=prefix_cache_dir(experiment_dir), head=head, stop_at=stop_at,
    )
    restored = tune.get_checkpoint()
    try:
        with restored.as_directory() if restored else nullcontext() as resume_dir:
            result = trainer.fit(resume_from=Path(resume_dir) if resume_dir else None)
    finally:
        del trainer
        _release_memory()
    if result.stop_reason == StopReason.DIVERGED:
        # A diverged trial ends normally (it is not a bug to retry); its score is the best epoch
        # before the blow-up, or 0 so the sampler learns to avoid that region.
        best = result.best["score"] if result.best else 0.0
        examples = result.history[-1]["examples"] + 1 if result.history else 1
        tune.report({"score": best, "stop_reason": StopReason.DIVERGED, "error": result.message,
                     "examples": examples, "epoch": examples / len(data.train), "node": node})


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
        self._restores_checked = False

    def setup(self, **info: Any) -> None:
        self.recorder.load_existing()  # on resume, rows of the earlier run come back

    def on_step_begin(self, iteration, trials, **info) -> None:
        # Before the first trial starts: a restored trial whose checkpoint is gone restarts.
        if not self._restores_checked:
            self._restores_checked = True
            for trial in trials:
                if trial.status == "PENDING" and _checkpoint_lost(trial):
                    _restart_from_scratch(trial)
                    self.recorder.forget(trial.trial_id)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.recorder.on_result(trial.trial_id, trial.config, result)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        self.recorder.on_checkpoint(trial.trial_id, _checkpoint_location(checkpoint))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.recorder.on_complete(trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.recorder.on_error(trial.trial_id, trial.config, _error_text(trial))

    def on_experiment_end(self, trials, **info) -> None:
        # Trials Tune ended at the experiment's time limit get no on_trial_complete call.
        self.recorder.on_budget_end([t.trial_id for t in trials if t.status == "TERMINATED"])
        self.recorder.flush(force=True)


def _checkpoint_lost(trial) -> bool:
    """Whether Tune's snapshot points the trial at a checkpoint that no longer exists.

    A killed driver leaves that behind: Tune deletes a trial's superseded checkpoint when it
    registers the next one and snapshots the experiment only afterwards, and the recorder
    prunes a finished trial's checkpoint before Tune's next snapshot says it finished. Tune
    would then fail the trial on restore ("Could not recover from checkpoint").
    """
    checkpoint = trial.checkpoint
    return checkpoint is not None and not storage.exists(_checkpoint_location(checkpoint))


def _restart_from_scratch(trial) -> None:
    """Forget the trial's checkpoints, so Tune starts it afresh instead of failing it.

    Tune has no public call for this; its own ``Trial.reset`` builds the same fresh manager.
    """
    from ray.train._internal.checkpoint_manager import _CheckpointManager

    log.warning("trial %s: its checkpoint %s is gone; it restarts from the beginning",
                trial.trial_id, _checkpoint_location(trial.checkpoint))
    config = trial.run_metadata.checkpoint_manager.checkpoint_config
    trial.run_metadata.checkpoint_manager = _CheckpointManager(checkpoint_config=config)


def _error_text(trial) -> str:
    """The exception line of a failed trial's error file (Tune stores the full traceback), then
    the traceback's last lines above it: where it failed."""
    try:
        lines = [ln for ln in Path(trial.error_file).read_text().splitlines() if ln.strip()]
    except (OSError, TypeError):
        return "trial failed (no error file)"
    if not lines:
        return "trial failed"
    where = [ln.strip() for ln in lines[-1 - TRACEBACK_LINES:-1]]
    return "\n".join([lines[-1][:500], *where])[:1000]


#: Traceback lines kept under a failed trial's exception line (the innermost frame and its code).
TRACEBACK_LINES = 4


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
        # The embedded default: a local Ray of its own with the configured CPUs and quiet logs
        # ("local": never the cluster a `ray start` on this machine left in Ray's address file).
        ray.init(address="local", num_cpus=cfg.tune.num_cpus, logging_level=logging.WARNING,
                 log_to_driver=False, include_dashboard=False)


def _build_trainable(cfg: AppConfig, data: PreparedData, name: str,
                     trial_fn: Callable[..., None], *, phase: str, head: ProbeHead | None,
                     resources: dict[str, float] | None = None, stop_at: float | None = None):
    trainable = tune.with_parameters(
        trial_fn, cfg=cfg, data=data, fixed=fixed_params(cfg), experiment=name,
        experiment_dir=experiment_path(cfg, name), phase=phase, head=head, stop_at=stop_at,
    )
    resources = resources or {"cpu": cfg.tune.cpus_per_trial, "gpu": cfg.tune.gpus_per_trial}
    return tune.with_resources(trainable, resources)


class _DeadlineSearch(OptunaSearch):
    """OptunaSearch that stops suggesting at a wall-clock deadline: the sweep stops launching
    trials near its budget, while the trials already running go on to their end (so the first,
    the untuned default, always finishes)."""

    def __init__(self, *args: Any, deadline: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def suggest(self, trial_id: str):
        if self.deadline is not None and time.time() >= self.deadline:
            return Searcher.FINISHED
        return super().suggest(trial_id)


def _searcher(cfg: AppConfig, deadline: float | None, warm: WarmStart | None):
    import optuna

    # TPE needs a few random points first; Optuna's default of 10 would make a small sweep
    # purely random, so scale the start-up phase with the budget.
    startup = max(2, min(10, cfg.tune.num_samples // 3))
    sampler = optuna.samplers.TPESampler(
        seed=cfg.tune.seed, multivariate=True, n_startup_trials=startup
    )
    # The untuned default is the first trial: a sweep never returns worse than no tuning, and
    # what the tuning bought is measured against it (unless a warm start's history holds it).
    # A warm start's prior (the old sweep's top configurations) comes next.
    first = [] if warm and warm.has_default(cfg) else [default_point(cfg)]
    first += warm.prior if warm else []
    searcher = _DeadlineSearch(space=optuna_space(cfg), metric="score", mode="max",
                               sampler=sampler, points_to_evaluate=first or None,
                               deadline=deadline)
    for point, score in warm.history if warm else []:  # told, not run again
        searcher.add_evaluated_point(point, score)
    return searcher


class DefaultKeepingASHA(ASHAScheduler):
    """ASHA that never stops the untuned default trial: it is the baseline every other trial
    must beat, so it runs its whole budget and is compared at equal fidelity.

    Past ``launch_by`` (the search's budget) it also ends the trials still queued (PENDING):
    Tune queues up to ``tune.max_concurrent_trials`` before any lane is free, and the
    searcher's deadline stops only new suggestions, so a queued trial would start on the next
    free lane, load its model and spend an evaluation to end at once (configs/full.yaml on
    2 CPU cores: 11 of 22 trials, BENCHMARKS.md)."""

    def __init__(self, *args: Any, default: dict[str, Any], launch_by: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default, self.launch_by = default, launch_by

    def choose_trial_to_run(self, tune_controller):
        if self.launch_by is not None and time.time() >= self.launch_by:
            # Only trials that never reported: a resumed sweep's interrupted ones go on.
            for trial in tune_controller.get_trials():
                if trial.status == Trial.PENDING and "examples" not in \
                        trial.run_metadata.last_result:  # (Trial.last_result fills defaults)
                    tune_controller.stop_trial(trial)  # tells the searcher and the callbacks
        return super().choose_trial_to_run(tune_controller)

    def on_trial_result(self, tune_controller, trial, result):
        decision = super().on_trial_result(tune_controller, trial, result)  # records the rung
        return TrialScheduler.CONTINUE if is_point(trial.config, self.default) else decision


def _scheduler(cfg: AppConfig, data: PreparedData, launch_by: float | None = None):
    # Rungs are in training examples seen, so a poor trial can be cut before its first epoch
    # ends. "score" is the best evaluation so far: ASHA and TPE judge a trial by its best.
    from search.train import evaluation_steps

    batch = cfg.default_params().batch_size
    steps_per_epoch = math.ceil(len(data.train) / batch)
    per_trial = steps_per_epoch * cfg.train.epochs * batch
    first = evaluation_steps(cfg.train.eval_every, batch, steps_per_epoch) * batch
    # A rung falls on an evaluation (trials report examples = steps x batch size), not beside it.
    grace = max(1, round((cfg.tune.grace_period or first) / first)) * first
    return DefaultKeepingASHA(
        metric="score", mode="max", time_attr="examples", max_t=per_trial,
        grace_period=min(grace, per_trial), reduction_factor=cfg.tune.reduction_factor,
        default=default_point(cfg), launch_by=launch_by,
    )


def _progress_table(cfg: AppConfig):
    """A compact live table: the searched params, epoch, best score and why a trial stopped."""
    return tune.CLIReporter(
        metric_columns={"epoch": "epoch", "score": "best " + cfg.train.metric,
                        "stop_reason": "stop"},
        parameter_columns=list(cfg.space.searched()),
        max_report_frequency=15, metric="score", mode="max",
    )


def _run_config(cfg: AppConfig, name: str, recorder: ResultsRecorder, storage: str, *,
                sweep: str, phase: str):
    return tune.RunConfig(
        name=name,
        storage_path=storage,
        callbacks=[_RecorderCallback(recorder), *tracking_callbacks(cfg, sweep, phase)],
        failure_config=tune.FailureConfig(max_failures=cfg.tune.max_failures),
        # Trials report a checkpoint only when an evaluation improves: keeping one keeps the best.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        progress_reporter=_progress_table(cfg),
        verbose=1,  # status tables only, not every result
    )


def _new_tuner(cfg: AppConfig, name: str, trainable, recorder: ResultsRecorder,
               data: PreparedData, budget_s: float | None, warm: WarmStart | None):
    searched = cfg.space.searched()
    if not searched:
        raise SweepError("the search space has no searched dimension; give one a {low, high}")
    deadline = time.time() + budget_s if budget_s is not None else None  # no new trials after
    tune_config = tune.TuneConfig(
        search_alg=_searcher(cfg, deadline, warm), scheduler=_scheduler(cfg, data, deadline),
        num_samples=cfg.tune.num_samples, max_concurrent_trials=cfg.tune.max_concurrent_trials,
        # New trials stop at the budget (the searcher's deadline), and running ones end by
        # themselves at STRAGGLER_FACTOR times it; this hard stop is only the backstop.
        time_budget_s=budget_s * BACKSTOP_FACTOR if budget_s is not None else None,
        # A trial's worker process stays for the next trial: no new process, no second import
        # of torch and transformers per trial.
        reuse_actors=True,
    )
    return tune.Tuner(trainable, tune_config=tune_config,
                      run_config=_run_config(cfg, name, recorder, storage.root(
                          cfg.tune.storage_path), sweep=name, phase="search"))


def _restored_tuner(path: str, trainable):
    if not tune.Tuner.can_restore(path):
        raise SweepError(f"no sweep to resume at {path}")
    # restart_errored would crash OptunaSearch on Ray 2.60 (KeyError on new trial ids).
    return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True,
                              resume_errored=True)


#: Keys of a finalist's re-run that are not params: its seed, the search trial it re-runs, and
#: its index in the phase's grid.
FINALIST_KEYS = ("seed", "finalist_of", "finalist_run")
FINALISTS_DIRNAME = "finalists"
#: Trials still running this far into the search's budget (as a multiple of it) evaluate once
#: more and end. The trial ends itself: a Tune stop that lands between a trial's report and
#: the registration of its checkpoint drops that checkpoint (Ray 2.60 clears the pending save),
#: which once left a sweep choosing a trial that had a score and no weights.
STRAGGLER_FACTOR = 1.25
#: Tune's own hard stop of the search, as a multiple of its budget: only for a trial that cannot
#: end itself in time (an evaluation far slower than the search's share, a hung worker).
BACKSTOP_FACTOR = 1.6
FINAL_DIRNAME = "final"


def _final_cpus(cfg: AppConfig) -> float:
    """The search's CPU lanes, joined for the one final trial (no more than one node has)."""
    wanted = cfg.tune.cpus_per_trial * cfg.tune.max_concurrent_trials
    largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]), default=1)
    return max(cfg.tune.cpus_per_trial, min(wanted, largest))


def _run_search(cfg: AppConfig, data: PreparedData, name: str, recorder: ResultsRecorder,
                trial_fn: Callable[..., None], resume: bool, head: ProbeHead | None,
                warm: WarmStart | None) -> None:
    search_cfg, search_data = search_setup(cfg, data)
    budget = search_budget(cfg)
    # A resumed search has no stop time of its own: its restored Tune stop ends it.
    stop_at = time.time() + budget * STRAGGLER_FACTOR if budget and not resume else None
    trainable = _build_trainable(search_cfg, search_data, name, trial_fn, phase="search",
                                 head=head, stop_at=stop_at)
    recorder.phase = "search"
    if resume:
        tuner = _restored_tuner(experiment_path(cfg, name), trainable)
    else:
        tuner = _new_tuner(search_cfg, name, trainable, recorder, search_data, budget, warm)
    tuner.fit()


def _run_finalists(cfg: AppConfig, data: PreparedData, name: str, recorder: ResultsRecorder,
                   trial_fn: Callable[..., None], started: float, head: ProbeHead | None) -> None:
    """Re-run the top search configurations with more seeds, at the search's fidelity and on
    its lanes (:func:`search.budget.finalist_runs` says which, and how many the budget
    allows), so the final trial takes a configuration that wins on average, not by luck."""
    path, root = results_path(cfg, name), experiment_path(cfg, name)
    finalists_dir = f"{root.rstrip('/')}/{FINALISTS_DIRNAME}"
    search_cfg, search_data = search_setup(cfg, data)
    trainable = _build_trainable(search_cfg, search_data, name, trial_fn, phase="finalist",
                                 head=head)
    recorder.phase = "finalist"
    if tune.Tuner.can_restore(finalists_dir):
        _restored_tuner(finalists_dir, trainable).fit()
        return
    left = None if cfg.tune.time_budget_s is None else \
        cfg.tune.time_budget_s - (time.time() - started) - EXPORT_RESERVE_S
    runs = finalist_runs(cfg, path, left)
    if not runs:
        log.warning("finalists: none (tune.finalists=0, or no time left for two re-runs)")
        return
    log.warning("finalists: %d configurations x %d seeds", len({r["finalist_of"] for r in runs}),
                len(runs) // len({r["finalist_of"] for r in runs}))
    update_sweep_meta(path, phase="finalists")
    run_config = _run_config(search_cfg, FINALISTS_DIRNAME, recorder, storage=root, sweep=name,
                             phase="finalist")
    tuner = tune.Tuner(trainable, param_space=_grid(runs), run_config=run_config,
                       tune_config=tune.TuneConfig(
                           num_samples=1, max_concurrent_trials=cfg.tune.max_concurrent_trials,
                           reuse_actors=True))
    tuner.fit()


def _grid(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A param space whose grid is exactly ``runs`` (every key follows the run's index)."""
    space: dict[str, Any] = {"finalist_run": tune.grid_search(list(range(len(runs))))}
    for key in runs[0]:
        space[key] = tune.sample_from(lambda spec, key=key: runs[spec.config.finalist_run][key])
    return space


def _choose_search_run(cfg: AppConfig, path: str) -> None:
    """A full-fidelity sweep has no final trial: its model is a search run. When finalists
    ran, the configuration they chose (by mean, or the default kept by tune.min_improvement)
    is the model, as its search run; without finalists, the best search score decides."""
    if not (read_trials(path)["phase"] == "finalist").any():
        return
    choice = choose_final(cfg, path)
    log.warning("the sweep's model: search trial %s (%s)", choice["trial_id"], choice["reason"])
    update_sweep_meta(path, final_source=choice)


def _run_final(cfg: AppConfig, data: PreparedData, name: str, recorder: ResultsRecorder,
               trial_fn: Callable[..., None], started: float, head: ProbeHead | None) -> None:
    """Train the best search configuration on all the training data: one more Tune trial,
    on the CPUs of the search's lanes, fitted to what the budget has left."""
    path = results_path(cfg, name)
    meta = read_sweep_meta(path)
    final_dir = f"{experiment_path(cfg, name).rstrip('/')}/{FINAL_DIRNAME}"
    cpus = _final_cpus(cfg)
    if meta.get("phase") == "final":  # a resumed final trial keeps its params and its budget
        params, final_cfg = meta["final_params"], build_config(meta["final_config"])
    else:
        choice, final_cfg = choose_final(cfg, path), final_config(cfg, started, cpus)
        params = choice["params"]
        log.warning("final trial: %s (%s)", choice["trial_id"], choice["reason"])
        update_sweep_meta(path, phase="final", final_params=params, final_source=choice,
                          final_config=final_cfg.model_dump(mode="json"))
    trainable = _build_trainable(final_cfg, data, name, trial_fn, phase="final", head=head,
                                 resources={"cpu": cpus, "gpu": cfg.tune.gpus_per_trial})
    recorder.phase = "final"
    if tune.Tuner.can_restore(final_dir):
        tuner = _restored_tuner(final_dir, trainable)
    else:
        run_config = _run_config(final_cfg, FINAL_DIRNAME, recorder,
                                 storage=experiment_path(cfg, name), sweep=name, phase="final")
        tuner = tune.Tuner(trainable, param_space=params, run_config=run_config,
                           tune_config=tune.TuneConfig(num_samples=1))
    tuner.fit()


def run_sweep(
    cfg: AppConfig,
    *,
    name: str,
    address: str | None = None,
    resume: bool = False,
    trial_fn: Callable[..., None] = run_trial,
) -> str:
    """Run (or resume) the sweep ``name``; returns its experiment location (a local directory
    or a bucket URI).

    The search runs first (on a subset when ``tune.search_examples`` is set, then the best
    configuration is trained on all the data as the final trial). ``trial_fn`` is the trainable
    body (default :func:`run_trial`); wrapping it is how tests inject faults into real trials.
    """
    started = time.time()
    check_tracking(cfg.tracking)  # a missing tracker package fails before any work
    model_dir = resolve_model_dir(cfg.model.name)
    validate_space(cfg, model_dir)
    path = results_path(cfg, name)
    data = prepare_data(cfg.data, load_tokenizer(model_dir))  # once per sweep, for every trial
    log.warning("data: %s, max_length %d (%s truncation; %.1f%% of training texts cut)",
                data.sizes, data.max_length, data.truncation, 100 * data.truncated_share)
    # Planned before any costly step, so a missing old sweep fails at once. A resumed sweep has
    # its history in its table and its restored searcher already.
    warm = plan_warm_start(cfg, data.fingerprint) if cfg.tune.warm_start and not resume else None
    head = _probe_head(cfg, data, model_dir)
    _init_ray(cfg, address)
    recorder = ResultsRecorder(experiment_dir=path, keep_checkpoints=cfg.tune.keep_checkpoints,
                               fixed=fixed_params(cfg), default=default_point(cfg))
    if resume:
        if not tune.Tuner.can_restore(experiment_path(cfg, name)):
            raise SweepError(f"no sweep to resume at {experiment_path(cfg, name)}")
        started = time.time() - _elapsed_before(path)
    else:
        _start_meta(cfg, path, name, data, warm)
        if warm is not None and not warm.rows.empty:
            recorder.import_rows(warm.rows)
    update_sweep_meta(path, status="running", resumed=resume or None,
                      head=head.describe() if head else {"head_init": "random"})
    try:
        phase = read_sweep_meta(path).get("phase", "search") if resume else "search"
        if phase == "search":
            _run_search(cfg, data, name, recorder, trial_fn, resume, head, warm)
        if phase in ("search", "finalists"):
            _run_finalists(cfg, data, name, recorder, trial_fn, started, head)
        if cfg.tune.search_examples is not None:
            _run_final(cfg, data, name, recorder, trial_fn, started, head)
        elif phase in ("search", "finalists"):
            _choose_search_run(cfg, path)
    except KeyboardInterrupt:
        update_sweep_meta(path, status="interrupted", ended_at=time.time())
        raise
    _finish_meta(cfg, path)
    return path


def _checkpoint_location(checkpoint: tune.Checkpoint) -> str:
    """A checkpoint's local path, or its URI when Tune keeps it in a bucket (Tune's own path is
    then the key inside the bucket, without the scheme)."""
    import pyarrow.fs as pafs

    if isinstance(checkpoint.filesystem, pafs.LocalFileSystem):
        return checkpoint.path
    scheme = {"gcs": "gs"}.get(checkpoint.filesystem.type_name, checkpoint.filesystem.type_name)
    return f"{scheme}://{checkpoint.path}"


def _probe_head(cfg: AppConfig, data: PreparedData, model_dir: Path) -> ProbeHead | None:
    """The head probe every trial starts from (``train.head_init=probe``), fit once here on
    the full training data's sample rather than once per trial."""
    if cfg.train.head_init != "probe":
        return None
    head = probe_for_config(cfg, data, model_dir)
    log.warning("head warm start: linear probe on %d training texts, train accuracy %.3f",
                head.examples, head.train_accuracy)
    return head


def _elapsed_before(path: str) -> float:
    """Seconds the sweep ran before it was interrupted or killed (its budget counts them): up
    to the last write of its results."""
    from search.results import SWEEP_FILE, TRIALS_FILE, results_location

    meta = read_sweep_meta(path)
    stamps = [storage.modified_ns(results_location(path, f)) for f in (TRIALS_FILE, SWEEP_FILE)]
    last = max((s / 1e9 for s in stamps if s is not None), default=time.time())
    return max(0.0, float(meta.get("ended_at") or last) - float(meta["started_at"]))


def _start_meta(cfg: AppConfig, path: str, name: str, data: PreparedData,
                warm: WarmStart | None) -> None:
    if not storage.is_empty_dir(path):
        raise SweepError(f"sweep {name!r} already exists at {path}; use --resume or another --name")
    write_row_keys(path, data.row_keys)  # which examples it trains, selects and tests on
    write_sweep_meta(path, {
        "name": name, "status": "starting", "started_at": time.time(), "phase": "search",
        "metric": cfg.train.metric, "mode": "max", "num_samples": cfg.tune.num_samples,
        "config": cfg.model_dump(mode="json"), "label_names": data.label_names,
        "data_fingerprint": data.fingerprint, "data_sizes": data.sizes,
        "max_length": data.max_length, "truncation": data.truncation,
        "truncated_share": data.truncated_share,
        "warm_start": warm.describe() if warm else None,
    })


def _finish_meta(cfg: AppConfig, path: str) -> None:
    from search.results import best_trial, chosen_trial

    best = best_trial(read_trials(path), chosen_trial(read_sweep_meta(path)))
    summary = None
    if best is not None:
        summary = {k: (None if _isnan(v) else v) for k, v in best.to_dict().items()}
    update_sweep_meta(path, status="finished", ended_at=time.time(), best=summary)
    if cfg.tune.optuna_db:
        from search.recorder import write_optuna_study

        write_optuna_study(path, cfg)


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and value != value
