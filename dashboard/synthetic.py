"""Synthetic sweep results in the real format, for the dashboard's tests, benchmark and demos.

The table has the shape a real sweep writes (:data:`search.results.TRIAL_COLUMNS`, one row per
trial and epoch) and a realistic mix of outcomes, so the loaders and the app see every state:
completed, stopped by patience, stopped by ASHA, diverged, and errored (some before any epoch).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from search.config import AppConfig
from search.results import StopReason, sweep_name, write_sweep_meta, write_trials

__all__ = ["make_synthetic_sweep", "synthetic_trials"]

# Outcome mix of a typical ASHA sweep; the order matches _OUTCOME_P.
_OUTCOMES = (StopReason.COMPLETED, StopReason.EARLY_STOPPED, StopReason.ASHA_STOPPED,
             StopReason.DIVERGED, StopReason.ERROR)
_OUTCOME_P = (0.55, 0.15, 0.20, 0.05, 0.05)


#: The space the synthetic trials are drawn from; their sweep.json records it, as a real one's
#: records the space it searched, so importance and log axes read it back.
SYNTHETIC_SPACE = {
    "alpha": {"low": 1.0, "high": 300.0, "log": True},
    "lr": {"low": 2e-5, "high": 3e-4, "log": True},
    "frozen_depth": {"low": 0, "high": 6},
    "weight_decay": {"low": 0.0, "high": 0.1},
    "dropout": {"low": 0.0, "high": 0.2},
    "joint_epochs": 1,
}


def synthetic_config() -> dict:
    """The config (as sweep.json holds it) of a sweep over :data:`SYNTHETIC_SPACE`."""
    return AppConfig.model_validate({"space": SYNTHETIC_SPACE}).model_dump(mode="json")


def _sample_params(rng: np.random.Generator, n: int) -> pd.DataFrame:
    # The ranges and scales of SYNTHETIC_SPACE.
    return pd.DataFrame({
        "alpha": np.exp(rng.uniform(np.log(1.0), np.log(300.0), n)),
        "lr": np.exp(rng.uniform(np.log(2e-5), np.log(3e-4), n)),
        "frozen_depth": rng.integers(0, 7, n),
        "weight_decay": rng.uniform(0.0, 0.1, n),
        "dropout": rng.uniform(0.0, 0.2, n),
        "warmup_ratio": 0.1,
        "batch_size": 32,
        "joint_epochs": 1,
    })


def _epochs_run(rng, outcomes: np.ndarray, epochs: int) -> np.ndarray:
    """Epochs each trial finished; a trial that errored early may have finished none."""
    run = np.full(len(outcomes), epochs)
    run[outcomes == StopReason.EARLY_STOPPED] = max(2, epochs // 2)
    run[outcomes == StopReason.ASHA_STOPPED] = 1
    run[outcomes == StopReason.DIVERGED] = min(2, epochs)
    errored = outcomes == StopReason.ERROR
    run[errored] = rng.integers(0, 2, errored.sum())
    return run


def _metrics(rng, rows: pd.DataFrame) -> pd.DataFrame:
    """Accuracy rises with the epoch towards a ceiling set mostly by lr and frozen depth."""
    step = rows["epoch"].to_numpy(dtype=float)
    ceiling = 0.86 - 0.02 * rows["frozen_depth"] - 0.04 * np.abs(np.log10(rows["lr"] / 8e-5))
    acc = ceiling - 0.25 * np.exp(-step / 1.5) + rng.normal(0, 0.005, len(rows))
    train_loss = 0.7 * np.exp(-step / 2.0) + 0.05
    return rows.assign(
        stage=np.where(step <= rows["joint_epochs"], "joint", "task"),
        train_task_loss=train_loss, train_lm_loss=train_loss * 12 + 2,
        val_loss=0.55 - 0.5 * (acc - 0.5) + rng.normal(0, 0.005, len(rows)),
        val_accuracy=acc, val_f1_macro=acc - 0.01, score=acc,
        tokens_per_s=rng.normal(1800, 50, len(rows)), train_time_s=60.0,
        wall_time_s=62.0 * step, timestamp=time.time() - 3600.0 + 62.0 * step,
        checkpoint=rows["trial_id"] + "/checkpoint_" + rows["epoch"].astype(str).str.zfill(6),
    )


def synthetic_trials(
    n_trials: int, epochs: int, *, seed: int = 0, outcome_p: tuple[float, ...] = _OUTCOME_P,
) -> pd.DataFrame:
    """A per-trial, per-epoch table of ``n_trials`` trials of up to ``epochs`` epochs.

    ``outcome_p`` gives the share of completed, early-stopped, ASHA-stopped, diverged and
    errored trials; ``(1, 0, 0, 0, 0)`` makes every trial run all its epochs.
    """
    rng = np.random.default_rng(seed)
    trials = _sample_params(rng, n_trials)
    trials["trial_id"] = [f"trial_{i:05d}" for i in range(n_trials)]
    outcomes = rng.choice(_OUTCOMES, size=n_trials, p=outcome_p)
    outcomes[0] = "completed"  # so every synthetic sweep has a best trial
    trials["stop_reason"] = outcomes
    trials["status"] = np.where(outcomes == "error", "ERROR", "TERMINATED")
    trials["error"] = pd.Series(outcomes).map(
        {"diverged": "train_task_loss is nan", "error": "CUDA out of memory"})
    run = _epochs_run(rng, outcomes, epochs)
    # One row per finished epoch; a trial with none keeps a single epoch-0 row.
    rows = trials.loc[trials.index.repeat(np.maximum(run, 1))].reset_index(drop=True)
    first = np.r_[0, np.cumsum(np.maximum(run, 1))[:-1]]
    rows["epoch"] = np.arange(len(rows)) - np.repeat(first, np.maximum(run, 1)) + 1
    rows.loc[np.repeat(run == 0, np.maximum(run, 1)), "epoch"] = 0
    rows = _metrics(rng, rows)
    _blank_failed_epochs(rows)
    return rows


def _blank_failed_epochs(rows: pd.DataFrame) -> None:
    """Metrics are NaN on a diverged trial's last epoch and on epoch-0 rows."""
    last = ~rows["trial_id"].duplicated(keep="last")
    failed = (rows["epoch"] == 0) | (last & (rows["stop_reason"] == "diverged"))
    metrics = ["train_task_loss", "train_lm_loss", "val_loss", "val_accuracy", "val_f1_macro",
               "score", "tokens_per_s", "train_time_s", "checkpoint"]
    rows.loc[failed, metrics] = np.nan


def make_synthetic_sweep(
    experiment_dir: str | Path, *, n_trials: int = 2000, epochs: int = 10, seed: int = 0,
    status: str = "finished", outcome_p: tuple[float, ...] | None = None,
) -> str | Path:
    """Write ``trials.parquet`` and ``sweep.json`` for a synthetic sweep (a directory or a
    bucket URI); returns where."""
    trials = synthetic_trials(n_trials, epochs, seed=seed, outcome_p=outcome_p or _OUTCOME_P)
    write_trials(experiment_dir, trials)
    cfg = synthetic_config()
    cfg["tune"]["num_samples"] = n_trials
    cfg["train"]["epochs"] = epochs
    scored = trials.dropna(subset=["score"])
    best = scored.loc[scored["score"].idxmax()]
    write_sweep_meta(experiment_dir, {
        "name": sweep_name(experiment_dir), "status": status, "metric": "val_accuracy",
        "mode": "max",
        "label_names": ["rotten", "fresh"],
        "started_at": time.time() - 3600.0,
        "ended_at": None if status == "running" else time.time(),
        "num_samples": n_trials, "config": cfg,
        "best": {"trial_id": best["trial_id"], "score": float(best["score"])},
        "test": {best["trial_id"]: {"test_accuracy": round(float(best["score"]) - 0.01, 4),
                                    "test_examples": 1281}},
    })
    return experiment_dir
