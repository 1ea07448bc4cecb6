r"""Sweep vs HF: sftune's sweep against HF `Trainer.hyperparameter_search`, same budget, one run.

Same data (the splits of configs/default.yaml, built by `search.data.prepare_data` for both
sides, so the token ids match and the fingerprint is recorded), same model (the packaged MiniLM),
batch 32, max_length 64, the same trial budget and epochs, the same cores (sftune: 2 concurrent
trials x 1 CPU; HF ray: the same; HF optuna runs trials one after another with 2 torch threads).
Both sides get Optuna TPE (same seed and start-up trials) and successive halving (ASHA on Ray,
Optuna's SuccessiveHalvingPruner on the optuna backend) with the same grace and reduction factor.

HF searches only what it can: learning_rate and weight_decay (TrainingArguments) and dropout
(through `model_init(trial)`). It has no alpha (no LM loss) and no frozen depth. HF returns
hyperparameters, not a model, so its test accuracy comes from one final model trained with the
best hyperparameters (best epoch kept, as sftune keeps it); that training counts in HF's wall
time (`wall_s`); `search_s` is the search alone. sftune's wall time includes `export_best`.
Each system runs in its own spawned process: its driver's peak RSS is its own, and a sampler
thread records the summed RSS of the whole process tree (driver, Ray, trials).

    # full run (about 16 min on 2 quiet cores): 8 trials, 1000 train examples, 2 epochs
    .venv/bin/python bench/sweep_vs_hf.py
    # smoke run (~3-5 min): proves it end to end, figures mean nothing
    .venv/bin/python bench/sweep_vs_hf.py --samples 3 --train-examples 96 --eval-examples 64 \
        --epochs 2
    # HF's ray backend only (optuna still runs if ray fails: it is the fallback baseline)
    .venv/bin/python bench/sweep_vs_hf.py --backends ray

Writes bench/results/sweep_vs_hf.json and bench/results/sweep_vs_hf.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, peak_rss_mib, print_table, write_json  # noqa: E402

CONFIG = ROOT / "configs" / "default.yaml"
NAME = "sweep_vs_hf"
# HF's names for the dimensions it can search, and sftune's names for the same dimensions.
HF_DIMENSIONS = {"learning_rate": "lr", "weight_decay": "weight_decay", "dropout": "dropout"}
HF_NOTE = ("HF searches learning_rate, weight_decay and dropout (via model_init(trial)); it has "
           "no alpha (no LM loss) and no frozen depth, so sftune searches 2 more dimensions.")
FINAL_NOTE = ("HF returns hyperparameters, not a model: its test accuracy is that of one final "
              "model trained with the best hyperparameters (best epoch kept); wall_s includes "
              "that training, search_s does not.")


# ---------------------------------------------------------------- config and process plumbing

def _overrides(args: argparse.Namespace, storage: str) -> list[str]:
    """--set style overrides of configs/default.yaml shared by every system."""
    pairs = [f"tune.storage_path={storage}", "train.device=cpu",
             f"tune.num_cpus={args.cores}", f"tune.max_concurrent_trials={args.cores}",
             "tune.cpus_per_trial=1", "tune.optuna_db=false"]
    flags = {"tune.num_samples": args.samples, "data.max_train_examples": args.train_examples,
             "data.max_eval_examples": args.eval_examples, "train.epochs": args.epochs}
    pairs += [f"{key}={value}" for key, value in flags.items() if value is not None]
    return pairs + list(args.set)


def _config(overrides: list[str]):
    from search.config import load_config

    return load_config(CONFIG, overrides)


class TreeSampler:
    """Peak summed RSS and total CPU seconds of this process and all its descendants.

    Driver, Ray and trials together; shared pages count once per process, so the RSS is an upper
    bound. CPU seconds stay meaningful on a busy machine, where wall time drifts.
    """

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s, self.peak_mib = interval_s, 0.0
        self._cpu: dict[int, float] = {}
        self._start: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def cpu_s(self) -> float:
        return sum(v - self._start.get(pid, 0.0) for pid, v in self._cpu.items())

    def __enter__(self) -> TreeSampler:
        self._sample()
        self._start = dict(self._cpu)  # count only what is spent from here on
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        import psutil

        me, total = psutil.Process(), 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                with proc.oneshot():
                    total += proc.memory_info().rss
                    times = proc.cpu_times()
                self._cpu[proc.pid] = times.user + times.system
            except psutil.Error:  # a worker that exited between listing and reading
                pass
        self.peak_mib = max(self.peak_mib, total / 2**20)


def _stop_ray() -> list[int]:
    """Shut Ray down and end any process this child started that outlived it (by pid)."""
    import psutil
    import ray

    if ray.is_initialized():
        ray.shutdown()
    left = psutil.Process().children(recursive=True)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=10)
    return [proc.pid for proc in left]


# ---------------------------------------------------------------------------------- sftune

def run_sftune(overrides: list[str], storage: str) -> dict[str, Any]:
    from search.best import export_best
    from search.results import read_trials, summarize_trials
    from search.sweep import run_sweep

    cfg = _config(overrides)
    start = time.perf_counter()
    experiment = run_sweep(cfg, name="sftune")
    search_s = time.perf_counter() - start
    best = export_best(experiment, target=Path(storage) / "sftune_export")
    wall_s = time.perf_counter() - start
    trials = read_trials(experiment)
    summary = summarize_trials(trials)
    top = summary[summary["trial_id"] == best["trial_id"]].iloc[0]
    return {
        "wall_s": wall_s, "search_s": search_s, "final_s": wall_s - search_s,
        "best_val_accuracy": best["score"], "test_accuracy": best["test_accuracy"],
        "best_params": {k: float(top[k]) for k in ("lr", "weight_decay", "dropout", "alpha",
                                                    "frozen_depth")},
        "trials": int(len(summary)), "epochs_run": int(summary["epochs"].sum()),
        "stop_reasons": summary["stop_reason"].value_counts().to_dict(),
        "trial_peak_rss_mib": float(trials["peak_rss_mib"].max()),
        **_data_meta(experiment), "searched": sorted(cfg.space.searched()),
    }


def _data_meta(experiment: Path) -> dict[str, Any]:
    from search.results import read_sweep_meta

    meta = read_sweep_meta(experiment)
    return {"data_fingerprint": meta["data_fingerprint"], "data_sizes": meta["data_sizes"]}


# ---------------------------------------------------------------------- HF: data, model, space

def _dims(cfg) -> dict[str, tuple]:
    """HF's dimensions as plain tuples (picklable into Ray workers without pydantic models)."""
    from search.config import Choice, Range

    out: dict[str, tuple] = {}
    for hf_name, name in HF_DIMENSIONS.items():
        dim = getattr(cfg.space, name)
        if isinstance(dim, Range):
            out[hf_name] = ("range", dim.low, dim.high, dim.log, dim.midpoint())
        elif isinstance(dim, Choice):
            out[hf_name] = ("choice", list(dim.choices), dim.midpoint())
        else:
            out[hf_name] = ("const", float(dim))
    return out


def _default(dim: tuple) -> float:
    return dim[-1]


def _suggest(trial, name: str, dim: tuple) -> float:
    if dim[0] == "range":
        return trial.suggest_float(name, dim[1], dim[2], log=dim[3])
    if dim[0] == "choice":
        return trial.suggest_categorical(name, dim[1])
    return dim[1]


class RaySpace:
    """hp_space for backend="ray": Tune domains, dropout included (it reaches model_init)."""

    def __init__(self, dims: dict[str, tuple]) -> None:
        self.dims = dims

    def __call__(self, trial: Any) -> dict[str, Any]:
        from ray import tune

        space = {}
        for name, dim in self.dims.items():
            if dim[0] == "range":
                space[name] = (tune.loguniform if dim[3] else tune.uniform)(dim[1], dim[2])
            else:
                space[name] = tune.choice(dim[1]) if dim[0] == "choice" else dim[1]
        return space


class OptunaSpace:
    """hp_space for backend="optuna": the TrainingArguments fields (dropout is model_init's)."""

    def __init__(self, dims: dict[str, tuple]) -> None:
        self.dims = dims

    def __call__(self, trial: Any) -> dict[str, Any]:
        return {n: _suggest(trial, n, d) for n, d in self.dims.items() if n != "dropout"}


class ModelInit:
    """HF's only way to search a model setting: Trainer calls model_init(trial) per trial.

    Trainer calls it *before* hp_space on the optuna backend, so it suggests dropout itself; on
    Ray the trial is the sampled config dict; at Trainer construction it is None.
    """

    def __init__(self, model_dir: str, label_names: list[str], dropout: tuple) -> None:
        self.model_dir, self.label_names, self.dropout = model_dir, label_names, dropout

    def __call__(self, trial: Any = None):
        from transformers import AutoConfig, AutoModelForSequenceClassification

        if trial is None:
            dropout = _default(self.dropout)
        elif isinstance(trial, dict):
            dropout = float(trial["dropout"])
        else:
            dropout = _suggest(trial, "dropout", self.dropout)
        names = self.label_names
        # The same config overrides as search.model.build_model, so only the trainer differs.
        config = AutoConfig.from_pretrained(
            self.model_dir, local_files_only=True, num_labels=len(names),
            id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
            hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
            classifier_dropout=dropout)
        return AutoModelForSequenceClassification.from_pretrained(
            self.model_dir, config=config, local_files_only=True, use_safetensors=True)


def accuracy_metrics(pred) -> dict[str, float]:
    """Accuracy, plus this process's peak RSS and threads: the only way out of a Ray trial."""
    import torch

    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    accuracy = float((logits.argmax(-1) == pred.label_ids).mean())
    return {"accuracy": accuracy, "rss_mib": peak_rss_mib(),
            "torch_threads": float(torch.get_num_threads())}


def accuracy_objective(metrics: dict[str, float]) -> float:
    # HF's default objective is the sum of all metrics; sftune selects on val accuracy.
    return metrics["eval_accuracy"]


def _rows(split) -> list[dict[str, Any]]:
    return [{"input_ids": split.example(i).tolist(), "labels": int(split.labels[i])}
            for i in range(len(split))]


def _hf_setup(cfg) -> dict[str, Any]:
    """The exact splits and token ids sftune trains on, as HF rows, and the model factory."""
    from search.data import prepare_data
    from search.model import load_tokenizer, resolve_model_dir

    model_dir = resolve_model_dir(cfg.model.name)
    tokenizer = load_tokenizer(model_dir)
    data = prepare_data(cfg.data, tokenizer)
    return {
        "tokenizer": tokenizer, "fingerprint": data.fingerprint,
        "steps_per_epoch": -(-len(data.train) // cfg.train.batch_size),
        "rows": {name: _rows(getattr(data, name)) for name in ("train", "validation", "test")},
        "model_init": ModelInit(str(model_dir), data.label_names, _dims(cfg)["dropout"]),
    }


def _training_args(cfg, out: Path, **extra: Any):
    from transformers import TrainingArguments

    dims = _dims(cfg)
    settings = dict(
        output_dir=str(out), per_device_train_batch_size=cfg.train.batch_size,
        per_device_eval_batch_size=cfg.train.eval_batch_size, num_train_epochs=cfg.train.epochs,
        learning_rate=_default(dims["learning_rate"]),
        weight_decay=_default(dims["weight_decay"]),
        warmup_steps=cfg.train.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        max_grad_norm=cfg.train.max_grad_norm, lr_scheduler_type="linear", seed=cfg.train.seed,
        # Evaluation every epoch is what feeds ASHA / the pruner, as sftune's trials report.
        do_eval=True, eval_strategy="epoch", save_strategy="no", logging_strategy="no",
        report_to="none", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
    )
    return TrainingArguments(**{**settings, **extra})


def _hf_trainer(cfg, setup: dict[str, Any], out: Path, model=None, **extra: Any):
    from transformers import DataCollatorWithPadding, Trainer

    rows = setup["rows"]
    return Trainer(
        model=model, model_init=None if model is not None else setup["model_init"],
        args=_training_args(cfg, out, **extra), train_dataset=rows["train"],
        eval_dataset=rows["validation"], compute_metrics=accuracy_metrics,
        data_collator=DataCollatorWithPadding(setup["tokenizer"]),
    )


# ------------------------------------------------------------------------ HF: the two backends

def _tpe(cfg):
    import optuna

    # The same sampler as search.sweep._searcher: TPE, same seed, same start-up share.
    startup = max(2, min(10, cfg.tune.num_samples // 3))
    return optuna.samplers.TPESampler(seed=cfg.tune.seed, multivariate=True,
                                      n_startup_trials=startup)


def _search_ray(cfg, trainer, storage: str) -> dict[str, Any]:
    import ray
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    # The same local Ray as sftune's embedded default (search.sweep._init_ray).
    ray.init(num_cpus=cfg.tune.num_cpus, logging_level="WARNING", log_to_driver=False,
             include_dashboard=False)
    epochs = cfg.train.epochs
    best = trainer.hyperparameter_search(
        hp_space=RaySpace(_dims(cfg)), compute_objective=accuracy_objective,
        n_trials=cfg.tune.num_samples, direction="maximize", backend="ray",
        search_alg=OptunaSearch(metric="objective", mode="max", sampler=_tpe(cfg)),
        scheduler=ASHAScheduler(metric="objective", mode="max", max_t=epochs,
                                grace_period=1,
                                reduction_factor=cfg.tune.reduction_factor),
        resources_per_trial={"cpu": cfg.tune.cpus_per_trial},
        max_concurrent_trials=cfg.tune.max_concurrent_trials,
        storage_path=storage, name="hf_ray", verbose=1,
    )
    frames = [f for f in best.run_summary.trial_dataframes.values() if "objective" in f]
    epochs_run = sum(len(f) for f in frames)
    return {"hyperparameters": best.hyperparameters, "hf_objective": best.objective,
            "best_val_accuracy": max(float(f["objective"].max()) for f in frames),
            "trials": len(best.run_summary.trials), "epochs_run": epochs_run,
            "trial_peak_rss_mib": max(float(f["eval_rss_mib"].max()) for f in frames),
            "trial_torch_threads": max(float(f["eval_torch_threads"].max()) for f in frames)}


class LastEpochSafe:
    """Optuna pruner wrapper: never prune at the last epoch, as ASHA's max_t never does.

    HF reports the global step, and Optuna's successive halving has no upper rung, so without
    this a trial that ran every epoch could still end up PRUNED (and out of best_trial).
    """

    def __init__(self, pruner, last_step: int) -> None:
        self.pruner, self.last_step = pruner, last_step

    def prune(self, study, trial) -> bool:
        step = trial.last_step
        return step is not None and step < self.last_step and self.pruner.prune(study, trial)


def _search_optuna(cfg, trainer, setup: dict[str, Any]) -> dict[str, Any]:
    import optuna
    import torch

    # Trials run one at a time in this process, so each gets all the cores sftune's 2 share.
    torch.set_num_threads(cfg.tune.num_cpus)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()  # kept so every epoch's value can be read back
    steps = setup["steps_per_epoch"]
    pruner = LastEpochSafe(optuna.pruners.SuccessiveHalvingPruner(
        min_resource=steps,  # one epoch, as sftune's ASHA gives trials evaluated per epoch
        reduction_factor=int(cfg.tune.reduction_factor)), last_step=cfg.train.epochs * steps)
    best = trainer.hyperparameter_search(
        hp_space=OptunaSpace(_dims(cfg)), compute_objective=accuracy_objective,
        n_trials=cfg.tune.num_samples, direction="maximize", backend="optuna",
        sampler=_tpe(cfg), pruner=pruner, storage=storage, study_name="hf_optuna",
    )
    trials = optuna.load_study(study_name="hf_optuna", storage=storage).trials
    values = [v for t in trials for v in t.intermediate_values.values()]
    states = [t.state.name for t in trials]
    return {"hyperparameters": best.hyperparameters, "hf_objective": best.objective,
            "best_val_accuracy": max(values), "trials": len(trials),
            "epochs_run": len(values), "stop_reasons": {s: states.count(s) for s in set(states)},
            "trial_peak_rss_mib": peak_rss_mib(), "trial_torch_threads": torch.get_num_threads()}


def _final_model(cfg, setup: dict[str, Any], params: dict[str, Any], out: Path) -> dict:
    """Train one model with HF's best hyperparameters; keep its best epoch; test it once."""
    import torch

    torch.set_num_threads(cfg.tune.num_cpus)
    model = setup["model_init"]({"dropout": params["dropout"]})
    trainer = _hf_trainer(
        cfg, setup, out, model=model, learning_rate=float(params["learning_rate"]),
        weight_decay=float(params["weight_decay"]), save_strategy="epoch", save_only_model=True,
        load_best_model_at_end=True, metric_for_best_model="accuracy", greater_is_better=True)
    trainer.train()
    val = trainer.evaluate()["eval_accuracy"]
    test = trainer.evaluate(setup["rows"]["test"], metric_key_prefix="test")
    return {"final_val_accuracy": val, "test_accuracy": test["test_accuracy"],
            "test_examples": len(setup["rows"]["test"])}


def run_hf(backend: str, overrides: list[str], storage: str) -> dict[str, Any]:
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    cfg = _config(overrides)
    out = Path(storage) / f"hf_{backend}_out"
    start = time.perf_counter()
    setup = _hf_setup(cfg)
    trainer = _hf_trainer(cfg, setup, out)
    if backend == "ray":
        result = _search_ray(cfg, trainer, storage)
        _stop_ray()  # the search is over; the final model trains in this process
    else:
        result = _search_optuna(cfg, trainer, setup)
    search_s = time.perf_counter() - start
    result.update(_final_model(cfg, setup, result["hyperparameters"], out / "final"))
    wall_s = time.perf_counter() - start
    return {**result, "wall_s": wall_s, "search_s": search_s, "final_s": wall_s - search_s,
            "data_fingerprint": setup["fingerprint"], "driver_torch_threads":
            torch.get_num_threads(), "searched": sorted(HF_DIMENSIONS)}


# ------------------------------------------------------------------------------ measurement

def _ray_trial_errors(storage: str) -> list[str]:
    """The last lines of each failed Ray trial's error.txt: the exception Tune swallowed."""
    errors = []
    for path in sorted(Path(storage).glob("hf_ray/*/error.txt")):
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        errors.append("\n".join(lines[-6:]))
    return errors


def _child(system: str, overrides: list[str], storage: str, queue) -> None:
    result: dict[str, Any]
    load_before = os.getloadavg()[0]
    with TreeSampler() as tree:
        try:
            if system == "sftune":
                result = run_sftune(overrides, storage)
            else:
                result = run_hf(system.removeprefix("hf_"), overrides, storage)
        except Exception as err:  # recorded, not hidden: a failing baseline is a finding
            result = {"error": f"{type(err).__name__}: {err}",
                      "traceback": traceback.format_exc()[-4000:],
                      "trial_errors": _ray_trial_errors(storage)}
        finally:
            result_left = _stop_ray()
    result.update(driver_peak_rss_mib=peak_rss_mib(), tree_peak_rss_mib=tree.peak_mib,
                  tree_cpu_s=tree.cpu_s, load_1m=[load_before, os.getloadavg()[0]],
                  leftover_pids_killed=result_left)
    queue.put(result)


def measure(system: str, overrides: list[str], storage: str) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(system, overrides, storage, queue))
    proc.start()
    result = queue.get()
    proc.join()
    summary = {k: result.get(k) for k in ("wall_s", "best_val_accuracy", "test_accuracy",
                                           "tree_cpu_s", "error")}
    print(f"\n=== {system}: {summary}\n", flush=True)
    return result


def _run_all(args: argparse.Namespace, storage: str) -> tuple[dict[str, Any], list[str]]:
    """Every system in turn; returns the results and the HF systems to compare against."""
    overrides = _overrides(args, storage)
    results = {"sftune": measure("sftune", overrides, storage)}
    for backend in args.backends:
        results[f"hf_{backend}"] = measure(f"hf_{backend}", overrides, storage)
    baselines = [f"hf_{b}" for b in args.backends]
    if "error" in results.get("hf_ray", {}) and "hf_optuna" not in results:
        # backend="ray" failed on this stack: the optuna backend becomes the baseline.
        results["hf_optuna"] = measure("hf_optuna", overrides, storage)
        baselines.append("hf_optuna")
    return results, baselines


# --------------------------------------------------------------------------------- reporting

SYSTEM_COLUMNS = ["system", "wall_s", "search_s", "final_s", "tree_cpu_s", "best_val_accuracy",
                  "test_accuracy", "driver_peak_rss_mib", "trial_peak_rss_mib",
                  "tree_peak_rss_mib", "trials", "epochs_run"]


def _ratios(results: dict[str, Any], baselines: list[str]) -> list[dict[str, Any]]:
    """Ratios first: sftune / HF wall time, and sftune - HF accuracy, per working baseline."""
    ours, rows = results["sftune"], []
    for name in baselines:
        hf = results[name]
        if "error" in hf or "error" in ours:
            rows.append({"baseline": name, "error": hf.get("error") or ours.get("error")})
            continue
        wall = ours["wall_s"] / hf["wall_s"]
        val = ours["best_val_accuracy"] - hf["best_val_accuracy"]
        rows.append({
            "baseline": name, "wall_ratio": wall, "search_ratio": ours["search_s"] / hf["search_s"],
            "cpu_ratio": ours["tree_cpu_s"] / hf["tree_cpu_s"],
            "val_acc_diff": val, "test_acc_diff": ours["test_accuracy"] - hf["test_accuracy"],
            # The target: at least the same best (validation) accuracy in at most half the time.
            "target_met": bool(val >= 0 and wall <= 0.5),
        })
    return rows


def _system_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, result in results.items():
        row = {"system": name, **{c: result.get(c) for c in SYSTEM_COLUMNS[1:]}}
        if "error" in result:
            row["test_accuracy"] = "error"
        rows.append(row)
    return rows


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every key of the rows, first seen first (an error row has fewer keys)."""
    return list(dict.fromkeys(k for row in rows for k in row)) or ["baseline"]


def _is_full(args: argparse.Namespace) -> bool:
    flags = (args.samples, args.train_examples, args.eval_examples, args.epochs)
    return all(v is None for v in flags) and not args.set and args.cores == 2


def _md_table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
        return "-" if value is None else str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]


def _ray_status(results: dict[str, Any]) -> str:
    ray = results.get("hf_ray")
    if ray is None:
        return "not run (--backends without ray)."
    if "error" not in ray:
        return ("works: `hyperparameter_search(backend=\"ray\")` ran every trial through "
                "`ray.tune.run` (Tune's function API and `ray.tune.report`, not Ray Train, so "
                "the Train V2 report-callback failure does not apply).")
    trial_errors = "\n\n".join(f"```\n{e}\n```" for e in ray.get("trial_errors", []))
    return (f"**fails**: `{ray['error']}`; the optuna backend is the baseline instead.\n\n"
            f"```\n{ray['traceback'][-1500:]}\n```\n\n{trial_errors}")


def _headline(ratios: list[dict[str, Any]]) -> str:
    """The target, answered per baseline in one line."""
    parts = [f"{r['baseline']}: " + ("error" if "error" in r else
             f"{'met' if r['target_met'] else 'NOT met'} (wall x{r['wall_ratio']:.2f}, "
             f"val {r['val_acc_diff']:+.3f})") for r in ratios]
    return ("Target (sftune reaches at least HF's best validation accuracy in at most half its "
            "wall time): " + "; ".join(parts) + ".")


def _markdown(args, results, ratios, machine_info, argv: str) -> str:
    kind = ("Full run" if _is_full(args) else
            "**Smoke run: proves the script end to end; these are NOT the real figures**")
    prints = {r.get("data_fingerprint") for r in results.values() if "error" not in r}
    loads = ", ".join(f"{n} {r['load_1m'][0]:.1f} -> {r['load_1m'][1]:.1f}"
                      for n, r in results.items())
    versions = machine_info.get("versions", {})
    lines = [
        "# sftune sweep vs HF `Trainer.hyperparameter_search`", "", kind, "",
        f"`{argv}` on {machine_info['cpu_cores']} cores ({machine_info['processor']}), "
        f"{machine_info['date']}; ray {versions.get('ray')}, transformers "
        f"{versions.get('transformers')}, torch {versions.get('torch')}. Load average (1 min) "
        f"at start -> end of each system: {loads}.", "",
        f"Data: {results['sftune'].get('data_sizes')} examples; data fingerprint "
        f"{', '.join(sorted(map(str, prints)))} ({'the same' if len(prints) == 1 else 'DIFFERENT'}"
        " examples on every side).", "", _headline(ratios), "",
        "## Ratios (sftune / HF time, sftune - HF accuracy)", "",
        *_md_table(ratios, _columns(ratios)), "",
        "## Per system (seconds, accuracy, MiB)", "",
        *_md_table(_system_rows(results), SYSTEM_COLUMNS), "",
        f"## HF backend=\"ray\" on this stack\n\n{_ray_status(results)}", "",
        "## How it compares", "", *(f"- {n}" for n in (HF_NOTE, FINAL_NOTE, *NOTES)), "",
        "## Commands", "", "```", *COMMANDS, "```", "",
    ]
    return "\n".join(lines)


NOTES = [
    "Cores: sftune and HF ray run 2 concurrent trials x 1 CPU on a 2-CPU local Ray; HF "
    "optuna runs trials one at a time with 2 torch threads.",
    "Search: Optuna TPE (same seed, same start-up trials) on every side; early stopping is "
    "ASHA on Ray (same grace period and reduction factor) and Optuna's SuccessiveHalvingPruner "
    "on the optuna backend (rung 0 after the grace period's steps).",
    "best_val_accuracy: the best epoch of any trial. HF ray picks its best trial the same way "
    "(RAY_SCOPE=all); HF optuna picks on each trial's last epoch (its only rule).",
    "sftune's epoch 1 is joint (LM + alpha x task loss), the rest task-only; HF trains on the "
    "task loss only.",
    "wall_s: from the start of the work to a tested best model (sftune: run_sweep + "
    "export_best; HF: search + final model + test); Ray start-up counts on both sides.",
    "tree_cpu_s: CPU seconds of the system's whole process tree (its child process from "
    "start to end, imports and Ray included); cpu_ratio = sftune / HF. It drifts less than "
    "wall time on a busy machine.",
    "RSS: driver = the process that ran the search; trial = peak of a trial process (HF "
    "optuna: the driver itself); tree = summed RSS of driver, Ray and trials, sampled every "
    "0.5 s (an upper bound: shared pages count per process).",
]
COMMANDS = [
    "# full run (about 16 min on 2 quiet cores)",
    ".venv/bin/python bench/sweep_vs_hf.py",
    "# smoke run (~3-5 min; figures mean nothing): 2 epochs, so ASHA and the pruner act",
    ".venv/bin/python bench/sweep_vs_hf.py --samples 3 --train-examples 96 --eval-examples 64 "
    "--epochs 2",
]


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, help="trials per system (default: the config's)")
    parser.add_argument("--train-examples", type=int, help="data.max_train_examples")
    parser.add_argument("--eval-examples", type=int, help="data.max_eval_examples")
    parser.add_argument("--epochs", type=int, help="train.epochs")
    parser.add_argument("--backends", nargs="+", choices=["ray", "optuna"],
                        default=["ray", "optuna"], help="HF hyperparameter_search backends")
    parser.add_argument("--cores", type=int, default=2, help="CPUs every system may use")
    parser.add_argument("--keep-storage", action="store_true",
                        help="keep the temporary storage_path (Ray and HF outputs) to inspect")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override, as in `sftune sweep --set`")
    return parser.parse_args()


def _environment() -> None:
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"  # no Hub, ever
    # Ray workers unpickle ModelInit, RaySpace, ... as bench.sweep_vs_hf.*: they need the root.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    os.environ.pop("RAY_ADDRESS", None)  # a local Ray per system, never a shared cluster
    # HF ray picks the trial with the best epoch, as sftune does (HF's default: the last epoch).
    os.environ["RAY_SCOPE"] = "all"


def main() -> None:
    from bench.common import machine

    args = _parse()
    _environment()
    storage = tempfile.mkdtemp(prefix="sweep_vs_hf-")
    try:
        results, baselines = _run_all(args, storage)
    finally:
        if args.keep_storage:
            print(f"kept {storage}")
        else:
            shutil.rmtree(storage, ignore_errors=True)
    ratios = _ratios(results, baselines)
    print(f"\n{HF_NOTE}\n{FINAL_NOTE}\n{_headline(ratios)}")
    print("\nratios (sftune / HF wall time; sftune - HF accuracy)")
    print_table(ratios, _columns(ratios))
    print("\nper system")
    print_table(_system_rows(results), SYSTEM_COLUMNS)
    argv = " ".join([".venv/bin/python bench/sweep_vs_hf.py", *sys.argv[1:]])
    write_json(NAME, {"args": vars(args), "command": argv, "full_run": _is_full(args),
                      "baselines": baselines, "ratios": ratios, "results": results,
                      "notes": [HF_NOTE, FINAL_NOTE, *NOTES]})
    (RESULTS / f"{NAME}.md").write_text(_markdown(args, results, ratios, machine(), argv))
    print(f"wrote {RESULTS / f'{NAME}.md'}")


if __name__ == "__main__":
    # Run the importable module's main, not this __main__ copy: spawned children and Ray
    # workers then find every function and class as bench.sweep_vs_hf.* (pickled by name).
    from bench.sweep_vs_hf import main as _main

    _main()
