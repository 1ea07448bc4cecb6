"""The sweep results format: readable with pandas and pyarrow alone (no Ray, no torch).

Under each experiment directory ``<storage_path>/<name>/`` Ray Tune keeps its own state; sftune
adds ``sftune/``:

- ``trials.parquet``: one row per trial and epoch (a trial that failed before its first epoch
  has one row with ``epoch == 0``). Columns are :data:`TRIAL_COLUMNS`.
- ``sweep.json``: the sweep's name, status, times, metric, config, and once known the best trial,
  its test metrics and the export directory.

Writers replace files atomically, so a reader (the dashboard, live) never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "METRIC_COLUMNS",
    "PARAM_COLUMNS",
    "TRIAL_COLUMNS",
    "ResultsError",
    "best_trial",
    "describe_gain",
    "list_sweeps",
    "read_sweep_meta",
    "read_trials",
    "results_dir",
    "summarize_trials",
    "write_sweep_meta",
    "write_trials",
]

RESULTS_DIRNAME = "sftune"
TRIALS_FILE = "trials.parquet"
SWEEP_FILE = "sweep.json"

PARAM_COLUMNS = (
    "alpha", "lr", "frozen_depth", "weight_decay", "dropout",
    "warmup_ratio", "batch_size", "joint_epochs",
)
METRIC_COLUMNS = (
    "train_task_loss", "train_lm_loss", "val_loss", "val_accuracy", "val_f1_macro", "score",
    "tokens_per_s", "train_time_s", "wall_time_s", "peak_rss_mib", "peak_gpu_mem_mib",
)
#: status: Tune's trial status (PENDING, RUNNING, TERMINATED, ERROR).
#: stop_reason: running | completed | early_stopped | asha_stopped | diverged | error.
#: phase: search (a trial of the search) | final (the best configuration trained on all data).
#: default_point: the search trial at the space's defaults (the untuned baseline).
#: epoch: epochs done at the evaluation (fractional: evaluations can fall mid-epoch);
#: examples: training examples seen by then (ASHA's time axis).
TRIAL_COLUMNS = (
    "trial_id", "phase", "default_point", "status", "stop_reason", "error", "epoch", "examples",
    "stage",
    *PARAM_COLUMNS, *METRIC_COLUMNS, "checkpoint", "timestamp",
)


class ResultsError(ValueError):
    """A results file is missing, corrupt or partial."""


def results_dir(experiment_dir: str | Path) -> Path:
    return Path(experiment_dir) / RESULTS_DIRNAME


def _replace_atomically(target: Path, write) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_trials(experiment_dir: str | Path, frame: pd.DataFrame) -> Path:
    """Write the per-trial, per-epoch table (columns in :data:`TRIAL_COLUMNS` order)."""
    frame = frame.reindex(columns=list(TRIAL_COLUMNS))
    target = results_dir(experiment_dir) / TRIALS_FILE
    _replace_atomically(target, lambda tmp: frame.to_parquet(tmp, index=False))
    return target


def read_trials(experiment_dir: str | Path) -> pd.DataFrame:
    """The per-trial, per-epoch table; an empty table (right columns) if none was written yet."""
    path = results_dir(experiment_dir) / TRIALS_FILE
    if not path.is_file():
        return pd.DataFrame(columns=list(TRIAL_COLUMNS))
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a truncated or foreign file
        raise ResultsError(f"{path} is corrupt or partial: {err}") from None
    missing = [c for c in ("trial_id", "epoch", "status") if c not in frame.columns]
    if missing:
        raise ResultsError(f"{path} lacks columns {missing}; it was not written by sftune")
    return frame.reindex(columns=list(TRIAL_COLUMNS))


def write_sweep_meta(experiment_dir: str | Path, meta: dict[str, Any]) -> Path:
    target = results_dir(experiment_dir) / SWEEP_FILE

    def write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))

    _replace_atomically(target, write)
    return target


def read_sweep_meta(experiment_dir: str | Path) -> dict[str, Any]:
    path = results_dir(experiment_dir) / SWEEP_FILE
    if not path.is_file():
        raise ResultsError(f"{Path(experiment_dir)} is not an sftune sweep (no {SWEEP_FILE})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ResultsError(f"{path} is corrupt: {err}") from None


def update_sweep_meta(experiment_dir: str | Path, **fields: Any) -> dict[str, Any]:
    meta = {**read_sweep_meta(experiment_dir), **fields}
    write_sweep_meta(experiment_dir, meta)
    return meta


def list_sweeps(storage_path: str | Path) -> list[Path]:
    """Experiment directories under ``storage_path`` that hold an sftune sweep, newest first."""
    root = Path(storage_path)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (results_dir(p) / SWEEP_FILE).is_file()]
    return sorted(found, key=lambda p: (results_dir(p) / SWEEP_FILE).stat().st_mtime, reverse=True)


def summarize_trials(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: its best evaluation's row, plus epochs run and its latest status.

    A trial's score is its best evaluation, never its last. Trials with no evaluation keep their
    status and error with empty metrics. Search trials come first, by score; the final trial (if
    any) is scored on another validation set, so it is not ranked among them: see
    :func:`best_trial`.
    """
    if frame.empty:
        return frame.assign(epochs=pd.Series(dtype="float64"))
    ordered = frame.sort_values(["trial_id", "epoch"])
    last = ordered.groupby("trial_id", sort=False).tail(1).set_index("trial_id")
    epochs = ordered[ordered["epoch"] > 0].groupby("trial_id")["epoch"].max()
    scored = ordered[ordered["val_accuracy"].notna() & (ordered["epoch"] > 0)]
    best_idx = scored.groupby("trial_id")["score"].idxmax()
    best = scored.loc[best_idx.values].set_index("trial_id")
    summary = last.copy()
    metric_cols = [c for c in METRIC_COLUMNS if c != "wall_time_s"]
    metric_cols += ["epoch", "stage", "checkpoint"]
    summary[metric_cols] = best.reindex(summary.index)[metric_cols]
    summary = summary.rename(columns={"epoch": "best_epoch"})
    summary["epochs"] = epochs.reindex(summary.index).fillna(0).astype("float64")
    summary["default_point"] = summary["default_point"].fillna(False).astype(bool)
    # On a tie the untuned default ranks first: the search must beat it, not match it.
    return summary.reset_index().sort_values(["score", "default_point"], ascending=False,
                                             na_position="last")


def describe_gain(gain: dict[str, Any]) -> str:
    """One sentence on what the tuning bought (a ``tuning_gain`` record of sweep.json)."""
    at = (f"at search fidelity, {gain['search_examples']:,} training examples"
          if gain["fidelity"] == "subset" else "at full fidelity")
    return (f"tuning bought {100 * gain['gain_accuracy']:+.1f} test accuracy points "
            f"({gain['tuned_accuracy']:.4f} vs {gain['default_accuracy']:.4f} for the untuned "
            f"default) and {100 * gain['gain_f1_macro']:+.1f} macro-F1 points, {at}")


def best_trial(frame: pd.DataFrame) -> pd.Series | None:
    """The sweep's model: its final trial once that has an evaluation, else the search trial
    with the highest best-evaluation score; None if no trial has an evaluation yet."""
    summary = summarize_trials(frame)
    summary = summary[summary["score"].notna()]
    final = summary[summary["phase"] == "final"]
    chosen = final if not final.empty else summary
    return None if chosen.empty else chosen.iloc[0]
