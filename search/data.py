"""The data a sweep trains on, prepared once: load and validate (:mod:`search.sources`), split
(:mod:`search.splits`), tokenize and truncate (:mod:`search.encoding`). Batching is
:mod:`search.batching`.

The result of :func:`prepare_data` is plain numpy (a flat token array plus offsets per split), so
a sweep can put it in Ray's object store once and every trial reads it without copying or
re-tokenizing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from search.config import DataConfig
from search.encoding import (
    EncodedSplit,
    choose_max_length,
    encode_pairs,
    encode_texts,
    model_max_length,
    sample_split,
    tokenize,
)
from search.sources import load_given_splits, load_labeled_frame, read_unlabeled
from search.splits import (
    SplitFrames,
    fingerprint_frames,
    row_keys,
    split_frame,
    subsample_frame,
)

__all__ = ["PreparedData", "load_splits", "prepare_data", "subset"]

_SPLITS = ("train", "validation", "test")


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
    #: A 64-bit hash of each row's text(s) per split, in split order: which examples a model
    #: trained and was selected on (a re-tune tests the served model only on rows it never saw).
    row_keys: dict[str, np.ndarray] = field(default_factory=dict)


def load_splits(cfg: DataConfig, seed: int | None = None) -> tuple[SplitFrames, list[str]]:
    """The labelled rows of each split (text, [text_pair,] label id) and the label names:
    loaded, validated, split (or the user's own splits) and subsampled, not tokenized."""
    given = load_given_splits(cfg)
    if given is not None:  # the user's own split: used as given
        frames, names = given
        splits = SplitFrames(**frames)
    else:
        frame, names = load_labeled_frame(cfg)
        splits = split_frame(frame, cfg, names)
    seed = cfg.split_seed if seed is None else seed
    return SplitFrames(
        train=subsample_frame(splits.train, cfg.max_train_examples, seed),
        validation=subsample_frame(splits.validation, cfg.max_eval_examples, seed),
        test=subsample_frame(splits.test, cfg.max_eval_examples, seed),
    ), names


def prepare_data(cfg: DataConfig, tokenizer, seed: int | None = None) -> PreparedData:
    """Load, validate, split, subsample and tokenize the configured data exactly once."""
    splits, names = load_splits(cfg, seed)
    token_ids = {name: tokenize(tokenizer, *_texts(getattr(splits, name))) for name in _SPLITS}
    train_lengths = np.array([len(ids) for ids in token_ids["train"]])
    max_length = cfg.max_length or choose_max_length(train_lengths, model_max_length(tokenizer))
    encoded = {name: _encode(tokenizer, getattr(splits, name), token_ids[name], max_length,
                             cfg.truncation) for name in _SPLITS}
    truncation = "longest_first" if cfg.text_pair_column else cfg.truncation
    unlabeled = None
    if cfg.unlabeled_path:
        unlabeled = encode_texts(tokenizer, read_unlabeled(cfg.unlabeled_path), max_length,
                                 truncation=cfg.truncation)
    return PreparedData(
        **encoded,
        label_names=names,
        fingerprint=fingerprint_frames(splits, names, _encoding_key(max_length, truncation)),
        pad_id=int(tokenizer.pad_token_id),
        mask_id=int(tokenizer.mask_token_id),
        special_ids=sorted(set(tokenizer.all_special_ids)),
        vocab_size=len(tokenizer),
        unlabeled=unlabeled,
        sizes={k: len(v) for k, v in encoded.items()},
        max_length=max_length,
        truncation=truncation,
        truncated_share=float(np.mean(train_lengths > max_length)),
        row_keys={name: row_keys(getattr(splits, name)) for name in _SPLITS},
    )


def _texts(frame) -> tuple:
    """The texts of a split frame, and the second texts of pairs when it has them."""
    return (frame["text"], frame["text_pair"]) if "text_pair" in frame.columns \
        else (frame["text"],)


def _encode(tokenizer, frame, token_ids, max_length: int, truncation: str) -> EncodedSplit:
    if "text_pair" in frame.columns:  # pairs are re-tokenized to be cut longest-first
        return encode_pairs(tokenizer, frame["text"], frame["text_pair"], max_length,
                            frame["label"])
    return encode_texts(tokenizer, None, max_length, frame["label"], truncation,
                        token_ids=token_ids)


def _encoding_key(max_length: int, truncation: str) -> str:
    # Head truncation keeps the bare length, so fingerprints of earlier sweeps still match.
    return str(max_length) if truncation == "head" else f"{max_length}-{truncation}"


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
    # Row keys name the full splits' rows (what a sweep records); a slice does not carry them.
    return replace(data, **parts, sizes=sizes, fingerprint=fingerprint, row_keys={})
