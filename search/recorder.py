"""Turns the stream of trial events of a sweep into sftune's results table. No Ray imports.

:mod:`search.sweep` forwards Ray Tune's callback events here; this class owns the bookkeeping:
one row per trial and epoch, each trial's status and stop reason, the checkpoint of its best
epoch, and the sweep-wide checkpoint budget (only the top-k finished trials keep checkpoints).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from search import storage
from search.config import AppConfig, is_point
from search.results import (
    METRIC_COLUMNS,
    PARAM_COLUMNS,
    TRIAL_COLUMNS,
    StopReason,
    read_trials,
    results_location,
    search_rows,
    summarize_trials,
    sweep_name,
    write_trials,
)

__all__ = ["ResultsRecorder", "write_optuna_study"]

log = logging.getLogger("sftune")
#: The Optuna sqlite study beside the results, for `optuna-dashboard`.
OPTUNA_FILE = "optuna.db"
_FINISHED = ("TERMINATED", "ERROR")


class ResultsRecorder:
    """Accumulates rows keyed by (trial_id, epoch) and writes them atomically, throttled."""

    def __init__(self, *, experiment_dir: str, keep_checkpoints: int, fixed: dict[str, Any],
                 default: dict[str, Any] | None = None, flush_interval_s: float = 2.0) -> None:
        self.experiment_dir = experiment_dir
        self.keep_checkpoints = keep_checkpoints
        self.fixed = fixed
        self.default = default or {}  # the searched values of the untuned default point
        self.phase = "search"  # set by the sweep: rows of the final trial say "final"
        self.flush_interval_s = flush_interval_s
        self._rows: dict[tuple[str, int], dict[str, Any]] = {}
        self._checkpoints: dict[str, str | None] = {}
        self._last_flush = 0.0

    def load_existing(self) -> None:
        """Pick up the rows of an earlier run of this sweep (on resume)."""
        self._take(read_trials(self.experiment_dir))

    def _take(self, rows: pd.DataFrame) -> None:
        for row in rows.reindex(columns=list(TRIAL_COLUMNS)).to_dict("records"):
            self._rows[(row["trial_id"], float(row["epoch"]))] = row
            if isinstance(row.get("checkpoint"), str):
                self._checkpoints[row["trial_id"]] = row["checkpoint"]

    def import_rows(self, rows: pd.DataFrame) -> None:
        """Take in an earlier sweep's trials (a warm start's history), rows and checkpoints as
        they were; their checkpoints belong to that sweep and are never pruned here."""
        self._take(rows)
        self.flush(force=True)

    def forget(self, trial_id: str) -> None:
        """Drop a trial's rows and checkpoint: it is about to run again from the start."""
        self._rows = {key: row for key, row in self._rows.items() if key[0] != trial_id}
        self._checkpoints.pop(trial_id, None)
        self.flush(force=True)

    def _trial_rows(self, trial_id: str) -> list[dict[str, Any]]:
        return [r for (t, _), r in sorted(self._rows.items()) if t == trial_id]

    def on_result(self, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        epoch = float(result.get("epoch") or 0.0)
        row = {"trial_id": trial_id, "status": "RUNNING", "epoch": epoch, "phase": self.phase,
               "default_point": self.phase == "search" and is_point(config, self.default),
               "examples": int(result.get("examples") or 0),
               "stage": result.get("stage"), "node": result.get("node"),
               "stop_reason": result.get("stop_reason", StopReason.RUNNING),
               "error": result.get("error"), "timestamp": result.get("timestamp", time.time())}
        row.update({**self.fixed, **config})
        row.update({k: result.get(k, math.nan) for k in METRIC_COLUMNS})
        row["val_per_class"] = result.get("val_per_class")
        self._rows[(trial_id, epoch)] = {k: row.get(k) for k in TRIAL_COLUMNS}
        self.flush()

    def on_checkpoint(self, trial_id: str, path: str) -> None:
        # Trials report a checkpoint only when an epoch improves: the latest is the best.
        self._checkpoints[trial_id] = path

    def on_complete(self, trial_id: str) -> None:
        rows = self._trial_rows(trial_id)
        for row in rows:
            row["status"] = "TERMINATED"
        if rows and rows[-1]["stop_reason"] in (None, StopReason.RUNNING):
            # ended by the scheduler, not by itself
            rows[-1]["stop_reason"] = StopReason.ASHA_STOPPED
        self._prune_checkpoints()
        self.flush(force=True)

    def on_budget_end(self, trial_ids: list[str]) -> None:
        """Trials that ended while still running because the sweep's time ran out."""
        for trial_id in trial_ids:
            rows = self._trial_rows(trial_id)
            if rows and rows[-1]["stop_reason"] in (None, StopReason.RUNNING):
                for row in rows:
                    row["status"] = "TERMINATED"
                rows[-1]["stop_reason"] = StopReason.BUDGET_STOPPED

    def on_error(self, trial_id: str, config: dict[str, Any], message: str) -> None:
        rows = self._trial_rows(trial_id)
        if not rows:  # it failed before its first evaluation: keep a row so it is not lost
            self.on_result(trial_id, config, {"epoch": 0})
            rows = self._trial_rows(trial_id)
        for row in rows:
            row["status"] = "ERROR"
        rows[-1].update(stop_reason=StopReason.ERROR, error=message)
        self._prune_checkpoints()
        self.flush(force=True)

    def _prune_checkpoints(self) -> None:
        """Keep checkpoints of the top-k finished search trials; running trials, the final
        trial and the untuned default (the baseline the tuning gain is measured against) keep
        theirs, and so do an earlier sweep's trials taken in by a warm start (not ours to
        delete). A finalist's re-run keeps none once finished: only its score is used."""
        summary = summarize_trials(self._frame())
        search = search_rows(summary)
        finished = search.iloc[self.keep_checkpoints:]
        finished = finished[finished["status"].isin(_FINISHED) & ~finished["default_point"]
                            & finished["warm_from"].isna()]
        reruns = summary[(summary["phase"] == "finalist") & summary["status"].isin(_FINISHED)]
        doomed = pd.concat([finished["trial_id"], reruns["trial_id"]])
        for trial_id in doomed:
            path = self._checkpoints.get(trial_id)
            if path:
                _remove_checkpoint(path)
            self._checkpoints[trial_id] = None

    def _frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(list(self._rows.values()), columns=list(TRIAL_COLUMNS))
        if frame.empty:
            return frame
        best = summarize_trials(frame.assign(checkpoint=None))
        best_epoch = dict(zip(best["trial_id"], best["best_epoch"], strict=True))
        is_best = [best_epoch.get(t) == e for t, e in zip(frame["trial_id"], frame["epoch"],
                                                           strict=True)]
        frame["checkpoint"] = [self._checkpoints.get(t) if b else None
                               for t, b in zip(frame["trial_id"], is_best, strict=True)]
        return frame

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_flush < self.flush_interval_s:
            return
        self._last_flush = now
        write_trials(self.experiment_dir, self._frame())


def _remove_checkpoint(location: str) -> None:
    """Delete a pruned checkpoint, on local disk or in a bucket; a failure only warns (the
    results table already forgot it, and the sweep goes on)."""
    try:
        if storage.is_remote(location):
            storage.remove(location)
        else:
            shutil.rmtree(location, ignore_errors=True)
    except OSError as err:
        log.warning("could not delete the pruned checkpoint %s: %s", location, err)


def write_optuna_study(experiment_dir: str, cfg: AppConfig) -> str:
    """Mirror the finished trials into an Optuna sqlite study that `optuna-dashboard` can open.

    Built from sftune's table rather than from Ray's pickled searcher, so the file is a plain,
    version-independent study (one trial per sweep trial, value = best-epoch score).
    """
    # sqlite needs a local file: built in a temp dir, then stored beside the results (a bucket
    # included) in one write.
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / OPTUNA_FILE
        _fill_optuna_study(experiment_dir, cfg, f"sqlite:///{local}")
        target = results_location(experiment_dir, OPTUNA_FILE)
        storage.write_bytes(target, local.read_bytes())
    return target


def _fill_optuna_study(experiment_dir: str, cfg: AppConfig, url: str) -> None:
    import optuna

    from search.space import optuna_space

    study = optuna.create_study(study_name=sweep_name(experiment_dir), storage=url,
                                direction="maximize")
    space = optuna_space(cfg)
    frame = read_trials(experiment_dir)
    frame = search_rows(frame)  # finalists' re-runs and the final trial are not new points
    for _, trial in summarize_trials(frame).iterrows():
        params = {k: _native(trial[k], space[k]) for k in space if k in PARAM_COLUMNS}
        ok = trial["status"] == "TERMINATED" and not pd.isna(trial["score"])
        # Tables of older sweeps have no examples column: their curves are left out.
        curve = frame[(frame["trial_id"] == trial["trial_id"]) & frame["score"].notna()
                      & frame["examples"].notna()]
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=space,
            value=float(trial["score"]) if ok else None,
            state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL,
            intermediate_values={int(e): float(s) for e, s in zip(curve["examples"],
                                                                  curve["score"], strict=True)},
            user_attrs={"trial_id": trial["trial_id"], "stop_reason": trial["stop_reason"]},
        ))


def _native(value: Any, distribution) -> Any:
    from optuna.distributions import IntDistribution

    return int(value) if isinstance(distribution, IntDistribution) else float(value)
