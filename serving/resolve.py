"""Which checkpoint to serve: a sweep's best trial, one named trial, or any exported directory.

Reads only the results format (:mod:`search.results`) and the checkpoint format
(:mod:`search.artifacts`); imports no Ray and no torch, so the CLI and the dashboard can call it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search import artifacts, storage
from search.results import (
    ResultsError,
    best_trial,
    chosen_trial,
    list_sweeps,
    read_sweep_meta,
    read_trials,
    recorded_test_metrics,
    summarize_trials,
    sweep_name,
)

__all__ = ["ResolvedModel", "as_resolved", "resolve_model"]


@dataclass(frozen=True)
class ResolvedModel:
    """A checkpoint to serve, and what is known about where it came from."""

    model_dir: Path | str  # a local directory, or a bucket URI each replica downloads once
    source: str | None = None
    trial_id: str | None = None
    test_metrics: dict[str, Any] | None = None


def as_resolved(model: str | Path | ResolvedModel) -> ResolvedModel:
    """``model`` as a :class:`ResolvedModel` (a path is resolved as ``--model DIR``)."""
    if isinstance(model, ResolvedModel):
        return model
    return resolve_model(model=str(model))


def resolve_model(*, name: str | None = None, trial: str | None = None, model: str | None = None,
                  storage_path: str = "runs") -> ResolvedModel:
    """Resolve ``sftune serve NAME | --trial ID | --model DIR`` to a checkpoint directory.

    ``NAME`` serves the sweep ``<storage_path>/NAME``'s best trial; with ``trial`` it serves that
    trial instead. ``trial`` alone searches every sweep under ``storage_path``. The storage and
    ``model`` may be bucket URIs: the checkpoint is then checked here (downloaded once) and
    each replica downloads it on its own node.
    """
    if model is not None:
        if name is not None or trial is not None:
            raise ResultsError("give either a sweep NAME (and --trial) or --model DIR, not both")
        if storage.is_remote(model):
            return _from_bucket(model)
        return _from_directory(Path(model).expanduser())
    if name is None and trial is None:
        raise ResultsError("nothing to serve: give a sweep NAME, --trial ID or --model DIR")
    experiment = _experiment(storage_path, name) if name else _sweep_with_trial(storage_path, trial)
    return _from_sweep(experiment, trial)


def _from_directory(directory: Path) -> ResolvedModel:
    if not directory.is_dir():
        raise artifacts.CheckpointError(f"model directory {directory} does not exist")
    artifacts.verify_safetensors_only(directory)
    meta = artifacts.read_meta(directory)
    return ResolvedModel(model_dir=directory.resolve(), source=meta.get("sweep") or str(directory),
                         trial_id=meta.get("trial_id"))


def _from_bucket(uri: str) -> ResolvedModel:
    if not storage.is_dir(uri):
        raise artifacts.CheckpointError(f"model directory {uri} does not exist")
    local = storage.local_copy(uri)
    artifacts.verify_safetensors_only(local)
    meta = artifacts.read_meta(local)
    return ResolvedModel(model_dir=storage.root(uri), source=meta.get("sweep") or uri,
                         trial_id=meta.get("trial_id"))


def _experiment(storage_path: str, name: str) -> str:
    path = storage.join(storage.root(os.path.expanduser(storage_path)), name)
    if not storage.is_dir(path):
        found = ", ".join(sweep_name(p) for p in list_sweeps(storage_path)) or "none"
        raise ResultsError(f"no sweep {name!r} under {storage_path} (sweeps there: {found}); "
                           "set --storage or tune.storage_path")
    return path


def _sweep_with_trial(storage_path: str, trial: str) -> str:
    matches = [p for p in list_sweeps(storage_path)
               if (read_trials(p)["trial_id"] == trial).any()]
    if len(matches) != 1:
        where = ", ".join(sweep_name(p) for p in matches)
        reason = f"is in several sweeps ({where}); give the sweep NAME" if matches else \
            f"is in no sweep under {storage_path}"
        raise ResultsError(f"trial {trial!r} {reason}")
    return matches[0]


def _from_sweep(experiment: str, trial: str | None) -> ResolvedModel:
    frame = read_trials(experiment)
    if trial is None:
        row = best_trial(frame, chosen_trial(read_sweep_meta(experiment)))
        if row is None:
            raise ResultsError(f"no trial of {sweep_name(experiment)} finished an epoch yet")
    else:
        summary = summarize_trials(frame)
        rows = summary[summary["trial_id"] == trial]
        if rows.empty:
            raise ResultsError(f"no trial {trial!r} in sweep {sweep_name(experiment)} "
                               f"(trials: {', '.join(summary['trial_id'].astype(str))})")
        row = rows.iloc[0]
    return ResolvedModel(model_dir=_checkpoint_of(row, experiment),
                         source=sweep_name(experiment),
                         trial_id=str(row["trial_id"]),
                         test_metrics=_recorded_test(experiment, str(row["trial_id"])))


def _checkpoint_of(row, experiment: str) -> Path | str:
    checkpoint = row["checkpoint"]
    if not isinstance(checkpoint, str) or not storage.is_dir(checkpoint):
        raise ResultsError(
            f"trial {row['trial_id']} of {sweep_name(experiment)} has no checkpoint left (only "
            "the top tune.keep_checkpoints trials keep theirs); pick another with --trial"
        )
    artifacts.verify_safetensors_only(storage.local_copy(checkpoint))
    return checkpoint if storage.is_remote(checkpoint) else Path(checkpoint).resolve()


def _recorded_test(experiment: str, trial_id: str) -> dict[str, float] | None:
    # `sftune best` records test metrics per trial in sweep.json; never compute them here.
    try:
        return recorded_test_metrics(read_sweep_meta(experiment), trial_id)
    except ResultsError:
        return None
