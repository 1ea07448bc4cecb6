"""Experiment tracking through Ray Tune's own logger callbacks: MLflow and Weights & Biases.

TensorBoard needs nothing here: Tune writes its event files into every trial directory by
default. MLflow and W&B are optional extras (``pip install 'sftune[mlflow]'``, ``'sftune[wandb]'``),
imported only when the config turns them on, so a missing one is a clear error naming the key
before any trial starts, never an import error inside a Ray worker.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from search.config import AppConfig, TrackingConfig

__all__ = ["TrackingError", "check_tracking", "tracking_callbacks"]

#: Result keys Tune adds that say nothing about the model (kept out of the trackers' metrics).
_NOISE = ["time_this_iter_s", "time_total_s", "timestamp", "time_since_restore",
          "iterations_since_restore", "training_iteration", "pid", "date", "hostname",
          "node_ip", "done", "checkpoint_dir_name",
          "val_per_class"]  # a JSON record (trials.parquet keeps it); MLflow skips non-numbers


class TrackingError(ValueError):
    """A tracker is configured but cannot run; the message names the key and the fix."""


def check_tracking(cfg: TrackingConfig) -> None:
    """Fail before the sweep starts when a configured tracker's package is missing."""
    wanted = {"tracking.mlflow_uri": (cfg.mlflow_uri, "mlflow", "mlflow"),
              "tracking.wandb_project": (cfg.wandb_project, "wandb", "wandb")}
    for key, (value, module, extra) in wanted.items():
        if value and importlib.util.find_spec(module) is None:
            raise TrackingError(
                f"{key} is set but {module} is not installed: pip install 'sftune[{extra}]'")


def tracking_callbacks(cfg: AppConfig, sweep: str, phase: str) -> list[Any]:
    """Tune callbacks for the trackers ``cfg.tracking`` turns on (none by default).

    Every run is tagged with the sweep's name and the phase (``search`` or ``final``), so the
    final trial (a Tune experiment of its own) lands in the same MLflow experiment / W&B group.
    """
    tracking = cfg.tracking
    check_tracking(tracking)
    callbacks: list[Any] = []
    if tracking.mlflow_uri:
        callbacks.append(_mlflow_callback(tracking, sweep, phase))
    if tracking.wandb_project:
        callbacks.append(_wandb_callback(tracking, sweep, phase))
    return callbacks


def _mlflow_callback(tracking: TrackingConfig, sweep: str, phase: str):
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    uri = tracking.mlflow_uri
    if "://" not in uri:  # a bare path: an SQLite store there (MLflow 3 refuses its file store)
        path = Path(uri).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{path}"
    return MLflowLoggerCallback(
        tracking_uri=uri, experiment_name=tracking.mlflow_experiment or sweep,
        tags={"sftune.sweep": sweep, "sftune.phase": phase}, save_artifact=False,
    )


def _wandb_callback(tracking: TrackingConfig, sweep: str, phase: str):
    from ray.air.integrations.wandb import WandbLoggerCallback

    if tracking.wandb_mode == "offline":
        # Ray asks for an API key unless the driver's environment says offline.
        os.environ["WANDB_MODE"] = "offline"
    extra: dict[str, Any] = {"mode": tracking.wandb_mode, "tags": [sweep, phase],
                             "job_type": phase}
    if tracking.wandb_dir:
        directory = Path(tracking.wandb_dir).expanduser().resolve()
        directory.mkdir(parents=True, exist_ok=True)
        extra["dir"] = str(directory)
    return WandbLoggerCallback(project=tracking.wandb_project, group=sweep, excludes=_NOISE,
                               **extra)
