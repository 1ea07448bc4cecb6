"""The fallback when no endpoint is up: the sweep's exported best model, run in-process.

It runs through the endpoint's own :class:`serving.predictor.Predictor` (on CPU, no Ray), so a
text gets the answer the endpoint would give and the test evaluation scored: the same cut
(length and truncation from the export's ``sftune.json``) and the same lexical layer. torch and
transformers are imported only when the user asks for it, so the rest of the dashboard stays
light.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dashboard.client import Prediction
from search import storage
from search.artifacts import WEIGHTS_FILE

__all__ = ["LocalModel", "find_export", "load_local_model"]

# Keys a sweep may use in sweep.json for the exported best model, newest spelling first.
_EXPORT_KEYS = ("export_dir", "export", "exported_to", "best_dir")


def _candidates(meta: dict[str, Any], experiment_dir: str, table: pd.DataFrame) -> list[str]:
    found = []
    for key in _EXPORT_KEYS:
        value = meta.get(key)
        if isinstance(value, dict):
            value = value.get("dir") or value.get("path")
        if isinstance(value, str) and value:
            found.append(value)
    best = meta.get("best") if isinstance(meta.get("best"), dict) else {}
    for key in ("export_dir", "checkpoint"):
        if isinstance(best.get(key), str):
            found.append(best[key])
    found += [storage.join(experiment_dir, "export"), storage.join(experiment_dir, "best")]
    if len(table) and "checkpoint" in table and pd.notna(table["checkpoint"].iloc[0]):
        found.append(str(table["checkpoint"].iloc[0]))  # best trial's best epoch
    return found


def _located(candidate: str, experiment_dir: str) -> str:
    """A candidate as a location: URIs and absolute paths as they are, the rest relative to
    the sweep (a directory or a bucket URI)."""
    if storage.is_remote(candidate) or Path(candidate).is_absolute():
        return candidate
    return storage.join(experiment_dir, candidate)


def find_export(meta: dict[str, Any], experiment_dir: str | Path,
                table: pd.DataFrame | None = None) -> Path | str | None:
    """The exported best model of a sweep, else the best trial's checkpoint; None if neither
    holds safetensors weights. Relative paths are taken from the sweep's location; a sweep in
    a bucket gives a URI (:func:`load_local_model` downloads it once)."""
    experiment_dir = str(experiment_dir)
    table = table if table is not None else pd.DataFrame()
    for candidate in _candidates(meta, experiment_dir, table):
        location = _located(candidate, experiment_dir)
        if storage.exists(storage.join(location, WEIGHTS_FILE)):
            return storage.local_path(location) or location
    return None


@dataclass
class LocalModel:
    """A loaded model (the endpoint's predictor) plus what it is, from its ``sftune.json``."""

    directory: Path
    predictor: Any  # serving.predictor.Predictor, imported lazily (torch)

    @property
    def meta(self) -> dict[str, Any]:
        return self.predictor.meta

    def predict(self, texts: list[str]) -> list[Prediction]:
        return [Prediction(text, answer["label"], answer["score"], answer["probabilities"])
                for text, answer in zip(texts, self.predictor.predict(list(texts)),
                                        strict=True)]


def load_local_model(directory: str | Path) -> LocalModel:
    """Load an exported model on CPU (from a bucket: downloaded once); refuses pickle weights
    (the predictor loads safetensors only)."""
    from serving.predictor import Predictor

    directory = storage.local_copy(str(directory))
    return LocalModel(directory=directory, predictor=Predictor.load(directory, device="cpu"))
