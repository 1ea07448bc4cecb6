"""Where labelled rows come from, and whether they are usable: the built-in reviews, a user's
CSV / TSV / JSON(L) / Parquet file or its own train/validation/test files, a Hugging Face
``datasets`` dataset saved with ``save_to_disk``, an unlabelled corpus. A bad file raises
:class:`DataError` naming the rows and why, before anything is split or tokenized."""

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
    if path.is_dir():
        return _select_columns(_read_saved_dataset(path), path, cfg)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffix = "".join(path.suffixes[-2:]) if path.suffix in {".gz", ".bz2"} else path.suffix
    try:
        if suffix.startswith((".csv", ".tsv")):
            # Text read as str with no NA guessing, so an empty cell is "" and reported as empty.
            texts = [cfg.text_column] + ([cfg.text_pair_column] if cfg.text_pair_column else [])
            frame = pd.read_csv(path, dtype=dict.fromkeys(texts, str), keep_default_na=False,
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


def _load_from_disk(path: Path):
    """A ``datasets`` Dataset or DatasetDict saved with ``save_to_disk`` (the optional extra)."""
    if not (path / "dataset_info.json").is_file() and not (path / "dataset_dict.json").is_file():
        raise DataError(f"{path} is a directory but not a dataset saved with `datasets`' "
                        "save_to_disk (no dataset_info.json or dataset_dict.json)")
    try:
        import datasets
    except ImportError:
        raise DataError(f"{path} is a `datasets` dataset; reading it needs "
                        "pip install 'sftune[datasets]'") from None
    return datasets.load_from_disk(str(path))


def saved_dataset_splits(path: Path) -> list[str] | None:
    """The split names of a saved DatasetDict, or None for anything else."""
    file = path / "dataset_dict.json"
    if not file.is_file():
        return None
    import json

    return list(json.loads(file.read_text())["splits"])


def _read_saved_dataset(path: Path) -> pd.DataFrame:
    """A saved Dataset (or a DatasetDict of train only) as one frame, for sftune to split."""
    dataset = _load_from_disk(path)
    if hasattr(dataset, "keys"):
        splits = list(dataset.keys())
        if splits != ["train"]:  # (train, validation and test are read as given instead)
            raise DataError(f"{path} holds the splits {splits}: sftune uses a saved DatasetDict "
                            "as given when it has train, validation and test, or splits one "
                            "with only train")
        dataset = dataset["train"]
    return _dataset_frame(dataset)


def _dataset_frame(dataset) -> pd.DataFrame:
    """A ``datasets`` Dataset as a frame; ClassLabel ids become their names, so the export's
    labels read as the dataset's own."""
    frame = dataset.to_pandas()
    for column, feature in dataset.features.items():
        names = getattr(feature, "names", None)
        if names is not None:  # a ClassLabel: ids -> names (-1, "no label", stays missing)
            frame[column] = frame[column].map(lambda i, n=names: n[i] if 0 <= i < len(n)
                                              else None)
    return frame


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
    roles = {"text": cfg.text_column, "label": cfg.label_column}
    if cfg.text_pair_column:
        roles = {"text": cfg.text_column, "text_pair": cfg.text_pair_column, **roles}
    for role, column in roles.items():
        if column not in frame.columns:
            raise DataError(
                f"{path}: {role} column {column!r} not found; columns are {list(frame.columns)} "
                f"(set data.{role}_column)"
            )
    selected = frame[list(roles.values())]
    return selected.set_axis(list(roles), axis=1).reset_index(drop=True)


def validate_frame(frame: pd.DataFrame, source: str, min_classes: int = 2) -> None:
    """Raise :class:`DataError` naming the rows with bad texts or labels, or too few classes."""
    for column in ("text", "text_pair"):
        if column in frame.columns:
            _validate_texts(frame[column], source, "text" if column == "text" else "second text")
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


def _validate_texts(texts: pd.Series, source: str, what: str) -> None:
    not_str = texts[~texts.map(lambda v: isinstance(v, str))].index
    if len(not_str):
        raise DataError(
            f"{source}: {row_numbers(not_str)}: {what} is not a string (missing or non-text)")
    empty = texts[texts.str.strip() == ""].index
    if len(empty):
        raise DataError(f"{source}: {row_numbers(empty)}: {what} is empty")


def load_labeled_frame(cfg: DataConfig) -> tuple[pd.DataFrame, list[str]]:
    """The validated (text, label-id) frame of the configured source, and its label names."""
    if cfg.source in BUILTIN_SOURCES:
        frame, names = _load_rotten_tomatoes(cfg.source), list(ROTTEN_TOMATOES_LABELS)
    else:
        frame = _read_user_file(Path(cfg.source).expanduser(), cfg)
        validate_frame(frame, cfg.source)
        names = sorted(frame["label"].astype(str).unique(), key=_natural_key)
    return _with_label_ids(frame, names), names


def load_given_splits(cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], list[str]] | None:
    """The user's own train/validation/test split (``data.train`` ... files, or a saved
    DatasetDict with those three splits), each validated, with label ids from the training
    split's labels; a label only the other splits have is an error. None: sftune splits."""
    given = _given_frames(cfg)
    if given is None:
        return None
    for name, (where, frame) in given.items():
        validate_frame(frame, where, min_classes=2 if name == "train" else 1)
    names = sorted(given["train"][1]["label"].astype(str).unique(), key=_natural_key)
    for name in ("validation", "test"):
        where, frame = given[name]
        labels = frame["label"].astype(str)
        unknown = labels[~labels.isin(names)].index
        if len(unknown):
            raise DataError(
                f"{where}: {row_numbers(unknown)}: label {labels[unknown[0]]!r} is not among "
                f"the training split's labels {names}"
            )
    return {name: _with_label_ids(frame, names) for name, (_, frame) in given.items()}, names


_SPLITS = ("train", "validation", "test")


def _given_frames(cfg: DataConfig) -> dict[str, tuple[str, pd.DataFrame]] | None:
    """Split name -> (where it came from, its rows) when the user gave the split."""
    if cfg.given_splits():
        return {name: (path, _read_user_file(Path(path).expanduser(), cfg))
                for name, path in cfg.given_splits().items()}
    path = Path(cfg.source).expanduser()
    if cfg.source in BUILTIN_SOURCES or not path.is_dir():
        return None
    if not set(_SPLITS) <= set(saved_dataset_splits(path) or ()):
        return None  # a Dataset, or a DatasetDict of train only: sftune splits it
    saved = _load_from_disk(path)  # once: every split comes from the same DatasetDict
    return {name: (f"{path} [{name}]", _select_columns(_dataset_frame(saved[name]), path, cfg))
            for name in _SPLITS}


def _with_label_ids(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    ids = frame["label"].astype(str).map({n: i for i, n in enumerate(names)})
    return frame.drop(columns="label").assign(label=ids.astype("int64"))


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
