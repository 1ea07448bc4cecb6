"""Labelled text data: load, validate, split, tokenize once, and batch with dynamic padding.

The result of :func:`prepare_data` is plain numpy (a flat token array plus offsets per split), so
a sweep can put it in Ray's object store once and every trial reads it without copying or
re-tokenizing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from search import assets
from search.config import DataConfig

__all__ = [
    "DataError",
    "EncodedSplit",
    "PreparedData",
    "iter_batches",
    "length_grouped_order",
    "load_labeled_frame",
    "prepare_data",
    "sample_split",
    "split_frame",
    "subset",
]

BUILTIN_SOURCES = tuple(assets.DATA_FILES)
#: Rotten-tomatoes label order: index 0 is the negative class, so "positive" reads as 1.
ROTTEN_TOMATOES_LABELS = ("rotten", "fresh")
_MAX_ROWS_SHOWN = 10
_SPLITS = ("train", "validation", "test")


class DataError(ValueError):
    """The dataset cannot be used; the message says which rows and why."""


def _rows(index: pd.Index | list[int]) -> str:
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
        if suffix.startswith(".csv"):
            # Text read as str with no NA guessing, so an empty cell is "" and reported as empty.
            frame = pd.read_csv(path, dtype={cfg.text_column: str}, keep_default_na=False)
        elif suffix.startswith((".jsonl", ".json")):
            frame = pd.read_json(path, lines=True, dtype=False)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            raise DataError(
                f"{path}: unsupported file type {suffix!r}; use .csv, .jsonl or .parquet"
            )
    except (ValueError, pd.errors.ParserError, OSError) as err:
        if isinstance(err, DataError):
            raise
        if isinstance(err, pd.errors.EmptyDataError):
            raise DataError(f"{path} is empty") from None
        raise DataError(f"{path} could not be read: {err}") from None
    return _select_columns(frame, path, cfg)


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


def validate_frame(frame: pd.DataFrame, source: str) -> None:
    """Raise :class:`DataError` naming the rows with bad texts or labels, or too few classes."""
    texts = frame["text"]
    not_str = texts[~texts.map(lambda v: isinstance(v, str))].index
    if len(not_str):
        raise DataError(f"{source}: {_rows(not_str)}: text is not a string (missing or non-text)")
    empty = texts[texts.str.strip() == ""].index
    if len(empty):
        raise DataError(f"{source}: {_rows(empty)}: text is empty")
    labels = frame["label"]
    missing = labels[labels.isna() | (labels.astype(str).str.strip() == "")].index
    if len(missing):
        raise DataError(f"{source}: {_rows(missing)}: label is missing")
    classes = labels.astype(str).unique()
    if len(classes) < 2:
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
    ids = frame["label"].astype(str).map({n: i for i, n in enumerate(names)})
    return pd.DataFrame({"text": frame["text"], "label": ids.astype("int64")}), names


def _natural_key(name: str) -> tuple[int, float | str]:
    # Integer labels sort numerically (2 before 10), so label ids match the user's own ints.
    try:
        return (0, float(name))
    except ValueError:
        return (1, name)


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
                f"class {label_names[label_id]!r} has only {n} row(s) ({_rows(group.index)}); "
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


def _subsample(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """Stratified subsample to at most ``limit`` rows, keeping every class."""
    if limit is None or len(frame) <= limit:
        return frame
    share = limit / len(frame)
    picked = [
        g.sample(n=max(1, round(len(g) * share)), random_state=seed)
        for _, g in frame.groupby("label", sort=True)
    ]
    return pd.concat(picked).sort_index().reset_index(drop=True)


@dataclass(frozen=True)
class EncodedSplit:
    """Token ids of one split, stored flat: example i is ``ids[offsets[i]:offsets[i+1]]``."""

    ids: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def example(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]


@dataclass(frozen=True)
class PreparedData:
    """Everything a trial needs from the data, tokenized once per sweep."""

    train: EncodedSplit
    validation: EncodedSplit
    test: EncodedSplit
    label_names: list[str]
    fingerprint: str
    pad_id: int
    mask_id: int
    special_ids: list[int]
    vocab_size: int
    unlabeled: EncodedSplit | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    max_length: int = 512  # tokens per example after truncation (data.max_length or data-aware)
    truncation: str = "head"
    truncated_share: float = 0.0  # share of training texts longer than max_length


def _truncate(ids: list[int], max_length: int, truncation: str) -> list[int]:
    """Cut one encoded text (with its special tokens at both ends) to ``max_length`` tokens.

    ``head`` keeps the start; ``head_tail`` keeps the first quarter of the budget and the last
    three quarters (Sun et al. 2019, "How to Fine-Tune BERT for Text Classification": the end of
    a long review says most). The first and last special tokens always stay.
    """
    if len(ids) <= max_length:
        return ids
    body = max_length - 2
    if truncation == "head":
        return ids[: body + 1] + ids[-1:]
    head = body // 4
    return ids[: head + 1] + ids[len(ids) - 1 - (body - head):]


def choose_max_length(lengths: np.ndarray, model_limit: int, quantile: float = 0.95) -> int:
    """The data-aware sequence length: the ``quantile`` of token lengths, rounded up to a multiple
    of 8 and capped by the model's limit. Past the 95th percentile each extra token of padding
    budget serves fewer than 1 text in 20, while attention cost grows with the square."""
    wanted = int(np.ceil(np.quantile(lengths, quantile) / 8) * 8)
    return int(min(max(wanted, 8), model_limit))


def model_max_length(tokenizer) -> int:
    """The longest input the model takes (tokenizers without a limit report a huge sentinel)."""
    limit = getattr(tokenizer, "model_max_length", None) or 512
    return int(limit) if limit < 100_000 else 512


def tokenize(tokenizer, texts) -> list[list[int]]:
    """Token ids of each text with its special tokens, untruncated (cut later, once the length
    is chosen, so the data is tokenized only once)."""
    return tokenizer(list(texts), truncation=False)["input_ids"]


def encode_texts(tokenizer, texts, max_length: int, labels=None, truncation: str = "head",
                 *, token_ids: list[list[int]] | None = None) -> EncodedSplit:
    """Tokenize (unless ``token_ids`` are given), truncate and store one split flat."""
    token_ids = tokenize(tokenizer, texts) if token_ids is None else token_ids
    encoded = [_truncate(ids, max_length, truncation) for ids in token_ids]
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.fromiter((t for e in encoded for t in e), dtype=np.int32, count=int(offsets[-1]))
    label_array = None if labels is None else np.asarray(labels, dtype=np.int64)
    return EncodedSplit(ids=ids, offsets=offsets, labels=label_array)


def _read_unlabeled(path: str) -> list[str]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"unlabeled corpus not found: {file}")
    lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise DataError(f"unlabeled corpus {file} has no non-empty lines")
    return lines


def fingerprint_frames(splits: SplitFrames, label_names: list[str], encoding: str) -> str:
    digest = hashlib.sha256(f"{label_names}|{encoding}".encode())
    for name in ("train", "validation", "test"):
        frame = getattr(splits, name)
        digest.update(name.encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def prepare_data(cfg: DataConfig, tokenizer, seed: int | None = None) -> PreparedData:
    """Load, validate, split, subsample and tokenize the configured data exactly once."""
    frame, names = load_labeled_frame(cfg)
    splits = split_frame(frame, cfg, names)
    seed = cfg.split_seed if seed is None else seed
    splits = SplitFrames(
        train=_subsample(splits.train, cfg.max_train_examples, seed),
        validation=_subsample(splits.validation, cfg.max_eval_examples, seed),
        test=_subsample(splits.test, cfg.max_eval_examples, seed),
    )
    token_ids = {name: tokenize(tokenizer, getattr(splits, name)["text"]) for name in _SPLITS}
    train_lengths = np.array([len(ids) for ids in token_ids["train"]])
    max_length = cfg.max_length or choose_max_length(train_lengths, model_max_length(tokenizer))
    encoded = {
        name: encode_texts(tokenizer, None, max_length, getattr(splits, name)["label"],
                           cfg.truncation, token_ids=token_ids[name])
        for name in _SPLITS
    }
    unlabeled = None
    if cfg.unlabeled_path:
        unlabeled = encode_texts(tokenizer, _read_unlabeled(cfg.unlabeled_path), max_length,
                                 truncation=cfg.truncation)
    return PreparedData(
        **encoded,
        label_names=names,
        fingerprint=fingerprint_frames(splits, names, _encoding_key(max_length, cfg.truncation)),
        pad_id=int(tokenizer.pad_token_id),
        mask_id=int(tokenizer.mask_token_id),
        special_ids=sorted(set(tokenizer.all_special_ids)),
        vocab_size=len(tokenizer),
        unlabeled=unlabeled,
        sizes={k: len(v) for k, v in encoded.items()},
        max_length=max_length,
        truncation=cfg.truncation,
        truncated_share=float(np.mean(train_lengths > max_length)),
    )


def _encoding_key(max_length: int, truncation: str) -> str:
    # Head truncation keeps the bare length, so fingerprints of earlier sweeps still match.
    return str(max_length) if truncation == "head" else f"{max_length}-{truncation}"


def _stratified_indices(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` indices, every class in proportion (and at least one of each)."""
    if limit >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = [
        rng.choice(np.flatnonzero(labels == c), size=max(1, round(np.sum(labels == c) * limit
                                                                     / len(labels))),
                   replace=False)
        for c in np.unique(labels)
    ]
    return np.sort(np.concatenate(picked))


def select(split: EncodedSplit, indices: np.ndarray) -> EncodedSplit:
    """The examples ``indices`` of a split, as a new flat split."""
    lengths = split.lengths[indices]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.concatenate([split.ids[:0]] + [split.example(int(i)) for i in indices])
    labels = None if split.labels is None else split.labels[indices]
    return EncodedSplit(ids=ids, offsets=offsets, labels=labels)


def sample_split(split: EncodedSplit, limit: int | None, seed: int) -> EncodedSplit:
    """A stratified sample of at most ``limit`` examples (the split itself when it is no
    larger)."""
    keep = _stratified_indices(split.labels, limit or len(split), seed)
    return split if len(keep) == len(split) else select(split, keep)


def subset(data: PreparedData, *, train: int | None, validation: int | None,
           seed: int) -> PreparedData:
    """A stratified slice of the training and validation splits (the test split is kept whole):
    the cheap fidelity a search runs at. Its fingerprint differs, so caches never mix the two."""
    parts = {name: sample_split(getattr(data, name), limit, seed)
             for name, limit in (("train", train), ("validation", validation))}
    if all(parts[n] is getattr(data, n) for n in parts):
        return data
    sizes = {**data.sizes, **{n: len(s) for n, s in parts.items()}}
    fingerprint = f"{data.fingerprint}-sub{sizes['train']}x{sizes['validation']}s{seed}"
    return replace(data, **parts, sizes=sizes, fingerprint=fingerprint)


def collate(split: EncodedSplit, indices: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """Pad the chosen examples to the longest of them (dynamic padding)."""
    lengths = split.lengths[indices]
    batch = np.full((len(indices), int(lengths.max())), pad_id, dtype=np.int64)
    for row, i in enumerate(indices):
        batch[row, : lengths[row]] = split.example(int(i))
    input_ids = torch.from_numpy(batch)
    out = {
        "input_ids": input_ids,
        "attention_mask": (torch.arange(batch.shape[1]) < torch.from_numpy(lengths)[:, None])
        .long(),
        "index": torch.from_numpy(np.asarray(indices, dtype=np.int64)),
    }
    if split.labels is not None:
        out["labels"] = torch.from_numpy(split.labels[indices])
    return out


LENGTH_GROUP_BATCHES = 50  # window size, in batches, of length-grouped shuffling


def length_grouped_order(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> np.ndarray:
    """A random order whose batches hold examples of similar length.

    Shuffle, sort each window of ``LENGTH_GROUP_BATCHES`` batches by length, cut it into batches,
    then shuffle the batches. Every example still appears once per epoch in a random batch, but
    a batch pads to a length close to its own examples', so less compute goes to padding (the
    idea of HF's ``LengthGroupedSampler``).
    """
    order = rng.permutation(len(lengths))
    window = batch_size * LENGTH_GROUP_BATCHES
    windows = np.array_split(order, range(window, len(order), window))
    grouped = np.concatenate([w[np.argsort(-lengths[w], kind="stable")] for w in windows])
    batches = np.array_split(grouped, range(batch_size, len(grouped), batch_size))
    return np.concatenate([batches[i] for i in rng.permutation(len(batches))])


def iter_batches(
    split: EncodedSplit,
    batch_size: int,
    pad_id: int,
    *,
    shuffle: bool = False,
    generator: np.random.Generator | None = None,
    by_length: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches over a split.

    ``shuffle`` draws a random order; with ``by_length`` too, batches are length-grouped
    (:func:`length_grouped_order`). ``by_length`` alone sorts (for eval) so padding stays small.
    """
    rng = generator or np.random.default_rng()
    if shuffle and by_length:
        order = length_grouped_order(split.lengths, batch_size, rng)
    elif shuffle:
        order = rng.permutation(len(split))
    elif by_length:
        order = np.argsort(split.lengths, kind="stable")
    else:
        order = np.arange(len(split))
    for start in range(0, len(order), batch_size):
        yield collate(split, order[start : start + batch_size], pad_id)
