"""Starting a sweep from an earlier one (``tune.warm_start``), Ray-free: what of the old sweep
the new one may use, decided from the two configs, the data and the old trials table.

Two cases, told apart by :func:`fidelity_changes`:

- **history**: same data (fingerprint), same model and same search fidelity. The old trials'
  scores mean the same here, so the ones that lie inside the new space are taken in whole: rows
  in the new trials table (marked ``warm_from``), and completed points of the Optuna study. None
  of them runs again, and the best may still win.
- **prior**: anything of that changed (new rows, another model, another fidelity). The old
  scores are not comparable, so the old top configurations are only evaluated first, as new
  trials, and their old scores count for nothing.

:mod:`search.sweep` applies the plan (:class:`WarmStart`) to the searcher and the recorder.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from search import storage
from search.budget import search_budget
from search.config import AppConfig, Choice, Range, build_config, is_point
from search.results import (
    PARAM_COLUMNS,
    ResultsError,
    experiment_path,
    read_sweep_meta,
    read_trials,
    search_rows,
    summarize_trials,
    sweep_name,
)
from search.space import default_point, fixed_params, type_for

__all__ = ["WarmStart", "fidelity_changes", "plan_warm_start", "resolve_sweep"]

log = logging.getLogger("sftune")

#: train.* keys that change how fast or where a trial runs, not what it learns (the lexical
#: layer is fit at export, after the search).
_OPERATIONAL_TRAIN_KEYS = ("eval_batch_size", "max_batch_tokens", "oom_retries", "device", "bf16",
                           "num_threads", "prefix_cache", "prefix_cache_budget_mb",
                           "time_limit_s", "lexical")


@dataclass
class WarmStart:
    """What a new sweep takes from the old one ``source``."""

    source: str  # the old sweep's name
    path: str  # its location
    mode: str  # "history" | "prior"
    reason: str  # why this mode (for a prior: what changed)
    #: history: the old trials' rows (every evaluation), to add to the new trials table.
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: history: (point, score) of each old trial, completed trials of the Optuna study.
    history: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    #: prior: the old top configurations, evaluated first.
    prior: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0  # old trials (or top configurations) outside the new space

    def describe(self) -> dict[str, Any]:
        """The record kept in ``sweep.json`` (``warm_start``): the sweep's lineage."""
        return {"from": self.source, "path": self.path, "mode": self.mode, "reason": self.reason,
                "trials": len(self.history), "prior": self.prior, "skipped": self.skipped}

    def has_default(self, cfg: AppConfig) -> bool:
        """Whether the history already holds the untuned default point (then it is not run)."""
        return any(is_point(point, default_point(cfg)) for point, _ in self.history)


def resolve_sweep(cfg: AppConfig, ref: str) -> str:
    """The location of the sweep ``ref``: a directory or URI holding a sweep, else a name under
    ``tune.storage_path``."""
    for location in (ref, experiment_path(cfg, ref)):
        try:
            read_sweep_meta(location)
            return location
        except ResultsError:
            continue
    raise ResultsError(f"tune.warm_start: no sweep {ref!r} (neither a sweep directory nor a "
                       f"sweep under {storage.root(cfg.tune.storage_path)})")


def plan_warm_start(cfg: AppConfig, fingerprint: str) -> WarmStart:
    """The plan for starting ``cfg``'s sweep (on data ``fingerprint``) from ``tune.warm_start``."""
    path = resolve_sweep(cfg, cfg.tune.warm_start)
    meta = read_sweep_meta(path)
    old_cfg = build_config(meta["config"], f"{path} sweep.json")
    changes = fidelity_changes(old_cfg, meta.get("data_fingerprint"), cfg, fingerprint)
    rows = read_trials(path)
    trials = summarize_trials(search_rows(rows))
    finished = trials[trials["score"].notna() & (trials["status"] == "TERMINATED")]
    source = meta.get("name") or sweep_name(path)
    if changes:
        plan = WarmStart(source=source, path=path, mode="prior",
                         reason="changed: " + ", ".join(changes))
        _add_prior(plan, cfg, finished)
    else:
        plan = WarmStart(source=source, path=path, mode="history",
                         reason="same data, model and search fidelity")
        _add_history(plan, cfg, finished, rows)
    log.warning("warm start from %s (%s; %s): %d old trials as history, %d configurations "
                "first, %d outside the space", source, plan.mode, plan.reason,
                len(plan.history), len(plan.prior), plan.skipped)
    return plan


def fidelity_changes(old: AppConfig, old_fingerprint: str | None, new: AppConfig,
                     fingerprint: str) -> list[str]:
    """What differs between two sweeps in what decides a search trial's score (the data, the
    model, the metric, how a trial trains and at what fidelity); empty: scores compare."""
    def signature(cfg: AppConfig) -> dict[str, Any]:
        train = cfg.train.model_dump(exclude=set(_OPERATIONAL_TRAIN_KEYS))
        budget = search_budget(cfg)
        return {
            **{f"model.{k}": v for k, v in cfg.model.model_dump().items()},
            **{f"train.{k}": v for k, v in train.items()},
            "data.unlabeled_path": cfg.data.unlabeled_path,
            "tune.search_examples": cfg.tune.search_examples,
            "tune.search_eval_examples": cfg.tune.search_eval_examples,
            # A search trial's time cap (half the search's share): a cut trial scores lower.
            "search trial time limit": None if cfg.tune.search_examples is None or budget is None
            else round(min(cfg.train.time_limit_s or budget, budget / 2), 3),
        }

    before, after = signature(old), signature(new)
    changed = [key for key in after if before.get(key) != after[key]]
    if old_fingerprint != fingerprint:
        changed.insert(0, "data (fingerprint)")
    return changed


def _add_history(plan: WarmStart, cfg: AppConfig, finished: pd.DataFrame,
                 rows: pd.DataFrame) -> None:
    """Old trials that lie in the new space: their points and scores, and all their rows."""
    kept = []
    for _, trial in finished.iterrows():
        if not _in_space(cfg, trial):
            plan.skipped += 1
            continue
        plan.history.append((_point(cfg, trial), float(trial["score"])))
        kept.append(trial["trial_id"])
    taken = search_rows(rows)
    taken = taken[taken["trial_id"].isin(kept)].copy()
    # A trial an older sweep lent the old one keeps its origin: the lineage's root.
    taken["warm_from"] = taken["warm_from"].where(taken["warm_from"].notna(), plan.source)
    default = default_point(cfg)
    taken["default_point"] = [is_point(_point(cfg, row), default) for _, row in taken.iterrows()]
    plan.rows = taken


def _add_prior(plan: WarmStart, cfg: AppConfig, finished: pd.DataFrame) -> None:
    """The old top configurations (by their old score) that lie in the new space, each once;
    the default point is the sweep's first trial anyway."""
    default = default_point(cfg)
    for _, trial in finished.iterrows():  # best first
        if len(plan.prior) == cfg.tune.warm_start_top:
            break
        point = _point(cfg, trial)
        if not _in_searched_ranges(cfg, trial):
            plan.skipped += 1
        elif not is_point(point, default) and all(not is_point(point, p) for p in plan.prior):
            plan.prior.append(point)


def _point(cfg: AppConfig, trial: pd.Series) -> dict[str, Any]:
    """The trial's values of the new space's searched dimensions, typed as Optuna's space."""
    return {name: type_for(name)(trial[name]) for name in cfg.space.searched()}


def _in_searched_ranges(cfg: AppConfig, trial: pd.Series) -> bool:
    for name, dim in cfg.space.searched().items():
        value = trial.get(name)
        if value is None or pd.isna(value):
            return False
        if isinstance(dim, Choice) and not any(_same(value, c) for c in dim.choices):
            return False
        if isinstance(dim, Range) and not dim.low <= float(value) <= dim.high:
            return False
    return True


def _in_space(cfg: AppConfig, trial: pd.Series) -> bool:
    """Inside every searched range, and at the new value of every fixed parameter: a trial of
    the new space exactly, so its score is one the new search could have measured."""
    fixed = fixed_params(cfg)
    return _in_searched_ranges(cfg, trial) and all(
        name not in fixed or _same(trial.get(name), fixed[name]) for name in PARAM_COLUMNS)


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None or pd.isna(a):
        return False
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
