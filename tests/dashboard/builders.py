"""Sweep directories for the dashboard tests, written with the real results writers."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dashboard.synthetic import SYNTHETIC_SPACE, synthetic_config
from search.metrics import classification_metrics, per_class_json
from search.results import results_dir, write_sweep_meta, write_trials

NAN = math.nan
PARAMS = {"warmup_ratio": 0.1, "batch_size": 32, "joint_epochs": 1}


def per_class_record(accuracy: float, n: int = 100) -> str | None:
    """A two-label record whose confusion matrix has ``accuracy``: "pos" gets all the errors."""
    if math.isnan(accuracy):
        return None
    half, wrong = n // 2, n - round(accuracy * n)
    labels = np.array([0] * half + [1] * half)
    preds = labels.copy()
    preds[half:half + wrong] = 0
    return per_class_json(classification_metrics(labels, preds, 2), ["neg", "pos"])


def _row(trial, status, reason, epoch, acc, *, lr=1e-4, depth=0, alpha=30.0, error=None,
         loss=0.5):
    return {"trial_id": trial, "status": status, "stop_reason": reason, "error": error,
            "epoch": epoch, "stage": "joint" if epoch <= 1 else "task", "alpha": alpha, "lr": lr,
            "frozen_depth": depth, "weight_decay": 0.01, "dropout": 0.1, **PARAMS,
            "train_task_loss": loss, "train_lm_loss": 10 * loss, "val_loss": loss + 0.1,
            "val_accuracy": acc, "val_f1_macro": acc, "score": acc, "tokens_per_s": 1800.0,
            "val_per_class": per_class_record(acc),
            "train_time_s": 30.0, "wall_time_s": 31.0 * epoch,
            "checkpoint": None, "timestamp": 1.7e9 + epoch}


def tiny_rows() -> pd.DataFrame:
    """Five trials, one per way a trial ends. ``t_best`` peaks at epoch 2 of 3, so its score is
    its best epoch (0.84), not its last (0.80)."""
    rows = [
        _row("t_best", "TERMINATED", "completed", 1, 0.70, lr=8e-5, loss=0.6),
        _row("t_best", "TERMINATED", "completed", 2, 0.84, lr=8e-5, loss=0.4),
        _row("t_best", "TERMINATED", "completed", 3, 0.80, lr=8e-5, loss=0.3),
        _row("t_patience", "TERMINATED", "early_stopped", 1, 0.75, lr=3e-5, depth=2),
        _row("t_patience", "TERMINATED", "early_stopped", 2, 0.74, lr=3e-5, depth=2),
        _row("t_asha", "TERMINATED", "asha_stopped", 1, 0.60, lr=2e-4, depth=4, alpha=200.0),
        _row("t_diverged", "TERMINATED", "diverged", 1, 0.55, lr=3e-4, alpha=5.0,
             error="train_task_loss is nan at step 40"),
        _row("t_diverged", "TERMINATED", "diverged", 2, NAN, lr=3e-4, alpha=5.0, loss=NAN,
             error="train_task_loss is nan at step 40"),
        _row("t_error", "ERROR", "error", 0, NAN, depth=6, loss=NAN,
             error="MemoryError: simulated out of memory in trial\nsecond line"),
    ]
    return pd.DataFrame(rows)


TINY_TRIALS = ["t_best", "t_patience", "t_asha", "t_diverged", "t_error"]


def meta(name: str, *, status: str = "finished", **extra) -> dict:
    cfg = synthetic_config()
    return {"name": name, "status": status, "metric": "val_accuracy", "mode": "max",
            "started_at": time.time() - 600, "ended_at": None if status == "running" else
            time.time() - 60, "num_samples": 5, "config": cfg,
            "label_names": ["neg", "pos"], **extra}


def write_tiny(storage: Path, name: str = "tiny") -> Path:
    path = storage / name
    write_trials(path, tiny_rows())
    test_record = json.loads(per_class_record(0.81, n=100))
    write_sweep_meta(path, meta(name, test={"t_best": {
        "test_accuracy": 0.81, "test_examples": 100, "test_per_class": test_record}}))
    return path


def write_running_empty(storage: Path, name: str = "just-started") -> Path:
    """A sweep that started but has no trial row yet (no trials.parquet at all)."""
    path = storage / name
    write_sweep_meta(path, meta(name, status="running"))
    return path


def write_running(storage: Path, name: str = "live") -> Path:
    """A running sweep: one trial finished, one in its second epoch."""
    path = storage / name
    rows = tiny_rows()
    rows = rows[rows["trial_id"].isin(["t_best", "t_patience"])].copy()
    rows.loc[rows["trial_id"] == "t_patience", ["status", "stop_reason"]] = ["RUNNING", "running"]
    write_trials(path, rows)
    write_sweep_meta(path, meta(name, status="running"))
    return path


def write_corrupt(storage: Path, name: str = "broken") -> Path:
    """A sweep whose trials.parquet was cut off halfway (a copy interrupted, a full disk)."""
    path = write_tiny(storage, name)
    target = results_dir(path) / "trials.parquet"
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return path


#: --set overrides that give a config the space the synthetic and tiny sweeps are drawn from.
SPACE_OVERRIDES = [f"space.{name}={value}" for name, value in SYNTHETIC_SPACE.items()]


def write_edge(storage: Path, name: str = "edge") -> Path:
    """A finished sweep whose best trials sit at the top of the lr range [2e-5, 3e-4] (log) and
    at the bottom of dropout's [0, 0.2] (a hard limit, so not an edge to widen past)."""
    path = storage / name
    rows = [_row("e_top", "TERMINATED", "completed", 1, 0.86, lr=2.9e-4),
            _row("e_second", "TERMINATED", "completed", 1, 0.84, lr=2.6e-4),
            _row("e_low", "TERMINATED", "completed", 1, 0.70, lr=3e-5)]
    frame = pd.DataFrame(rows).assign(dropout=0.0)
    write_trials(path, frame)
    write_sweep_meta(path, meta(name, num_samples=3))
    return path


def write_retuned(storage: Path, name: str = "retuned") -> Path:
    """A re-tune of ``tiny``: warm-started from it on new data; its model was promoted."""
    path = storage / name
    write_trials(path, tiny_rows())
    write_sweep_meta(path, meta(name, warm_start={
        "from": "tiny", "path": str(storage / "tiny"), "mode": "prior", "trials": 0,
        "reason": "changed: data (fingerprint)", "skipped": 1,
        "prior": [{"lr": 1e-4}, {"lr": 3e-4}]}, retune={
        "from": "tiny", "metric": "accuracy", "margin": 0.01, "lead": 0.04, "promote": True,
        "reason": "the new model beats the served one on test accuracy by +0.0400 (0.8500 vs "
                  "0.8100); the margin is +0.0100",
        "test_rows": 200, "held_out_rows": 150,
        "served": {"trial_id": "t_old", "sweep": "tiny", "accuracy": 0.81, "f1_macro": 0.8,
                   "f1_worst": 0.78},
        "candidate": {"trial_id": "t_best", "sweep": name, "accuracy": 0.85,
                      "f1_macro": 0.84, "f1_worst": 0.82},
        "promoted_to": {"url": "http://127.0.0.1:8000", "trial_id": "t_best",
                        "model_id": "abc123"}}))
    return path


def write_finalists(storage: Path, name: str = "finals") -> Path:
    """tiny's trials plus re-runs of its top two: t_best's new seeds fall to 0.60 (a lucky
    draw), t_patience's reproduce."""
    path = storage / name
    reruns = [dict(_row(f"r_{of}_{seed}", "TERMINATED", "completed", 1, acc), phase="finalist",
                   finalist_of=of, seed=seed)
              for of, seed, acc in (("t_best", 1, 0.60), ("t_best", 2, 0.60),
                                    ("t_patience", 1, 0.76), ("t_patience", 2, 0.74))]
    rows = pd.concat([tiny_rows().assign(phase="search"), pd.DataFrame(reruns)])
    write_trials(path, rows)
    write_sweep_meta(path, meta(name))
    return path
