"""Where labelled rows come from, and whether they are usable: the built-in reviews, a user's
CSV / TSV / JSON(L) / Parquet file or its own train/validation/test files, an unlabelled
corpus. A bad file raises :class:`DataError` naming the
rows and why, before anything is split or tokenized."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from search import assets
from search.config import DataConfig

__all__ = [
    "BUILTIN_SOURCES",
    "DataError",
    "ROTTEN_TOMATOES_LABELS",
    "load_given_splits",
    "load_labeled_frame",
    "read_unlabeled",
    "row_numbers",
    "validate_frame",
]

BUILTIN_SOURCES = tuple(assets.DATA_FILES)
#: Rotten-tomatoes label order: index 0 is the negative class, so "positive" reads as 1.
ROTTEN_TOMATOES_LABELS = ("rotten", "fresh")
_MAX_ROWS_SHOWN = 10


class DataError(ValueError):
    """The dataset cannot be used; the message says which rows and why."""


def row_numbers(index: pd.Index | list[int]) -> str:
    """1-based data row numbers (header excluded), at most a handful shown."""
    numbers = [int(i) + 1 for i in index]
    shown = ", ".join(map(str, numbers[:_MAX_ROWS_SHOWN]))
    more = f" and {len(numbers) - _MAX_ROWS_SHOWN} more" if len(numbers) > _MAX_ROWS_SHOWN else ""
    return f"row{'s' if len(numbers) > 1 else ''} {shown}{more}"


def _load_rotten_tomatoes(name: str) -> pd.DataFrame:
    frame = pd.read_csv(assets.builtin_data_file(name))
    frame = frame[frame["category"].isin(ROTTEN_TOMATOES_LABELS)]
    # The corpus repeats some reviews verbatim; duplicates would leak across splits.
    frame = frame.drop_duplicates(subset="text").reset_index(drop=True)
    return pd.DataFrame({"text": frame["text"], "label": frame["category"]})


def _read_user_file(path: Path, cfg: DataConfig) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffix = "".join(path.suffixes[-2:]) if path.suffix in {".gz", ".bz2"} else path.suffix
    try:
        if suffix.startswith((".csv", ".tsv")):
            # Text read as str with no NA guessing, so an empty cell is "" and reported as empty.
            frame = pd.read_csv(path, dtype={cfg.text_column: str}, keep_default_na=False,
                                sep="\t" if suffix.startswith(".tsv") else ",")
        elif suffix.startswith((".jsonl", ".json")):
            frame = pd.read_json(path, lines=not _is_json_array(path), dtype=False)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            raise DataError(
                f"{path}: unsupported file type {suffix!r}; use .csv, .tsv, .jsonl, .json (one "
                "object per line, or an array of objects) or .parquet"
            )
    except (ValueError, pd.errors.ParserError, OSError) as err:
        if isinstance(err, DataError):
            raise
        if isinstance(err, pd.errors.EmptyDataError):
            raise DataError(f"{path} is empty") from None
        raise DataError(f"{path} could not be read: {err}") from None
    return _select_columns(frame, path, cfg)


def _is_json_array(path: Path) -> bool:
    """Whether a .json file holds one array of records rather than one record per line."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        head = handle.read(4096).lstrip()
    return head.startswith("[")


def _select_columns(frame: pd.DataFrame, path: Path, cfg: DataConfig) -> pd.DataFrame:
    if frame.empty:
        raise DataError(f"{path} is empty: it has no data rows")
    for role, column in (("text", cfg.text_column), ("label", cfg.label_column)):
        if column not in frame.columns:
            raise DataError(
                f"{path}: {role} column {column!r} not found; columns are {list(frame.columns)} "
                f"(set data.{role}_column)"
            )
    selected = frame[[cfg.text_column, cfg.label_column]]
    return selected.set_axis(["text", "label"], axis=1).reset_index(drop=True)


def validate_frame(frame: pd.DataFrame, source: str, min_classes: int = 2) -> None:
    """Raise :class:`DataError` naming the rows with bad texts or labels, or too few classes."""
    texts = frame["text"]
    not_str = texts[~texts.map(lambda v: isinstance(v, str))].index
    if len(not_str):
        raise DataError(
            f"{source}: {row_numbers(not_str)}: text is not a string (missing or non-text)")
    empty = texts[texts.str.strip() == ""].index
    if len(empty):
        raise DataError(f"{source}: {row_numbers(empty)}: text is empty")
    labels = frame["label"]
    listed = labels[labels.map(lambda v: isinstance(v, list | tuple | np.ndarray))].index
    if len(listed):
        raise DataError(
            f"{source}: {row_numbers(listed)}: the label is a list (multi-label data); sftune "
            "trains single-label classifiers: give each row one label"
        )
    missing = labels[labels.isna() | (labels.astype(str).str.strip() == "")].index
    if len(missing):
        raise DataError(f"{source}: {row_numbers(missing)}: label is missing")
    classes = labels.astype(str).unique()
    if len(classes) < min_classes:
        raise DataError(
            f"{source}: every row has label {classes[0]!r}; a classifier needs at least 2 classes"
        )


def load_labeled_frame(cfg: DataConfig) -> tuple[pd.DataFrame, list[str]]:
    """The validated (text, label-id) frame of the configured source, and its label names."""
    if cfg.source in BUILTIN_SOURCES:
        frame, names = _load_rotten_tomatoes(cfg.source), list(ROTTEN_TOMATOES_LABELS)
    else:
        frame = _read_user_file(Path(cfg.source).expanduser(), cfg)
        validate_frame(frame, cfg.source)
        names = sorted(frame["label"].astype(str).unique(), key=_natural_key)
    return _with_label_ids(frame, names), names


def load_given_splits(cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The user's own train/validation/test files (``data.train`` ...), each validated, with
    label ids from the training file's labels; a label only the other files have is an error."""
    paths = cfg.given_splits() or {}
    frames = {}
    for name, path in paths.items():
        frames[name] = _read_user_file(Path(path).expanduser(), cfg)
        validate_frame(frames[name], path, min_classes=2 if name == "train" else 1)
    names = sorted(frames["train"]["label"].astype(str).unique(), key=_natural_key)
    for name in ("validation", "test"):
        labels = frames[name]["label"].astype(str)
        unknown = labels[~labels.isin(names)].index
        if len(unknown):
            raise DataError(
                f"{paths[name]}: {row_numbers(unknown)}: label {labels[unknown[0]]!r} is not "
                f"among the training file's labels {names}"
            )
    return {name: _with_label_ids(frame, names) for name, frame in frames.items()}, names


def _with_label_ids(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    ids = frame["label"].astype(str).map({n: i for i, n in enumerate(names)})
    return pd.DataFrame({"text": frame["text"], "label": ids.astype("int64")})


def _natural_key(name: str) -> tuple[int, float | str]:
    # Integer labels sort numerically (2 before 10), so label ids match the user's own ints.
    try:
        return (0, float(name))
    except ValueError:
        return (1, name)


def read_unlabeled(path: str) -> list[str]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"unlabeled corpus not found: {file}")
    lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise DataError(f"unlabeled corpus {file} has no non-empty lines")
    return lines
