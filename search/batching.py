"""Batches over an encoded split: dynamic padding, and length-grouped shuffling so little
compute goes to padding."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from search.encoding import EncodedSplit

__all__ = ["collate", "encoder_inputs", "iter_batches", "length_grouped_order", "micro_batches"]


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
    if split.segments is not None:  # text pairs: segment 1 from the second text's first token
        starts = torch.from_numpy(split.segments[indices])[:, None]
        out["token_type_ids"] = (torch.arange(batch.shape[1]) >= starts).long() \
            * out["attention_mask"]
    if split.labels is not None:
        out["labels"] = torch.from_numpy(split.labels[indices])
    return out


def encoder_inputs(batch: dict[str, torch.Tensor], device: torch.device | None = None
                   ) -> dict[str, torch.Tensor]:
    """The model's inputs in a batch (segment ids only for text pairs), on ``device``."""
    names = ("input_ids", "attention_mask", "token_type_ids")
    return {n: batch[n] if device is None else batch[n].to(device) for n in names if n in batch}


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
    max_tokens: int | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches over a split.

    ``shuffle`` draws a random order; with ``by_length`` too, batches are length-grouped
    (:func:`length_grouped_order`). ``by_length`` alone sorts (for eval) so padding stays small.
    ``max_tokens`` caps a batch's padded size (rows x longest row): a batch of long texts then
    holds fewer rows (for evaluation, where the batch's composition does not change the result).
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
    start, lengths = 0, split.lengths
    while start < len(order):
        stop = start + _rows_that_fit(lengths[order[start : start + batch_size]], max_tokens)
        yield collate(split, order[start:stop], pad_id)
        start = stop


def _rows_that_fit(lengths: np.ndarray, max_tokens: int | None) -> int:
    """How many of the leading rows fit in ``max_tokens`` padded tokens (at least one)."""
    if max_tokens is None:
        return len(lengths)
    padded = np.arange(1, len(lengths) + 1) * np.maximum.accumulate(lengths)
    return max(1, int(np.sum(padded <= max_tokens)))


def micro_batches(batch: dict[str, torch.Tensor], max_tokens: int | None
                  ) -> list[dict[str, torch.Tensor]]:
    """One training batch cut into row slices of at most ``max_tokens`` padded tokens, each
    trimmed to its own longest row; their gradients, weighted by rows, add up to the batch's.
    Long texts then fit in memory at the same effective batch size."""
    rows, width = batch["input_ids"].shape
    if max_tokens is None or rows * width <= max_tokens:
        return [batch]
    per_part = max(1, max_tokens // width)
    parts = []
    for start in range(0, rows, per_part):
        part = {k: v[start : start + per_part] for k, v in batch.items()}
        longest = int(part["attention_mask"].sum(1).max())
        parts.append({k: v[:, :longest] if v.dim() == 2 else v for k, v in part.items()})
    return parts
