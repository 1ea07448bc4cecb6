"""The frozen-prefix activation cache: compute the frozen layers once per example, not per epoch.

With frozen depth k, the embeddings and the bottom k layers are frozen and in eval mode, so their
output on an unmasked example never changes. This module computes the hidden states after layer k
once for every example of the train and validation splits, stores them flat (like
:class:`~search.data.EncodedSplit`: rows ``[total_tokens, hidden]``, example i at
``offsets[i]:offsets[i+1]``), and rebuilds a padded batch from them, so later forward passes run
only layers k..N-1 and the head. At k=N the heads read only the first token, so only that row is
kept per example.

The cache is keyed by :class:`CacheKey` (model, data, k, max_length, dtype, device, attention
implementation). Under a cache directory it is one memory-mapped ``.npy`` per key, shared by the
trials on a node: written under an ``fcntl`` lock, to a temp file moved in place with
``os.replace``, so two trials with the same key never both compute it and no reader sees half a
file. Without a directory the cache lives in the trial's own memory.

The masked-LM loss never uses the cache: its inputs are re-masked every epoch.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from search.atomic import replace_atomically, write_json_atomically
from search.batching import collate, iter_batches
from search.config import AppConfig
from search.data import PreparedData
from search.encoding import EncodedSplit
from search.model import SFTModel

__all__ = [
    "CacheKey",
    "PrefixCache",
    "PrefixCacheError",
    "cache_blocker",
    "estimate_bytes",
    "model_fingerprint",
    "setup_prefix_cache",
]

logger = logging.getLogger("sftune")

#: Files up to this size are hashed by content (config, tokenizer); larger ones (weights) by
#: size and mtime, because hashing hundreds of MB in every trial would cost more than it saves.
_CONTENT_HASH_LIMIT = 1 << 20
#: Examples the start-up self-check compares, cached path against the full forward pass.
_CHECK_EXAMPLES = 8
_SPLITS = ("train", "validation")

AutocastFn = Callable[[], AbstractContextManager]


class PrefixCacheError(RuntimeError):
    """``train.prefix_cache=on`` but the cache cannot apply here; the message says why."""


@dataclass(frozen=True)
class CacheKey:
    """Everything the cached hidden states depend on; equal keys mean equal tensors."""

    model: str  # fingerprint of the model directory (weights, config, tokenizer)
    data: str  # PreparedData.fingerprint: texts, labels, split, max_length
    frozen_depth: int
    max_length: int
    dtype: str  # dtype of the stored hidden states, plus autocast if the prefix ran under it
    device: str  # cpu or cuda: kernels differ in the last bits
    attention: str  # config._attn_implementation (sdpa, eager, ...)

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def model_fingerprint(model_dir: Path) -> str:
    """A stable id of a model directory: small files by content, large ones by size and mtime."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(model_dir).rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(str(path.relative_to(model_dir)).encode())
        if stat.st_size <= _CONTENT_HASH_LIMIT:
            digest.update(path.read_bytes())
        else:
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def cache_blocker(model: SFTModel) -> str | None:
    """Why the prefix cache cannot apply to this model, or None when it can."""
    if model.frozen_depth == 0:
        return "frozen_depth=0: nothing is frozen, so there is no prefix to reuse"
    if getattr(model.encoder.config, "is_decoder", False):
        return "the encoder is configured as a causal decoder; only bidirectional encoders are"
    frozen = model.frozen_modules()
    if any(m.training for module in frozen for m in module.modules()):
        # Dropout in a frozen layer would make its output random: nothing could be reused.
        return "a frozen layer runs in training mode (dropout), so its output is not fixed"
    if any(p.requires_grad for module in frozen for p in module.parameters()):
        return "a frozen-prefix parameter is trainable, so its output would go stale"
    return None


def _first_token_only(model: SFTModel) -> bool:
    # At k=N no layer runs on top of the cache and the heads read only the first token.
    return model.frozen_depth == model.num_layers


def _rows_per_example(split: EncodedSplit, first_only: bool) -> np.ndarray:
    return np.ones(len(split), dtype=np.int64) if first_only else split.lengths


def estimate_bytes(model: SFTModel, data: PreparedData, itemsize: int = 4) -> int:
    """Bytes the cache of this model's frozen depth takes for the train and validation splits."""
    first_only = _first_token_only(model)
    rows = sum(int(_rows_per_example(getattr(data, s), first_only).sum()) for s in _SPLITS)
    return rows * model.classifier.config.hidden_size * itemsize


def _flat_rows(offsets: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The rows of examples ``indices``, concatenated in that order (vectorised ranges)."""
    starts, stops = offsets[indices], offsets[indices + 1]
    lengths = stops - starts
    shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(int(lengths.sum()), dtype=np.int64) + shift


def _pack(hidden: torch.Tensor, mask: torch.Tensor, first_only: bool) -> torch.Tensor:
    """The rows to store for a padded batch: its real tokens in order, or its first tokens."""
    return hidden[:, 0] if first_only else hidden[mask.bool()]


def _unpack(rows: torch.Tensor, mask: torch.Tensor, first_only: bool) -> torch.Tensor:
    """Rebuild a right-padded [B, T, H] batch (or [B, 1, H] of first tokens) from stored rows."""
    if first_only:
        return rows[:, None, :]
    # Padding positions get zeros: they are masked as keys, so real tokens never see them.
    hidden = rows.new_zeros((*mask.shape, rows.shape[-1]))
    hidden[mask.bool()] = rows
    return hidden


@dataclass(frozen=True)
class _SplitView:
    """One split's rows in the shared value array."""

    name: str
    split: EncodedSplit
    offsets: np.ndarray  # row offsets into the value array, len(split) + 1


class PrefixCache:
    """Hidden states after layer k for every train and validation example, found by batch.

    :meth:`lookup` answers only for a batch whose token ids it has verified against the split
    the rows came from, under the autocast state the rows were computed in; anything else (the
    test split, an LM batch, an fp32 call of a bf16 cache) gets None and the caller runs the
    full forward pass. Exactness never rests on a caller passing the right split.
    """

    def __init__(self, *, key: CacheKey, values: np.ndarray, views: list[_SplitView],
                 first_only: bool, dtype: torch.dtype, precision: str, device: torch.device,
                 source: str, seconds: float) -> None:
        self.key, self.values, self.views = key, values, views
        self.first_only, self.dtype, self.device = first_only, dtype, device
        self.precision = precision
        self.source = source  # computed | mapped (another trial computed it) | memory
        self.build_seconds = seconds
        self.hits = self.misses = 0
        # On a GPU the rows live in device memory: gathering there is cheaper than copying a
        # padded batch over PCIe every step. The host copy (mmap) stays the shared original.
        self._table = _to_device(values, dtype, device) if device.type == "cuda" else None

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes)

    def lookup(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The batch's hidden states after layer k on the model's device, or None."""
        found = self._locate(batch)
        if found is None:
            self.misses += 1
            return None
        view, indices, mask = found
        rows_index = _flat_rows(view.offsets, indices)
        self.hits += 1
        if self._table is not None:
            rows = self._table[torch.from_numpy(rows_index).to(self.device)]
            return _unpack(rows, mask.to(self.device), self.first_only)
        rows = _from_numpy(self.values[rows_index], self.dtype)
        return _unpack(rows, mask, self.first_only).to(self.device)

    def _locate(self, batch) -> tuple[_SplitView, np.ndarray, torch.Tensor] | None:
        # Rows computed under bf16 autocast are not what an fp32 caller would compute.
        if "index" not in batch or _autocast_state(self.device) != self.precision:
            return None
        indices = batch["index"].cpu().numpy()
        mask = batch["attention_mask"].cpu()
        lengths = mask.sum(1).numpy()
        # Right padding only: the rows hold each example's tokens from position 0.
        expected_mask = torch.arange(mask.shape[1]) < torch.from_numpy(lengths)[:, None]
        if not torch.equal(mask.bool(), expected_mask):
            return None
        real_ids = batch["input_ids"].cpu()[mask.bool()].numpy()
        for view in self.views:
            split = view.split
            if len(indices) == 0 or indices.min() < 0 or indices.max() >= len(split):
                continue
            if np.array_equal(split.lengths[indices], lengths) and np.array_equal(
                split.ids[_flat_rows(split.offsets, indices)], real_ids
            ):
                return view, indices, mask
        return None


def _to_device(values: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    table = torch.empty(values.shape, dtype=dtype, device=device)
    step = 1 << 16  # rows per copy: bounded host memory while a memory-mapped file streams in
    for start in range(0, len(values), step):
        chunk = np.array(values[start : start + step])  # writable copy for torch.from_numpy
        table[start : start + step] = _from_numpy(chunk, dtype).to(device)
    return table


def _views(data: PreparedData, first_only: bool) -> list[_SplitView]:
    views, base = [], 0
    for name in _SPLITS:
        split = getattr(data, name)
        rows = _rows_per_example(split, first_only)
        offsets = base + np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        views.append(_SplitView(name, split, offsets))
        base = int(offsets[-1])
    return views


class _CannotApply(Exception):
    """The cache cannot serve this trial; the message says why (logged or raised by mode)."""

    def __init__(self, reason: str, level: int = logging.INFO) -> None:
        super().__init__(reason)
        self.level = level  # WARNING where a user would expect the cache to apply


@dataclass(frozen=True)
class _Plan:
    key: CacheKey
    dtype: torch.dtype  # of the hidden states after layer k
    width: int  # hidden size after layer k
    first_only: bool
    precision: str  # _autocast_state() the prefix ran under


# numpy has no bfloat16: such rows are stored as their raw 16 bits and viewed back.
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64,
                 torch.float16: np.float16, torch.bfloat16: np.int16}


def _autocast_state(device: torch.device) -> str:
    """The empty string outside autocast, else e.g. "+autocast-bfloat16" (in the key)."""
    if not torch.is_autocast_enabled(device.type):
        return ""
    return "+autocast-" + str(torch.get_autocast_dtype(device.type)).removeprefix("torch.")


def _to_numpy(rows: torch.Tensor) -> np.ndarray:
    rows = rows.detach().cpu()
    return (rows.view(torch.int16) if rows.dtype == torch.bfloat16 else rows).numpy()


def _from_numpy(rows: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    tensor = torch.from_numpy(rows)
    return tensor.view(torch.bfloat16) if dtype == torch.bfloat16 else tensor


def _self_check(model: SFTModel, data: PreparedData, device: torch.device,
                autocast: AutocastFn, first_only: bool) -> tuple[float, torch.Tensor]:
    """Largest logit gap between the cached path and the full forward pass on a few examples.

    This is what keeps BERT-family generality honest: a head that reads more than the first
    token at k=N, or a model whose forward differs from :meth:`SFTModel.logits_from_layer`,
    shows up here and the trial runs uncached. Eval mode, so no random numbers are drawn.
    """
    batch = collate(data.train, np.arange(min(_CHECK_EXAMPLES, len(data.train))), data.pad_id)
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast():
            full = model.task_logits(ids, mask)
            hidden = model.embed_prefix(ids, mask)
            rebuilt = _unpack(_pack(hidden, mask, first_only), mask, first_only)
            cached = model.logits_from_layer(rebuilt, mask)
    finally:
        model.train(was_training)
    return float((full.float() - cached.float()).abs().max()), hidden


def _plan(model: SFTModel, data: PreparedData, *, cfg: AppConfig, model_dir: Path,
          device: torch.device, autocast: AutocastFn) -> _Plan:
    """The key, dtype and shape of this trial's cache; raises :class:`_CannotApply`."""
    reason = cache_blocker(model)
    if reason is not None:
        raise _CannotApply(reason)
    if data.train.segments is not None:
        raise _CannotApply("text pairs carry segment ids, and the cached prefix is computed from "
                           "token ids alone")
    first_only = _first_token_only(model)
    try:
        gap, hidden = _self_check(model, data, device, autocast, first_only)
    except Exception as err:  # noqa: BLE001 (another family's layers take other arguments)
        raise _CannotApply(
            f"the cached path does not run on this model ({type(err).__name__}: {err}); its "
            "layer wiring is not the BERT-family layout", logging.WARNING,
        ) from None
    if not gap <= 1e-4:
        raise _CannotApply(
            f"on this model the cached path differs from the full forward pass (max logit gap "
            f"{gap:.2e}); its head or layer wiring is not the BERT-family layout",
            logging.WARNING,
        )
    with autocast():
        precision = _autocast_state(device)
    key = CacheKey(
        model=model_fingerprint(model_dir), data=data.fingerprint,
        frozen_depth=model.frozen_depth, max_length=cfg.data.max_length,
        dtype=str(hidden.dtype).split(".")[-1] + precision, device=device.type,
        attention=str(getattr(model.encoder.config, "_attn_implementation", "eager")),
    )
    plan = _Plan(key=key, dtype=hidden.dtype, width=hidden.shape[-1], first_only=first_only,
                 precision=precision)
    needed = estimate_bytes(model, data, itemsize=hidden.element_size())
    budget = cfg.train.prefix_cache_budget_mb * 2**20
    if needed > budget:
        raise _CannotApply(
            f"the cache for key {key.digest()} needs about {needed / 2**20:.1f} MiB, over "
            f"train.prefix_cache_budget_mb={cfg.train.prefix_cache_budget_mb}",
            logging.WARNING,
        )
    return plan


def _fill(values: np.ndarray, model: SFTModel, views: list[_SplitView], *, pad_id: int,
          batch_size: int, device: torch.device, autocast: AutocastFn, first_only: bool,
          max_tokens: int | None = None) -> None:
    """Run the frozen prefix once over every example, writing its rows where they belong."""
    with torch.inference_mode(), autocast():
        for view in views:
            # Sorted by length, so the one-off prefix pass wastes little compute on padding.
            for batch in iter_batches(view.split, batch_size, pad_id, by_length=True,
                                      max_tokens=max_tokens):
                mask = batch["attention_mask"].to(device)
                hidden = model.embed_prefix(batch["input_ids"].to(device), mask)
                rows = _flat_rows(view.offsets, batch["index"].numpy())
                values[rows] = _to_numpy(_pack(hidden, mask, first_only))


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    # flock is released by the kernel when a process dies, so a crashed trial never wedges
    # the others; they find no finished file and compute it themselves.
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _map(stem: Path, key: CacheKey, shape: tuple[int, int], dtype) -> np.ndarray | None:
    """The finished cache file for ``key``, memory-mapped read-only, or None."""
    meta_path, values_path = stem.with_suffix(".json"), stem.with_suffix(".npy")
    if not meta_path.is_file() or not values_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    expected = {"key": asdict(key), "shape": list(shape), "dtype": np.dtype(dtype).str}
    if {k: meta.get(k) for k in expected} != expected:
        return None  # a stale or foreign file under our name: rebuilt under the lock
    return np.load(values_path, mmap_mode="r")


def _write(stem: Path, key: CacheKey, shape: tuple[int, int], dtype, fill) -> None:
    """Compute into a temp file and move it in place; the JSON, written last, marks it done."""
    def write(tmp: str) -> None:
        values = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        fill(values)
        values.flush()
        del values

    replace_atomically(stem.with_suffix(".npy"), write)
    meta = {"key": asdict(key), "shape": list(shape), "dtype": np.dtype(dtype).str,
            "created": time.time(), "torch": torch.__version__}
    write_json_atomically(stem.with_suffix(".json"), meta, indent=1)


def _load_or_build(directory: Path, key: CacheKey, shape: tuple[int, int], dtype,
                   fill: Callable[[np.ndarray], None]) -> tuple[np.ndarray, str]:
    """Map the node's cache file for ``key``, computing it first if no trial has yet."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / key.digest()
    values = _map(stem, key, shape, dtype)
    if values is not None:
        return values, "mapped"
    with _exclusive(stem.with_suffix(".lock")):
        values = _map(stem, key, shape, dtype)  # another trial may have finished meanwhile
        if values is not None:
            return values, "mapped"
        _write(stem, key, shape, dtype, fill)
    return _map(stem, key, shape, dtype), "computed"


def _build(model: SFTModel, data: PreparedData, plan: _Plan, *, cfg: AppConfig,
           cache_dir: Path | None, device: torch.device, autocast: AutocastFn) -> PrefixCache:
    views = _views(data, plan.first_only)
    shape = (int(views[-1].offsets[-1]), plan.width)
    dtype = _NUMPY_DTYPES[plan.dtype]

    def fill(values: np.ndarray) -> None:
        _fill(values, model, views, pad_id=data.pad_id, batch_size=cfg.train.eval_batch_size,
              device=device, autocast=autocast, first_only=plan.first_only,
              max_tokens=cfg.train.max_batch_tokens)

    start = time.perf_counter()
    if cache_dir is None:
        values, source = np.empty(shape, dtype=dtype), "memory"
        fill(values)
    else:
        values, source = _load_or_build(Path(cache_dir), plan.key, shape, dtype, fill)
    return PrefixCache(key=plan.key, values=values, views=views, first_only=plan.first_only,
                       dtype=plan.dtype, precision=plan.precision, device=device, source=source,
                       seconds=time.perf_counter() - start)


def setup_prefix_cache(
    model: SFTModel,
    data: PreparedData,
    *,
    cfg: AppConfig,
    model_dir: Path,
    cache_dir: Path | None,
    device: torch.device,
    autocast: AutocastFn,
) -> PrefixCache | None:
    """The trial's prefix cache as ``train.prefix_cache`` asks, or None for the full path.

    ``cache_dir`` shares the cache between the trials of a node (None keeps it in this trial's
    memory). ``autocast`` is the trainer's own autocast context, so the prefix runs in the
    precision training runs in. With ``on``, a cache that cannot apply raises
    :class:`PrefixCacheError`; with ``auto`` the reason is logged and None returned.
    """
    mode = cfg.train.prefix_cache
    if mode == "off":
        logger.info("prefix cache: off (train.prefix_cache=off); running the full forward pass")
        return None
    try:
        plan = _plan(model, data, cfg=cfg, model_dir=model_dir, device=device, autocast=autocast)
    except _CannotApply as why:
        if mode == "on":
            raise PrefixCacheError(
                f"train.prefix_cache=on, but the frozen-prefix cache cannot apply: {why}. "
                "Set train.prefix_cache=auto (use it where it applies) or off."
            ) from None
        logger.log(why.level, "prefix cache: not used: %s; running the full forward pass", why)
        return None
    cache = _build(model, data, plan, cfg=cfg, cache_dir=cache_dir, device=device,
                   autocast=autocast)
    logger.info(
        "prefix cache: on for frozen_depth=%d (key %s, %.1f MiB, %s in %.2f s)",
        model.frozen_depth, plan.key.digest(), cache.nbytes / 2**20, cache.source,
        cache.build_seconds,
    )
    return cache
