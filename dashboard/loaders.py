"""Sweep results as DataFrames for the dashboard: pandas and pyarrow only, no torch, no Ray.

Everything here is a pure function of the files under ``<storage>/<name>/sftune/`` (see
:mod:`search.results`), so the app can cache it keyed by the files' modification times and the
tests can call it without a browser or a server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search import storage
from search.metrics import per_class_table, read_per_class
from search.results import (
    PARAM_COLUMNS,
    SWEEP_FILE,
    TRIALS_FILE,
    ResultsError,
    StopReason,
    chosen_trial,
    pick_best,
    read_sweep_meta,
    read_trials,
    recorded_test_metrics,
    results_location,
    summarize_trials,
    sweep_finalists,
    sweep_name,
)

__all__ = [
    "OUTCOME_LABELS",
    "Sweep",
    "best_card",
    "compare_sweeps",
    "curves",
    "default_curve_trials",
    "file_stamp",
    "filter_trials",
    "format_duration",
    "headline",
    "is_running",
    "load_sweep",
    "finalists",
    "per_class",
    "per_class_difference",
    "retune_scores",
    "sweep_row",
    "sweep_table",
    "table_csv",
    "test_metrics",
    "trial_counts",
    "trial_table",
]

#: What each outcome means to a reader; `error` and `diverged` get the reason appended.
OUTCOME_LABELS = {
    StopReason.COMPLETED: "completed",
    StopReason.EARLY_STOPPED: "early stopped (patience)",
    StopReason.ASHA_STOPPED: "stopped by ASHA",
    StopReason.BUDGET_STOPPED: "stopped at the time budget",
    StopReason.DIVERGED: "diverged",
    StopReason.ERROR: "error",
    StopReason.RUNNING: "running",
    "pending": "pending",  # not a stop reason: a trial Tune has not started yet
}
# The buckets of the Sweeps page; diverged counts as errored because it produced no model.
_BUCKETS = {
    StopReason.COMPLETED: "finished", StopReason.EARLY_STOPPED: "stopped_early",
    StopReason.ASHA_STOPPED: "stopped_early", StopReason.BUDGET_STOPPED: "stopped_early",
    StopReason.DIVERGED: "errored",
    StopReason.ERROR: "errored", StopReason.RUNNING: "running", "pending": "running",
}
_TERMINAL_REASONS = set(StopReason.TERMINAL)
_RUNNING_STATUSES = {"running", "pending", "started", "starting"}


@dataclass(frozen=True)
class Sweep:
    """One sweep as loaded: its ``sweep.json``, per-epoch rows and one-row-per-trial table."""

    path: str  # a local directory or a bucket URI
    meta: dict[str, Any]
    trials: pd.DataFrame
    table: pd.DataFrame

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or sweep_name(self.path))

    @property
    def metric(self) -> str:
        """The validation metric that ranks epochs and trials (``score`` holds its value)."""
        return str(self.meta.get("metric") or "val_accuracy")


def file_stamp(experiment_dir: str | Path) -> tuple[int, int]:
    """Modification times (ns) of the results files, 0 when absent: the cache key."""
    trials, sweep = (storage.modified_ns(results_location(str(experiment_dir), name)) or 0
                     for name in (TRIALS_FILE, SWEEP_FILE))
    return trials, sweep


def load_sweep(experiment_dir: str | Path) -> Sweep:
    """Read one sweep; raises :class:`ResultsError` when a file is corrupt or partial."""
    path = str(experiment_dir)
    meta = read_sweep_meta(path)
    trials = read_trials(path)
    return Sweep(path=path, meta=meta, trials=trials, table=trial_table(trials))


def is_running(meta: dict[str, Any]) -> bool:
    return str(meta.get("status", "")).lower() in _RUNNING_STATUSES


def _outcomes(summary: pd.DataFrame) -> pd.Series:
    """One outcome per trial: the stop reason when terminal, else Tune's status."""
    reason = summary["stop_reason"].astype("string").str.lower()
    status = summary["status"].astype("string").str.lower()
    outcome = reason.where(reason.isin(_TERMINAL_REASONS))
    outcome = outcome.fillna(status.map({"error": "error", "terminated": "completed"}))
    outcome = outcome.fillna(status.where(status.isin(["running", "pending"])))
    return outcome.fillna("running").astype(str)


def _status_labels(outcome: pd.Series, error: pd.Series) -> list[str]:
    labels = []
    for kind, message in zip(outcome, error.astype("string").fillna(""), strict=True):
        label = OUTCOME_LABELS.get(kind, kind)
        reason = message.strip().splitlines()[0] if message.strip() else ""
        labels.append(f"{label}: {reason}" if reason and kind in ("error", "diverged") else label)
    return labels


def trial_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per trial, best first: params, best-epoch metrics, outcome, status, epochs, time."""
    summary = summarize_trials(trials)
    if summary.empty:
        return summary.assign(outcome=pd.Series(dtype=str), status_label=pd.Series(dtype=str),
                              time_s=pd.Series(dtype=float))
    summary["outcome"] = _outcomes(summary).to_numpy()
    summary["status_label"] = _status_labels(summary["outcome"], summary["error"])
    # wall_time_s is cumulative per trial (summarize keeps the last row's); else sum epochs.
    epoch_time = trials.groupby("trial_id")["train_time_s"].sum(min_count=1)
    fallback = summary["trial_id"].map(epoch_time)
    summary["time_s"] = summary["wall_time_s"].astype(float).fillna(fallback)
    return summary.reset_index(drop=True)


def retune_scores(meta: dict[str, Any]) -> pd.DataFrame:
    """A re-tune's comparison: the served and the new model on the same held-out test rows
    (empty for a sweep that was no re-tune)."""
    retune = meta.get("retune") or {}
    rows = [{"model": side, "trial": retune[side].get("trial_id"),
             "sweep": retune[side].get("sweep"), "accuracy": retune[side].get("accuracy"),
             "macro-F1": retune[side].get("f1_macro"),
             "worst-class F1": retune[side].get("f1_worst")}
            for side in ("served", "candidate") if isinstance(retune.get(side), dict)]
    return pd.DataFrame(rows)


def trial_counts(table: pd.DataFrame) -> dict[str, int]:
    """Trials in total and per bucket: finished, running, stopped early, errored."""
    buckets = table["outcome"].map(_BUCKETS).value_counts() if len(table) else pd.Series()
    counts = {"trials": len(table)}
    for bucket in ("finished", "running", "stopped_early", "errored"):
        counts[bucket] = int(buckets.get(bucket, 0))
    return counts


def _timestamp(value: Any) -> pd.Timestamp | None:
    """Sweep times are ISO strings or unix seconds; None when missing or unreadable."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, int | float):
            return pd.Timestamp(value, unit="s", tz="UTC")
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _duration_s(meta: dict[str, Any], now: float | None = None) -> float | None:
    start, end = _timestamp(meta.get("started_at")), _timestamp(meta.get("ended_at"))
    if start is None:
        return None
    if end is None:
        if not is_running(meta):
            return None
        end = pd.Timestamp(now if now is not None else time.time(), unit="s", tz="UTC")
    return max(0.0, (end - start).total_seconds())


def _best_score(table: pd.DataFrame) -> float | None:
    scores = table["score"].dropna() if len(table) else pd.Series(dtype=float)
    return float(scores.max()) if len(scores) else None


def headline(sweep: Sweep, now: float | None = None) -> dict[str, Any]:
    """The figures at the top of a sweep's overview and in its Sweeps-page row."""
    meta = sweep.meta
    return {
        "name": sweep.name,
        "status": str(meta.get("status", "unknown")),
        **trial_counts(sweep.table),
        "planned": meta.get("num_samples"),
        "metric": sweep.metric,
        "best": _best_score(sweep.table),
        "started": _timestamp(meta.get("started_at")),
        "duration_s": _duration_s(meta, now),
    }


def sweep_row(experiment_dir: str | Path, now: float | None = None, *,
              load=load_sweep) -> dict[str, Any]:
    """A Sweeps-page row; an unreadable sweep gets a row that says why, never an exception.

    ``load`` reads the sweep (the app passes its cached reader)."""
    path = str(experiment_dir)
    try:
        row = headline(load(path), now)
        row["problem"] = ""
    except ResultsError as err:
        row = {"name": sweep_name(path), "status": "unreadable", "problem": str(err)}
    row["path"] = path
    return row


_SWEEP_COLUMNS = ["name", "status", "trials", "finished", "running", "stopped_early", "errored",
                  "metric", "best", "started", "duration_s", "problem", "path"]


def sweep_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The Sweeps page's table, one row per sweep, in the order given (newest first)."""
    return pd.DataFrame(rows).reindex(columns=_SWEEP_COLUMNS)


def best_card(sweep: Sweep) -> dict[str, Any] | None:
    """The best trial: its params, best-epoch validation metrics, test metrics and epochs."""
    best = pick_best(sweep.table, chosen_trial(sweep.meta))  # the same rule as `sftune best`
    if best is None:
        return None
    params = {p: _plain(best[p]) for p in PARAM_COLUMNS if pd.notna(best[p])}
    val = {m: float(best[m]) for m in ("val_accuracy", "val_f1_macro", "val_loss")
           if pd.notna(best[m])}
    test = {k: v for k, v in test_metrics(sweep.meta, str(best["trial_id"])).items()
            if not isinstance(v, dict)}  # scalars; the per-class record has its own page
    return {"trial_id": str(best["trial_id"]), "params": params, "val": val, "test": test,
            "score": float(best["score"]), "best_epoch": round(float(best["best_epoch"]), 2),
            "epochs": round(float(best["epochs"]), 2), "status": str(best["status_label"]),
            "final": best.get("phase") == "final", "tuning_gain": sweep.meta.get("tuning_gain")}


def test_metrics(meta: dict[str, Any], trial_id: str) -> dict[str, float | int]:
    """The test metrics recorded for ``trial_id`` (``sftune best`` keys them by trial id, since
    the test split is evaluated once per exported trial); {} when it was never evaluated."""
    return recorded_test_metrics(meta, trial_id) or {}


def per_class(sweep: Sweep, trial_id: str, split: str = "validation"
              ) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """A trial's per-label precision, recall, F1 and support, and its confusion matrix (rows:
    true label, columns: predicted), at its best evaluation (``validation``) or on the test
    split (``test``, once ``sftune best`` measured it); None when there is no record."""
    if split == "test":
        record = read_per_class(test_metrics(sweep.meta, trial_id).get("test_per_class"))
    else:
        rows = sweep.table[sweep.table["trial_id"].astype(str) == trial_id]
        has = "val_per_class" in rows and len(rows)
        record = read_per_class(rows.iloc[0]["val_per_class"]) if has else None
    if record is None:
        return None
    confusion = pd.DataFrame(record["confusion"], index=pd.Index(record["labels"], name="true"),
                             columns=pd.Index(record["labels"], name="predicted"))
    return per_class_table(record), confusion


def finalists(sweep: Sweep) -> pd.DataFrame:
    """The finalists re-run with more seeds, ranked as the sweep ranked them
    (:func:`search.results.finalist_summary`); empty when it ran none."""
    return sweep_finalists(sweep.meta, sweep.trials)


def per_class_difference(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Precision, recall and F1 of one trial minus another's, label by label (labels only one
    of them has are left out)."""
    shared = first.index.intersection(second.index)
    columns = ["precision", "recall", "f1"]
    return first.loc[shared, columns] - second.loc[shared, columns]


def _plain(value: Any) -> Any:
    """numpy scalars to Python numbers, so cards and JSON show 3, not np.int64(3)."""
    return value.item() if isinstance(value, np.generic) else value


def filter_trials(
    table: pd.DataFrame, *, outcomes: list[str] | None = None, text: str = "",
    min_score: float | None = None,
) -> pd.DataFrame:
    """Rows whose outcome is in ``outcomes`` (all if None), whose trial id or status contains
    ``text`` (case-insensitive), and whose score is at least ``min_score``."""
    keep = pd.Series(True, index=table.index)
    if outcomes is not None:
        keep &= table["outcome"].isin(outcomes)
    if text.strip():
        needle = text.strip().lower()
        haystack = table["trial_id"].astype(str) + " " + table["status_label"].astype(str)
        keep &= haystack.str.lower().str.contains(needle, regex=False)
    if min_score is not None:
        keep &= table["score"] >= min_score
    return table[keep]


_TABLE_COLUMNS = ["trial_id", "phase", "status_label", "score", *PARAM_COLUMNS,
                  "val_accuracy", "val_f1_macro", "val_loss", "best_epoch", "epochs", "time_s",
                  "outcome", "error"]


def table_csv(table: pd.DataFrame) -> bytes:
    """The trial table as CSV (UTF-8), in the column order the app shows."""
    columns = [c for c in _TABLE_COLUMNS if c in table.columns]
    return table[columns].rename(columns={"status_label": "status"}).to_csv(
        index=False).encode("utf-8")


def default_curve_trials(table: pd.DataFrame, n: int = 5) -> list[str]:
    """The trials whose curves are shown before the user picks: the ``n`` best."""
    return [str(t) for t in table.loc[table["score"].notna(), "trial_id"].head(n)]


_CURVE_SERIES = {"train_task_loss": "train", "val_loss": "val", "val_accuracy": "val",
                 "val_f1_macro": "val"}


def curves(sweep: Sweep, trial_ids: list[str]) -> pd.DataFrame:
    """Long table of per-epoch series for the chosen trials.

    Columns: trial_id, epoch, series, split (train/val), value, outcome. Epoch-0 rows (a trial
    that failed before its first epoch) carry no metrics and are left out.
    """
    rows = sweep.trials[sweep.trials["trial_id"].isin(trial_ids) & (sweep.trials["epoch"] > 0)]
    long = rows.melt(id_vars=["trial_id", "epoch"], value_vars=list(_CURVE_SERIES),
                     var_name="series", value_name="value").dropna(subset=["value"])
    long["split"] = long["series"].map(_CURVE_SERIES)
    outcome = sweep.table.set_index("trial_id")["outcome"]
    long["outcome"] = long["trial_id"].map(outcome).fillna("running")
    return long.sort_values(["trial_id", "series", "epoch"]).reset_index(drop=True)


def compare_sweeps(a: Sweep, b: Sweep) -> pd.DataFrame:
    """Two sweeps side by side: headline figures, then the best trial's params and metrics."""
    columns = {}
    for sweep in (a, b):
        figures = headline(sweep)
        figures.pop("name")
        card = best_card(sweep) or {}
        figures["best trial"] = card.get("trial_id")
        figures.update({f"best {k}": v for k, v in card.get("params", {}).items()})
        figures.update({f"best {k}": v for k, v in card.get("test", {}).items()})
        figures["duration"] = format_duration(figures.pop("duration_s"))
        columns[_unique_label(sweep.name, columns)] = {k: _cell(v) for k, v in figures.items()}
    return pd.DataFrame(columns)


def _unique_label(name: str, taken: dict) -> str:
    return name if name not in taken else f"{name} (2)"


def _cell(value: Any) -> str:
    """Comparison cells are text: one column mixes counts, floats, times and names."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def format_duration(seconds: float | None) -> str:
    """``3725`` -> ``1h 02m``; ``42`` -> ``42s``; None -> ``—``."""
    if seconds is None or not np.isfinite(seconds):
        return "—"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
