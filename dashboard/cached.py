"""Streamlit caches over the loaders, keyed by the results files' modification times.

A rerun (a click, or the live refresh) costs one ``stat`` per file while nothing changed; as
soon as the sweep rewrites ``trials.parquet`` the key changes and the new results are read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import streamlit as st

from dashboard import importance, loaders, space
from dashboard.local_model import LocalModel, load_local_model
from search import storage
from search.results import SWEEP_FILE, list_sweeps, results_location

__all__ = ["local_model", "param_importance", "quick_meta", "sweep", "sweep_paths", "sweep_rows"]


@st.cache_data(max_entries=32, show_spinner=False)
def _sweep(path: str, stamp: tuple[int, int]) -> loaders.Sweep:
    del stamp  # only part of the cache key
    return loaders.load_sweep(path)


def sweep(path: str | Path) -> loaders.Sweep:
    """The sweep at ``path``; raises :class:`search.results.ResultsError` when unreadable."""
    return _sweep(str(path), loaders.file_stamp(path))


def sweep_paths(storage_path: str) -> list[str]:
    """Sweeps under ``storage_path`` (a directory or a bucket URI), newest first (a listing:
    cheap, so never cached)."""
    return list_sweeps(storage_path)


def sweep_rows(paths: list[str]) -> list[dict[str, Any]]:
    return [loaders.sweep_row(p, load=sweep) for p in paths]


def quick_meta(path: str | Path) -> dict[str, Any]:
    """``sweep.json`` alone, for decisions such as whether to refresh; {} if unreadable."""
    try:
        return json.loads(storage.read_bytes(results_location(str(path), SWEEP_FILE)))
    except (OSError, ValueError):
        return {}


@st.cache_data(max_entries=16, show_spinner="Computing hyperparameter importance...")
def _importance(path: str, stamp: tuple[int, int]) -> importance.Importance:
    del stamp
    loaded = sweep(path)
    return importance.param_importance(loaded.table, space.search_space(loaded.meta))


def param_importance(path: str | Path) -> importance.Importance:
    return _importance(str(path), loaders.file_stamp(path))


@st.cache_resource(max_entries=2, show_spinner="Loading the model (first time: a few seconds)...")
def local_model(directory: str) -> LocalModel:
    """One loaded pipeline per directory, shared by every session of this server."""
    return load_local_model(directory)
