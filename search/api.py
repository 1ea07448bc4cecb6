"""sftune's Python API: what the command line does, as functions the CLI itself calls.

    from search import api

    cfg = api.load_config("configs/default.yaml", ["tune.time_budget_s=300"])
    result = api.sweep(cfg, name="reviews-1")          # search, final trial, test, export
    print(result.best["test_accuracy"], result.best["export_dir"])
    table = api.results(result.path)                   # one row per trial, best first
    api.best(result.path, export="./best-model")       # export again, elsewhere
    api.list_sweeps("runs")                            # every sweep under a storage path

Paths are local directories or bucket URIs (``s3://``, ``gs://``) alike. Heavy imports (torch,
Ray) happen inside the calls that need them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from search.config import AppConfig, load_config

__all__ = ["SweepResult", "best", "list_sweeps", "load_config", "results", "sweep"]


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep: where it is, and its exported model's record (None without export)."""

    name: str
    path: str  # the experiment location: a local directory or a bucket URI
    best: dict[str, Any] | None


def sweep(cfg: AppConfig, *, name: str | None = None, address: str | None = None,
          resume: bool = False, export: bool = True) -> SweepResult:
    """Run the sweep ``name`` (or resume it, with the config it ran with); then, unless
    ``export`` is False, test its model once and export it to ``<experiment>/export``."""
    from search.best import export_best, sweep_config
    from search.results import results_path
    from search.sweep import run_sweep

    if resume and name is None:
        raise ValueError("resume needs the name of the sweep to resume")
    name = name or time.strftime("sweep-%Y%m%d-%H%M%S")
    if resume:  # exactly what ran (same data subset, space, budget), whatever cfg says now
        cfg = sweep_config(results_path(cfg, name))
    path = run_sweep(cfg, name=name, address=address, resume=resume)
    return SweepResult(name=name, path=path, best=export_best(path) if export else None)


def best(path: str | Path, export: str | Path | None = None,
         trial: str | None = None) -> dict[str, Any]:
    """Test the sweep's model (or ``trial``) once and export it (default
    ``<experiment>/export``); returns its record: trial, params, scores, test metrics, where."""
    from search.best import export_best

    return export_best(path, export, trial_id=trial)


def results(path: str | Path) -> pd.DataFrame:
    """One row per trial (its best evaluation), best first, with status and stop reason."""
    from search.results import read_trials, summarize_trials

    return summarize_trials(read_trials(path))


def list_sweeps(storage: str | Path) -> list[dict[str, Any]]:
    """Every sweep under ``storage``, newest first: name, status, trials, best score, test."""
    from search.results import list_sweeps as locations
    from search.results import sweep_overview

    return [sweep_overview(location) for location in locations(storage)]
