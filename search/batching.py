"""Batches over an encoded split: dynamic padding, and length-grouped shuffling so little
compute goes to padding."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from search.encoding import EncodedSplit

__all__ = ["collate", "iter_batches", "length_grouped_order"]


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
