"""Stratified train / validation / test splits of a labelled frame, the optional subsample of
each, and the fingerprint that names exactly which rows (and which encoding) a sweep used."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from search.config import DataConfig
from search.sources import DataError, row_numbers

__all__ = ["SplitFrames", "fingerprint_frames", "row_keys", "split_frame", "subsample_frame"]


@dataclass(frozen=True)
class SplitFrames:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


def split_frame(frame: pd.DataFrame, cfg: DataConfig, label_names: list[str]) -> SplitFrames:
    """Stratified train/validation/test split; every class must reach every split."""
    rng = np.random.default_rng(cfg.split_seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
    for label_id, group in frame.groupby("label", sort=True):
        n = len(group)
        n_val = max(1, round(n * cfg.val_fraction))
        n_test = max(1, round(n * cfg.test_fraction))
        if n - n_val - n_test < 1:
            raise DataError(
                f"class {label_names[label_id]!r} has only {n} row(s) "
                f"({row_numbers(group.index)}); "
                f"train, validation and test each need at least one, so at least 3 are needed"
            )
        order = rng.permutation(group.index.to_numpy())
        parts["validation"].append(order[:n_val])
        parts["test"].append(order[n_val : n_val + n_test])
        parts["train"].append(order[n_val + n_test :])
    take = {
        k: frame.loc[np.sort(np.concatenate(v))].reset_index(drop=True) for k, v in parts.items()
    }
    return SplitFrames(**take)


def subsample_frame(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """Stratified subsample to at most ``limit`` rows, keeping every class."""
    if limit is None or len(frame) <= limit:
        return frame
    share = limit / len(frame)
    picked = [
        g.sample(n=max(1, round(len(g) * share)), random_state=seed)
        for _, g in frame.groupby("label", sort=True)
    ]
    return pd.concat(picked).sort_index().reset_index(drop=True)


def fingerprint_frames(splits: SplitFrames, label_names: list[str], encoding: str) -> str:
    digest = hashlib.sha256(f"{label_names}|{encoding}".encode())
    for name in ("train", "validation", "test"):
        frame = getattr(splits, name)
        digest.update(name.encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def row_keys(frame: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row's text (and second text of a pair), labels aside: the same
    example has the same key in any file, split or later version of the data."""
    columns = [c for c in ("text", "text_pair") if c in frame.columns]
    return pd.util.hash_pandas_object(frame[columns], index=False).to_numpy(dtype=np.uint64)
