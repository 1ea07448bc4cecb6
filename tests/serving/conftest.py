"""Fixtures for the serving tests: two tiny checkpoints with different weights, and a fake sweep.

The checkpoints are the real format (:func:`search.artifacts.save_checkpoint` of a classifier
built by :func:`search.model.build_model` on the 2-layer test BERT); their heads differ by seed,
so their predictions differ and a model swap is visible in the answers.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import make_tiny_model

LABELS = ["neg", "pos"]


def make_checkpoint(directory: Path, base: Path, *, seed: int, trial_id: str,
                    sweep: str | None = None) -> Path:
    from search.artifacts import save_checkpoint
    from search.model import build_model, load_tokenizer

    model = build_model(base, label_names=LABELS, dropout=0.0, frozen_depth=0, seed=seed)
    meta = {"label_names": LABELS, "trial_id": trial_id, "params": {"lr": 1e-3 * seed},
            "metrics": {"val_accuracy": 0.5 + seed / 100, "train_task_loss": 0.4}}
    if sweep:
        meta["sweep"] = sweep
    return save_checkpoint(directory, model=model.classifier, tokenizer=load_tokenizer(base),
                           meta=meta)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Trial ``A`` and trial ``B``: same tiny architecture, different classifier heads."""
    root = tmp_path_factory.mktemp("serving")
    base = make_tiny_model(root / "base")
    return {"A": make_checkpoint(root / "A", base, seed=1, trial_id="A"),
            "B": make_checkpoint(root / "B", base, seed=2, trial_id="B")}


def write_sweep(storage: Path, name: str, rows: list[dict], test: dict | None = None) -> Path:
    """A sweep directory in the results format, with the given per-epoch rows."""
    from search.results import write_sweep_meta, write_trials

    experiment = storage / name
    write_trials(experiment, pd.DataFrame(rows))
    write_sweep_meta(experiment, {"name": name, "status": "completed", "test": test or {}})
    return experiment


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


TEXTS = [
    "the movie was great fun",
    "bad",
    "the plot was a boring mess and the acting was terrible and dull",
    "love",
    "a charming delight of a film",
]
