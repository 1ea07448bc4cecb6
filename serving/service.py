"""What one replica does between HTTP and the model: run merged batches and count them.

:class:`ModelService` wraps a :class:`~serving.predictor.Predictor` with the things the HTTP layer
needs (limits, key hash, ``/model`` and ``/stats`` bodies). Its :meth:`ModelService.predict`
sends each request on its own; the Serve deployment (:mod:`serving.app`) replaces that with a
``@serve.batch`` method that merges concurrent requests. Both go through
:meth:`ModelService.run_batch_async`: the model runs on one dedicated thread, so the event loop
keeps accepting requests, and batches that wait for it are merged (:mod:`serving.coalesce`).
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from serving.coalesce import Coalescer
from serving.predictor import Predictor
from serving.schemas import Limits

__all__ = ["BatchStats", "ModelService"]


@dataclass
class BatchStats:
    """Counts of merged batches; proves (and measures) that dynamic batching happens."""

    replica: str = field(default_factory=lambda: f"pid-{os.getpid()}")
    requests: int = 0
    texts: int = 0
    batches: int = 0
    max_batch_requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, requests: int, texts: int) -> None:
        with self._lock:
            self.requests += requests
            self.texts += texts
            self.batches += 1
            self.max_batch_requests = max(self.max_batch_requests, requests)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            batches = max(self.batches, 1)
            return {
                "replica": self.replica, "requests": self.requests, "texts": self.texts,
                "batches": self.batches, "max_batch_requests": self.max_batch_requests,
                "mean_batch_requests": self.requests / batches,
                "mean_batch_texts": self.texts / batches,
            }


class ModelService:
    """A loaded model plus everything the HTTP layer asks of it."""

    def __init__(self, predictor: Predictor, *, limits: Limits, source: str | None = None,
                 api_key_sha256: str | None = None, request_timeout_s: float = 30.0,
                 test_metrics: dict[str, Any] | None = None,
                 max_batch_texts: int = 64) -> None:
        self.predictor = predictor
        self.test_metrics = test_metrics
        self.limits = limits
        self.source = source
        self.api_key_sha256 = api_key_sha256
        self.request_timeout_s = request_timeout_s
        self.batch_stats = BatchStats()
        #: Seconds the latest merged batch took in the model (None before the first).
        self.last_forward_s: float | None = None
        self._coalescer = Coalescer(self.run_batch, max_texts=max_batch_texts)

    def run_batch(self, requests: list[list[str]]) -> list[list[dict[str, Any]]]:
        """Predict a merged batch (one list of texts per request) and split the answers back."""
        flat = [text for texts in requests for text in texts]
        began = time.perf_counter()
        answers = self.predictor.predict(flat)
        self.last_forward_s = time.perf_counter() - began
        self.batch_stats.record(len(requests), len(flat))
        out, start = [], 0
        for texts in requests:
            out.append(answers[start:start + len(texts)])
            start += len(texts)
        return out

    async def run_batch_async(self, requests: list[list[str]]) -> list[list[dict[str, Any]]]:
        """:meth:`run_batch` on the inference thread, merged with batches queued behind it."""
        return await self._coalescer.submit(requests)

    async def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        """One request on its own (no merging); the Serve deployment overrides this."""
        return (await self.run_batch_async([texts]))[0]

    def model_info(self) -> dict[str, Any]:
        """The body of ``GET /model``: the checkpoint's own record, completed by the caller's."""
        info = self.predictor.info()
        info["source"] = self.source or self.predictor.meta.get("sweep")
        if info["test_metrics"] is None:
            info["test_metrics"] = self.test_metrics
        return info

    def stats(self) -> dict[str, Any]:
        return {**self.batch_stats.snapshot(), **self._memory()}

    def _memory(self) -> dict[str, float | None]:
        # Peaks since the replica started: what to size replicas and GPUs by.
        gpu = None
        if self.predictor.device.type == "cuda":
            import torch

            gpu = torch.cuda.max_memory_allocated(self.predictor.device) / 2**20
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
        return {"peak_rss_mib": rss, "gpu_peak_mib": gpu}
