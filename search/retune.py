"""`sftune retune`: new labelled data arrived. Tune again, warm-started from the served
model's sweep, then compare the served model and the new winner on the new test split's rows
that neither trained nor was selected on, and decide whether the new one may replace it.

Serving-free: the command line (:func:`search.cli.cmd_retune`) finds the served model on the
endpoint and, when the decision says so, swaps the new one in (:mod:`serving.deploy`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from search import storage
from search.config import AppConfig, load_config, with_overrides
from search.results import (
    ResultsError,
    experiment_path,
    read_row_keys,
    read_sweep_meta,
    sweep_name,
    update_sweep_meta,
)
from search.warm_start import resolve_sweep

__all__ = ["compare_models", "decide", "held_out_share", "retune", "retune_config"]


def retune_config(old_ref: str, overrides: list[str], storage_path: str | None = None
                  ) -> tuple[AppConfig, str]:
    """The new sweep's config: the old sweep's, with ``overrides`` (the new data) applied and
    a warm start from it; and the old sweep's location."""
    from search.best import sweep_config

    base = load_config(None, [f"tune.storage_path={storage_path}"] if storage_path else [])
    old_path = resolve_sweep(base, old_ref)
    cfg = with_overrides(sweep_config(old_path), overrides, f"{old_path} sweep.json")
    tune = {"warm_start": old_path}
    if storage_path:
        tune["storage_path"] = storage_path
    return cfg.model_copy(update={"tune": cfg.tune.model_copy(update=tune)}), old_path


def retune(cfg: AppConfig, old_path: str, *, served_dir: str | Path | None = None,
           name: str | None = None, address: str | None = None,
           margin: float | None = None) -> tuple[Any, dict[str, Any]]:
    """Run the warm-started sweep and compare its model with ``served_dir`` (default: the old
    sweep's export). Returns the new sweep's result and the decision, also recorded in the new
    sweep's ``sweep.json`` (``retune``)."""
    from search import api

    served_dir = served_dir or read_sweep_meta(old_path).get("export_dir")
    if not served_dir:
        raise ResultsError(f"{old_path} has no exported model to compare with; give the "
                           "served model's directory (--served DIR)")
    name = name or f"{sweep_name(old_path)}-retune-{time.strftime('%Y%m%d-%H%M%S')}"
    result = api.sweep(cfg, name=name, address=address)
    record = compare_models(cfg, storage.local_copy(str(served_dir)),
                            storage.local_copy(result.best["export_dir"]),
                            cfg.tune.promotion_margin if margin is None else margin)
    record.update({"from": sweep_name(old_path), "served_dir": str(served_dir),
                   "candidate_dir": result.best["export_dir"], "at": time.time()})
    update_sweep_meta(result.path, retune=record)
    return result, record


def compare_models(cfg: AppConfig, served_dir: Path, candidate_dir: Path,
                   margin: float) -> dict[str, Any]:
    """Both models' test metrics on the rows of ``cfg``'s test split that the served model
    never saw (its sweep's recorded training and validation rows), and the decision."""
    from search.artifacts import read_meta
    from search.best import evaluate_export
    from search.data import load_splits
    from search.splits import row_keys

    splits, names = load_splits(cfg.data)
    models = {"served": served_dir, "candidate": candidate_dir}
    metas = {side: read_meta(path) for side, path in models.items()}
    seen, note = _rows_seen(cfg, metas["served"].get("sweep"))
    fresh = ~np.isin(row_keys(splits.test), seen) if seen is not None else \
        np.ones(len(splits.test), dtype=bool)
    rows = splits.test[fresh]
    if rows.empty:
        raise ResultsError("every row of the new test split was in the served model's training "
                           "or validation data: no fair comparison is possible")
    metric = cfg.train.metric.removeprefix("val_")
    scores = {side: evaluate_export(path, rows, names, cfg) for side, path in models.items()}
    return {
        "metric": metric, "margin": margin, "test_rows": len(splits.test),
        "held_out_rows": int(fresh.sum()), "held_out": note,
        **{side: {"trial_id": metas[side].get("trial_id"), "sweep": metas[side].get("sweep"),
                  **{m: float(scores[side][f"test_{m}"])
                     for m in ("accuracy", "f1_macro", "f1_worst")}} for side in models},
        **decide(scores["served"][f"test_{metric}"], scores["candidate"][f"test_{metric}"],
                 metric, margin),
    }


def decide(served: float, candidate: float, metric: str, margin: float) -> dict[str, Any]:
    """Promote only a model that beats the served one by more than ``margin``."""
    lead = float(candidate - served)
    promote = lead > margin
    verb = "beats" if lead > 0 else "does not beat"
    reason = (f"the new model {verb} the served one on test {metric} by {lead:+.4f} "
              f"({candidate:.4f} vs {served:.4f}); the margin is {margin:+.4f}")
    return {"lead": lead, "promote": promote, "reason": reason}


def _rows_seen(cfg: AppConfig, sweep: str | None) -> tuple[np.ndarray | None, str]:
    """Keys of the rows the served model trained or was selected on, from its sweep's record;
    None (with why) when that sweep or its record is not found."""
    if not sweep:
        return None, "unknown: the served model names no sweep; the whole test split is used"
    keys = read_row_keys(experiment_path(cfg, sweep))
    if keys is None:
        return None, (f"unknown: sweep {sweep!r} (the served model's) or its record of rows "
                      "is not under tune.storage_path; the whole test split is used")
    seen = np.concatenate([keys.get("train", []), keys.get("validation", [])]).astype(np.uint64)
    return seen, f"rows not in sweep {sweep!r}'s training or validation splits"


def held_out_share(record: dict[str, Any]) -> str:
    """``"812 of 1,275 test rows"``: how much of the new test split the comparison used."""
    return f"{record['held_out_rows']:,} of {record['test_rows']:,} test rows"
