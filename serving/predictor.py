"""Load a checkpoint and classify texts: the model half of the server, with no HTTP and no Ray.

:class:`Predictor` is what a Serve replica holds, and what the dashboard can use to answer locally
when no endpoint is up::

    predictor = Predictor.load(Path("runs/best"))
    predictor.predict(["A charming film."])
    # [{"label": "fresh", "score": 0.93, "probabilities": {"rotten": 0.07, "fresh": 0.93}}]

It cuts each text as the model was trained and tested (the length and the truncation its
``sftune.json`` records, :func:`search.encoding.truncate`), so an answer is what the test
evaluation scored; ``serve.max_tokens`` overrides the length. An export's lexical layer
(:mod:`search.lexical`), when it has one, is applied to every answer as the test evaluation
applied it.

It loads safetensors only (a pickle in the model directory is refused, never read), tokenizes per
call, sorts the texts by length and runs them in chunks so padding stays small, and runs under
``torch.inference_mode``. On a GPU it runs in bfloat16; on a CPU in float32 with a set thread
count.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from search import artifacts
from search.device import resolve_device
from search.encoding import tokenize, truncate
from search.lexical import LEXICAL_FILE, LEXICAL_META, fuse_probs, load_layer
from serving.sizing import default_threads

__all__ = ["CPU_FORWARD_BATCH", "Predictor", "model_id", "padded_shape"]

#: Texts per forward pass on CPU. Measured on 2 cores with MiniLM: batch 8 runs faster per text
#: than 1 (less per-call overhead) and than 32 (whose padding and cache misses cost more).
CPU_FORWARD_BATCH = 8
#: On a GPU every forward's padded width is a multiple of this many tokens (see padded_shape).
GPU_WIDTH_STEP = 32
#: Token cap when neither config nor model says otherwise; BERT-family position tables stop here.
DEFAULT_MAX_TOKENS = 512


def model_id(model_dir: Path) -> str:
    """A short sha256 of the weights (and of the lexical layer, when there is one): two
    deployments answer alike only if these match."""
    digest = hashlib.sha256()
    files = [artifacts.WEIGHTS_FILE, LEXICAL_FILE, LEXICAL_META]
    for path in [Path(model_dir) / name for name in files]:
        if not path.is_file():
            continue
        with open(path, "rb") as handle:
            for block in iter(lambda handle=handle: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def padded_shape(texts: int, width: int, max_width: int = DEFAULT_MAX_TOKENS) -> tuple[int, int]:
    """The (rows, tokens) a GPU forward of ``texts`` texts padded to ``width`` is rounded up to.

    A server sees a new shape with almost every merged batch, and on a GPU a shape's first
    forward pays for kernel plans and autotuning many times over (bench/gpu_shapes.py). Rows
    round up to a power of two and tokens to a multiple of 32, so a replica meets at most a
    hundred-odd shapes and soon has them all; the extra rows and tokens are masked out.
    """
    rows = 1 << (texts - 1).bit_length()
    tokens = -(-width // GPU_WIDTH_STEP) * GPU_WIDTH_STEP
    return rows, max(width, min(tokens, max_width))


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    label_names: list[str]
    meta: dict[str, Any]


def _load(model_dir: Path) -> _Loaded:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    artifacts.verify_safetensors_only(model_dir)  # refuse pickles before transformers sees them
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), local_files_only=True, use_safetensors=True
    )
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    id2label = model.config.id2label
    label_names = [str(id2label[i]) for i in range(len(id2label))]
    return _Loaded(model.eval(), tokenizer, label_names, artifacts.read_meta(model_dir))


class Predictor:
    """A loaded classifier. Build it with :meth:`load`; :meth:`predict` is thread-compatible
    but not meant to be called from several threads at once (one replica, one inference thread).
    """

    def __init__(self, *, model_dir: Path, loaded: _Loaded, device: torch.device, dtype,
                 max_tokens: int, forward_batch_size: int | None) -> None:
        self.model_dir = Path(model_dir)
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.label_names, self.meta = loaded.label_names, loaded.meta
        self.device, self.dtype, self.max_tokens = device, dtype, max_tokens
        #: How an over-long text is cut: as in training and the test evaluation.
        self.truncation = str(self.meta.get("truncation") or "head")
        self.forward_batch_size = forward_batch_size
        self.pad_id = self.tokenizer.pad_token_id or 0
        config = self.model.config
        self._sigmoid = config.problem_type == "multi_label_classification" or len(
            self.label_names) == 1
        self.model_id = model_id(self.model_dir)
        #: Trained on text pairs: predict() takes (text, text_pair) tuples.
        self.pairs = bool(self.meta.get("text_pairs"))
        #: The export's lexical layer (search.lexical), applied as evaluation applied it.
        self.lexical = None if self.pairs or self._sigmoid else load_layer(self.model_dir)
        self.loaded_at = datetime.now(timezone.utc).isoformat(timespec="seconds")

    @classmethod
    def load(cls, model_dir: Path, *, device: str = "auto", bf16: bool = True,
             num_threads: int | None = None, max_tokens: int | None = None,
             forward_batch_size: int | None = None) -> Predictor:
        """Load ``model_dir`` (safetensors only) onto ``device`` (`auto`, `cpu` or `cuda`).

        ``num_threads`` sets torch's intra-op threads on CPU (None:
        :func:`serving.sizing.default_threads`).
        ``forward_batch_size`` caps texts per forward pass (None: 8 on CPU, unlimited on GPU).
        ``max_tokens`` is the length texts are cut to (None: the one the model was trained and
        tested at, from its ``sftune.json``; the model's limit for a checkpoint without one).
        """
        model_dir = Path(model_dir)
        loaded = _load(model_dir)
        target = resolve_device(device, key="serve.device")
        if target.type == "cpu":
            torch.set_num_threads(num_threads or default_threads())
        dtype = torch.bfloat16 if target.type == "cuda" and bf16 else torch.float32
        loaded.model.to(device=target, dtype=dtype)
        limit = max_tokens or _trained_max_tokens(loaded)
        if forward_batch_size is None and target.type == "cpu":
            forward_batch_size = CPU_FORWARD_BATCH
        return cls(model_dir=model_dir, loaded=loaded, device=target, dtype=dtype,
                   max_tokens=limit, forward_batch_size=forward_batch_size)

    def predict(self, texts: list[str] | list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Label, score and every label's probability for each text (each (text, text_pair)
        for a pair model), in input order."""
        if not texts:
            return []
        encoded = self._tokenize(texts)
        ids, types = encoded["input_ids"], encoded.get("token_type_ids")
        probs = np.empty((len(texts), len(self.label_names)), dtype=np.float64)
        # Sorting by length puts similar lengths in one chunk, so little compute goes to padding.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        step = self.forward_batch_size or len(order)
        for start in range(0, len(order), step):
            chunk = order[start:start + step]
            probs[chunk] = self._forward([ids[i] for i in chunk],
                                         None if types is None else [types[i] for i in chunk])
        return [self._answer(row) for row in fuse_probs(probs, texts, self.lexical)]

    def _tokenize(self, texts) -> dict[str, list[list[int]]]:
        if not self.pairs:  # as in training: tokenized whole, then cut (head or head+tail)
            return {"input_ids": [truncate(ids, self.max_tokens, self.truncation)
                                  for ids in tokenize(self.tokenizer, texts)]}
        # As in training: the tokenizer joins the two texts and cuts the longer one first.
        firsts, seconds = zip(*texts, strict=True)
        return self.tokenizer(list(firsts), list(seconds), truncation="longest_first",
                              max_length=self.max_tokens, return_attention_mask=False)

    def _forward(self, sequences: list[list[int]],
                 segments: list[list[int]] | None = None) -> np.ndarray:
        rows, width = len(sequences), max(len(s) for s in sequences)
        if self.device.type == "cuda":
            rows, width = padded_shape(rows, width, self.max_tokens)
        input_ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((rows, width), dtype=torch.long)
        mask[len(sequences):, 0] = 1  # filler rows attend to one token: no all-masked softmax
        for row, seq in enumerate(sequences):
            input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        inputs = {"input_ids": input_ids, "attention_mask": mask}
        if segments is not None:  # text pairs on a model with segment ids
            inputs["token_type_ids"] = torch.zeros((rows, width), dtype=torch.long)
            for row, seg in enumerate(segments):
                inputs["token_type_ids"][row, : len(seg)] = torch.tensor(seg, dtype=torch.long)
        with torch.inference_mode():
            logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()}
                                ).logits.float()
        scores = logits[: len(sequences)]
        scores = scores.sigmoid() if self._sigmoid else scores.softmax(-1)
        return scores.cpu().numpy()

    def _answer(self, row: np.ndarray) -> dict[str, Any]:
        best = int(row.argmax())
        return {
            "label": self.label_names[best],
            "score": float(row[best]),
            "probabilities": dict(zip(self.label_names, map(float, row), strict=True)),
        }

    def info(self) -> dict[str, Any]:
        """What is loaded, from ``sftune.json`` plus this process: the body of ``GET /model``."""
        meta = self.meta
        return {
            "trial_id": meta.get("trial_id"),
            "model_id": self.model_id,
            "model_dir": str(self.model_dir),
            "label_names": list(self.label_names),
            "params": meta.get("params") or {},
            "val_metrics": _val_metrics(meta.get("metrics") or {}),
            "test_metrics": meta.get("test") or meta.get("test_metrics"),
            "lexical_weight": self.lexical.weight if self.lexical else 0.0,
            "loaded_at": self.loaded_at,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
        }


def _val_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k.startswith("val_") or k in ("epoch", "score")}


def _trained_max_tokens(loaded: _Loaded) -> int:
    """The length the model was trained and tested at (``sftune.json``), within its limit."""
    limit = _model_max_tokens(loaded.model, loaded.tokenizer)
    return min(int(loaded.meta.get("max_length") or limit), limit)


def _model_max_tokens(model, tokenizer) -> int:
    limits = [DEFAULT_MAX_TOKENS, getattr(model.config, "max_position_embeddings", None),
              getattr(tokenizer, "model_max_length", None)]
    return min(int(v) for v in limits if isinstance(v, int) and v > 0)
