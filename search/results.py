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

import io
import json
import math
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from search import storage

if TYPE_CHECKING:
    from search.config import AppConfig

__all__ = [
    "METRIC_COLUMNS",
    "PARAM_COLUMNS",
    "TRIAL_COLUMNS",
    "ResultsError",
    "StopReason",
    "best_trial",
    "chosen_trial",
    "describe_gain",
    "describe_lineage",
    "experiment_path",
    "list_sweeps",
    "pick_best",
    "prefix_cache_dir",
    "read_sweep_meta",
    "read_row_keys",
    "read_trials",
    "FAILURE_KINDS",
    "classify_failure",
    "finalist_summary",
    "sweep_finalists",
    "range_edges",
    "search_rows",
    "recorded_test_metrics",
    "results_dir",
    "results_location",
    "results_path",
    "summarize_trials",
    "widen_command",
    "sweep_name",
    "write_row_keys",
    "write_sweep_meta",
    "write_trials",
]

class StopReason:
    """Why a trial's run ended: the values of the ``stop_reason`` column, defined once. They are
    plain strings, as the trials table, Tune's results and ``sweep.json`` store them."""

    RUNNING = "running"  # not ended yet (or its end was never recorded)
    COMPLETED = "completed"  # ran its planned steps or time
    EARLY_STOPPED = "early_stopped"  # no improvement for train.patience evaluations
    ASHA_STOPPED = "asha_stopped"  # cut by the scheduler
    BUDGET_STOPPED = "budget_stopped"  # still running when the sweep's time budget ran out
    DIVERGED = "diverged"  # non-finite loss
    ERROR = "error"  # raised
    TERMINAL = (COMPLETED, EARLY_STOPPED, ASHA_STOPPED, DIVERGED, ERROR, BUDGET_STOPPED)


RESULTS_DIRNAME = "sftune"
#: Reads of the trials table before a corrupt or partial file is reported (see read_trials).
READ_ATTEMPTS = 3
TRIALS_FILE = "trials.parquet"
SWEEP_FILE = "sweep.json"
#: Row keys (:func:`search.splits.row_keys`) of the sweep's train, validation and test splits.
ROWS_FILE = "rows.npz"

PARAM_COLUMNS = (
    "alpha", "lr", "frozen_depth", "weight_decay", "dropout",
    "warmup_ratio", "batch_size", "joint_epochs",
)
METRIC_COLUMNS = (
    "train_task_loss", "train_lm_loss", "val_loss", "val_accuracy", "val_f1_macro",
    "val_f1_worst", "score",
    "tokens_per_s", "train_time_s", "wall_time_s", "peak_rss_mib", "peak_gpu_mem_mib",
    "oom_retries",
)
#: status: Tune's trial status (PENDING, RUNNING, TERMINATED, ERROR).
#: stop_reason: a StopReason value.
#: phase: search (a trial of the search) | final (the best configuration trained on all data).
#: default_point: the search trial at the space's defaults (the untuned baseline).
#: epoch: epochs done at the evaluation (fractional: evaluations can fall mid-epoch);
#: examples: training examples seen by then (ASHA's time axis).
#: node: the id of the Ray node the evaluation ran on (a retried trial can move to another).
#: seed, finalist_of: a finalist's re-run: its train.seed and the search trial it re-runs.
#: warm_from: a trial of an earlier sweep taken in as history (tune.warm_start): that sweep's
#: name; its checkpoint, if kept, lives there (this sweep never deletes it).
TRIAL_COLUMNS = (
    "trial_id", "phase", "default_point", "status", "stop_reason", "error", "epoch", "examples",
    "stage", "node", "seed", "finalist_of", "warm_from",
    *PARAM_COLUMNS, *METRIC_COLUMNS, "val_per_class", "checkpoint", "timestamp",
)
#: val_per_class: JSON of the evaluation's precision, recall, F1 and support per label and its
#: confusion matrix ({"labels", "precision", "recall", "f1", "support", "confusion"}).


class ResultsError(ValueError):
    """A results file is missing, corrupt or partial."""


def experiment_path(cfg: AppConfig, name: str) -> str:
    """Where Tune keeps the sweep ``name``: ``<tune.storage_path>/<name>``."""
    return storage.join(storage.root(cfg.tune.storage_path), name)


def results_path(cfg: AppConfig, name: str) -> str:
    """Where sftune's own results (``sftune/``) go: beside Tune's experiment, local or in a
    bucket, so every machine that reaches the storage finds them."""
    return experiment_path(cfg, name)


def prefix_cache_dir(experiment_dir: str) -> Path:
    """Where a node's trials share frozen-prefix activations (memory-mapped files).

    Under the experiment dir when it is local; in the node's temp dir when the experiment lives
    in a bucket (a memory map needs a local file).
    """
    if storage.is_remote(experiment_dir):
        return Path(tempfile.gettempdir()) / "sftune-prefix-cache" / Path(experiment_dir).name
    return Path(experiment_dir) / "prefix_cache"


def results_dir(experiment_dir: str | Path) -> Path:
    """The local ``sftune/`` directory of a local experiment (see :func:`results_location`)."""
    return Path(experiment_dir) / RESULTS_DIRNAME


def results_location(experiment_dir: str | Path, file: str = "") -> str:
    """``<experiment>/sftune[/file]``, a local path or a URI."""
    return storage.join(str(experiment_dir), RESULTS_DIRNAME, *([file] if file else []))


def write_trials(experiment_dir: str | Path, frame: pd.DataFrame) -> str:
    """Write the per-trial, per-epoch table (columns in :data:`TRIAL_COLUMNS` order)."""
    frame = frame.reindex(columns=list(TRIAL_COLUMNS))
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    target = results_location(experiment_dir, TRIALS_FILE)
    storage.write_bytes(target, buffer.getvalue())
    return target


def read_trials(experiment_dir: str | Path) -> pd.DataFrame:
    """The per-trial, per-epoch table; an empty table (right columns) if none was written yet."""
    path = results_location(experiment_dir, TRIALS_FILE)
    for attempt in range(READ_ATTEMPTS):
        try:
            frame = pd.read_parquet(io.BytesIO(storage.read_bytes(path)))
            break
        except FileNotFoundError:
            return pd.DataFrame(columns=list(TRIAL_COLUMNS))
        except storage.StorageError as err:
            raise ResultsError(str(err)) from None
        except Exception as err:  # pyarrow raises several types for a truncated or foreign file
            if attempt + 1 == READ_ATTEMPTS:
                raise ResultsError(f"{path} is corrupt or partial: {err}") from None
            # A live sweep replaces the file as it runs; a bucket can answer a read mid-replace
            # with a partial object (seen on the S3 test server): read it again.
            time.sleep(0.2)
    missing = [c for c in ("trial_id", "epoch", "status") if c not in frame.columns]
    if missing:
        raise ResultsError(f"{path} lacks columns {missing}; it was not written by sftune")
    return frame.reindex(columns=list(TRIAL_COLUMNS))


def write_row_keys(experiment_dir: str | Path, keys: dict[str, Any]) -> str:
    """Record which examples the sweep's splits hold (a key per row, see ROWS_FILE)."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: np.asarray(k, dtype=np.uint64)
                                   for name, k in keys.items()})
    target = results_location(experiment_dir, ROWS_FILE)
    storage.write_bytes(target, buffer.getvalue())
    return target


def read_row_keys(experiment_dir: str | Path) -> dict[str, Any] | None:
    """The row keys a sweep recorded per split; None for a sweep that recorded none (older)."""
    import numpy as np

    try:
        data = storage.read_bytes(results_location(experiment_dir, ROWS_FILE))
    except FileNotFoundError:
        return None
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def write_sweep_meta(experiment_dir: str | Path, meta: dict[str, Any]) -> str:
    target = results_location(experiment_dir, SWEEP_FILE)
    text = json.dumps(meta, indent=2, sort_keys=True, default=str)
    storage.write_bytes(target, text.encode())
    return target


def read_sweep_meta(experiment_dir: str | Path) -> dict[str, Any]:
    path = results_location(experiment_dir, SWEEP_FILE)
    try:
        return json.loads(storage.read_bytes(path))
    except FileNotFoundError:
        raise ResultsError(f"{experiment_dir} is not an sftune sweep (no {SWEEP_FILE})") from None
    except storage.StorageError as err:
        raise ResultsError(str(err)) from None
    except json.JSONDecodeError as err:
        raise ResultsError(f"{path} is corrupt: {err}") from None


def recorded_test_metrics(meta: dict[str, Any], trial_id: str) -> dict[str, Any] | None:
    """The test metrics ``sftune best`` recorded in ``sweep.json`` for ``trial_id`` (keyed by
    trial: the test split is evaluated once per exported trial, never again); None when that
    trial was never evaluated or its record holds a NaN."""
    tests = meta.get("test")
    recorded = tests.get(trial_id) if isinstance(tests, dict) else None
    if not isinstance(recorded, dict):
        return None
    numbers = {k: v for k, v in recorded.items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    if any(math.isnan(v) for v in numbers.values()):
        return None
    per_class = recorded.get("test_per_class")  # the same measurement, label by label
    return numbers | ({"test_per_class": per_class} if isinstance(per_class, dict) else {})


def update_sweep_meta(experiment_dir: str | Path, **fields: Any) -> dict[str, Any]:
    meta = {**read_sweep_meta(experiment_dir), **fields}
    write_sweep_meta(experiment_dir, meta)
    return meta


def list_sweeps(storage_path: str | Path) -> list[str]:
    """Experiment locations under ``storage_path`` (a directory or a bucket URI) that hold an
    sftune sweep, newest first."""
    root = storage.root(str(storage_path))
    stamped = []
    for name in storage.list_dirs(root):
        experiment = storage.join(root, name)
        modified = storage.modified_ns(results_location(experiment, SWEEP_FILE))
        if modified is not None:
            stamped.append((modified, experiment))
    return [experiment for _, experiment in sorted(stamped, reverse=True)]


def results_record(experiment_dir: str | Path) -> dict[str, Any]:
    """A sweep's metadata and one row per trial (its best evaluation), as plain JSON values:
    what ``sftune results --json`` prints for scripts."""
    summary = summarize_trials(read_trials(experiment_dir))
    trials = json.loads(summary.to_json(orient="records")) if not summary.empty else []
    meta = read_sweep_meta(experiment_dir)
    return {"path": str(experiment_dir), "sweep": meta, "trials": trials,
            "range_edges": range_edges(meta, summary)}


def range_edges(meta: dict[str, Any], summary: pd.DataFrame, top: int = 3
                ) -> list[dict[str, Any]]:
    """The searched ranges whose best search trial sits at a bound, with a widened range to try
    (:func:`search.space.edge_of_range`); [] without scored search trials or a readable space."""
    from pydantic import ValidationError

    from search.config import SpaceConfig
    from search.space import edge_of_range

    scored = search_rows(summary)
    scored = scored[scored["score"].notna()] if len(scored) else scored
    raw = (meta.get("config") or {}).get("space")
    if scored.empty or not isinstance(raw, dict):
        return []
    try:
        space = SpaceConfig.model_validate(raw)
    except ValidationError:  # a sweep written by another version
        return []
    rows = scored.head(top)[[c for c in PARAM_COLUMNS if c in scored]].to_dict("records")
    return edge_of_range(space, rows[0], rows)


def widen_command(meta: dict[str, Any], edges: list[dict[str, Any]]) -> str | None:
    """The follow-up to edge-of-range findings: a sweep over the widened ranges, warm-started
    from this one, so its trials inside the new ranges are history, not new work."""
    if not edges:
        return None
    sets = " ".join(f"--set '{edge['set']}'" for edge in edges)
    return f"sftune sweep --warm-start {meta.get('name')} {sets}"


def sweep_overview(experiment_dir: str | Path) -> dict[str, Any]:
    """One line about a sweep (``sftune list``): status, trials, best validation score, and the
    exported trial's test accuracy once ``sftune best`` measured it."""
    path = str(experiment_dir)
    try:
        meta = read_sweep_meta(path)
        summary = summarize_trials(read_trials(path))
    except ResultsError as err:
        return {"name": sweep_name(path), "status": f"unreadable: {err}", "path": path}
    best = pick_best(summary, chosen_trial(meta))
    test = recorded_test_metrics(meta, best["trial_id"]) if best is not None else None
    return {"name": meta.get("name") or sweep_name(path), "status": meta.get("status"),
            "trials": len(summary), "metric": meta.get("metric"),
            "best": None if best is None else float(best["score"]),
            "test_accuracy": (test or {}).get("test_accuracy"), "path": path}


def sweep_name(experiment_dir: str | Path) -> str:
    """The last part of an experiment's location (its name), for a path or a URI."""
    return str(experiment_dir).rstrip("/").rsplit("/", 1)[-1]


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
    metric_cols += ["epoch", "stage", "val_per_class", "checkpoint"]
    summary[metric_cols] = best.reindex(summary.index)[metric_cols]
    summary = summary.rename(columns={"epoch": "best_epoch"})
    summary["epochs"] = epochs.reindex(summary.index).fillna(0).astype("float64")
    summary["default_point"] = summary["default_point"].fillna(False).astype(bool)
    summary["failure"] = [classify_failure(reason, error) for reason, error in
                          zip(summary["stop_reason"], summary["error"], strict=True)]
    # On a tie the untuned default ranks first: the search must beat it, not match it.
    return summary.reset_index().sort_values(["score", "default_point"], ascending=False,
                                             na_position="last")


#: Why a trial failed, from its stop reason and error text (first match wins).
FAILURE_PATTERNS = (
    ("out_of_memory", ("OutOfMemoryError", "out of memory", "MemoryError",
                       "running low on memory", "std::bad_alloc")),
    ("data", ("DataError", "UnicodeDecodeError", "ParserError", "Token indices sequence",
              "index out of range in self", "tokenizer", "Tokenizer")),
)
FAILURE_KINDS = ("out_of_memory", "diverged", "data", "other")


#: Phases whose trials are not points the search sampled.
NOT_SEARCH = ("final", "finalist")


def search_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the search's own trials (not the finalists' re-runs, not the final trial)."""
    return frame[~frame["phase"].isin(NOT_SEARCH)] if "phase" in frame else frame


def classify_failure(stop_reason: Any, error: Any) -> str | None:
    """``out_of_memory`` (CPU or GPU), ``diverged``, ``data`` (data or tokenizer errors) or
    ``other`` for a failed trial; None for one that did not fail."""
    if stop_reason == StopReason.DIVERGED:
        return "diverged"
    if stop_reason != StopReason.ERROR:
        return None
    text = error if isinstance(error, str) else ""
    for kind, needles in FAILURE_PATTERNS:
        if any(needle in text for needle in needles):
            return kind
    return "other"


def finalist_summary(frame: pd.DataFrame, *, choice: str = "mean",
                     margin: float = 0.02) -> pd.DataFrame:
    """One row per finalist (a search trial re-run with more seeds), best first by ``choice``
    (``mean`` or ``lcb``, mean minus one sd): its search score, the new seeds and their scores,
    the mean and sd over all its runs, and whether it reproduced (the new seeds' mean within
    ``margin`` of its search score). Empty when the sweep ran no finalists."""
    summary = summarize_trials(frame)
    reruns = summary[(summary["phase"] == "finalist") & summary["score"].notna()] \
        if len(summary) else summary
    if reruns.empty:
        return pd.DataFrame(columns=["trial_id", "search_score", "seeds", "scores", "mean", "sd",
                                     "lcb", "new_mean", "reproducible", "default_point"])
    searched = summary.set_index("trial_id")
    rows = []
    for trial_id, group in reruns.groupby("finalist_of", sort=False):
        original = float(searched.loc[trial_id, "score"])
        new = [float(v) for v in group.sort_values("seed")["score"]]
        runs = pd.Series([original, *new])
        sd = float(runs.std(ddof=1)) if len(runs) > 1 else 0.0
        rows.append({"trial_id": trial_id, "search_score": original,
                     "seeds": [int(s) for s in group.sort_values("seed")["seed"]],
                     "scores": new, "mean": float(runs.mean()), "sd": sd,
                     "lcb": float(runs.mean()) - sd, "new_mean": float(pd.Series(new).mean()),
                     "reproducible": bool(pd.Series(new).mean() >= original - margin),
                     "default_point": bool(searched.loc[trial_id, "default_point"])})
    table = pd.DataFrame(rows)
    # On a tie the untuned default ranks first, as in the search's own table.
    return table.sort_values([choice, "default_point"], ascending=False).reset_index(drop=True)


def sweep_finalists(meta: dict[str, Any], frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`finalist_summary` ranked and flagged as the sweep's own config said."""
    tune_cfg = (meta.get("config") or {}).get("tune") or {}
    return finalist_summary(frame, choice=tune_cfg.get("finalist_choice", "mean"),
                            margin=tune_cfg.get("reproducibility_margin", 0.02))


def describe_gain(gain: dict[str, Any]) -> str:
    """One sentence on what the tuning bought (a ``tuning_gain`` record of sweep.json)."""
    at = (f"at search fidelity, {gain['search_examples']:,} training examples"
          if gain["fidelity"] == "subset" else "at full fidelity")
    return (f"tuning bought {100 * gain['gain_accuracy']:+.1f} test accuracy points "
            f"({gain['tuned_accuracy']:.4f} vs {gain['default_accuracy']:.4f} for the untuned "
            f"default) and {100 * gain['gain_f1_macro']:+.1f} macro-F1 points, {at}")


def describe_lineage(meta: dict[str, Any]) -> list[str]:
    """Where a sweep came from and what it did to the endpoint, one line each: the sweep it
    warm-started from (and how), and a re-tune's comparison and promotion decision."""
    lines = []
    warm = meta.get("warm_start")
    if warm:
        taken = (f"{warm['trials']} of its trials taken in as history" if warm["mode"] ==
                 "history" else f"its top {len(warm['prior'])} configurations evaluated first")
        skipped = f", {warm['skipped']} outside this space" if warm.get("skipped") else ""
        lines.append(f"warm-started from {warm['from']}: {taken}{skipped} ({warm['reason']})")
    retune = meta.get("retune")
    if retune:
        promoted = retune.get("promoted_to")
        outcome = (f"promoted to {promoted['url']}" if promoted else
                   f"promotion due, not done ({retune.get('promotion_error') or 'no endpoint'})"
                   if retune["promote"] else "the served model was kept")
        lines.append(f"re-tune of {retune['from']}: {outcome}; {retune['reason']}, on "
                     f"{retune['held_out_rows']:,} of {retune['test_rows']:,} test rows")
    return lines


def best_trial(frame: pd.DataFrame, chosen: str | None = None) -> pd.Series | None:
    """The sweep's model, from the raw event frame (see :func:`pick_best`)."""
    return pick_best(summarize_trials(frame), chosen)


def chosen_trial(meta: dict[str, Any]) -> str | None:
    """The search trial whose configuration the sweep chose (``final_source``: by finalists'
    mean, or the default kept by tune.min_improvement); None before the choice."""
    return (meta.get("final_source") or {}).get("trial_id")


def pick_best(summary: pd.DataFrame, chosen: str | None = None) -> pd.Series | None:
    """The sweep's model from a table sorted best first (:func:`summarize_trials`): its final
    trial (the chosen configuration trained on all the data) once that has an evaluation, else
    the ``chosen`` search trial (:func:`chosen_trial`: a full-fidelity sweep's finalists pick
    which search run is the model), else the search trial with the highest best-evaluation
    score; None if none has an evaluation."""
    scored = summary[summary["score"].notna()] if len(summary) else summary
    final = scored[scored["phase"] == "final"] if "phase" in scored else scored.iloc[:0]
    picked = scored[scored["trial_id"] == chosen] if chosen else scored.iloc[:0]
    rows = final if not final.empty else picked if not picked.empty else scored
    return None if rows.empty else rows.iloc[0]
