"""Merge model batches that queue behind a busy forward pass into one larger forward.

``@serve.batch`` forms a batch from the requests that arrive within its wait window, and it keeps
forming batches while the model is busy: under load they pile up as many small batches, each
waiting for the one before. :class:`Coalescer` runs them on one inference thread and, whenever that
thread frees up, takes *every* batch queued meanwhile (up to ``max_texts`` texts) into the next
forward. A busy replica thus runs few large forwards, the way continuous batching servers do,
and an idle one still answers a lone request at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["Coalescer"]

Requests = list[list[str]]
Answers = list[list[Any]]


class Coalescer:
    """Runs ``run(requests) -> answers`` (one answer list per request) on a single thread."""

    def __init__(self, run: Callable[[Requests], Answers], *, max_texts: int) -> None:
        self._run, self.max_texts = run, max_texts
        # One thread: torch already uses every core it was given; two forwards at once would
        # only fight over them.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sftune-infer")
        self._pending: deque[tuple[Requests, asyncio.Future]] = deque()
        self._worker: asyncio.Task | None = None

    async def submit(self, requests: Requests) -> Answers:
        """Answers for ``requests``, computed in the next forward that has room for them."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((requests, future))
        worker = self._worker
        if worker is None or worker.done() or worker.get_loop() is not loop:
            self._worker = loop.create_task(self._drain())
        return await future

    def _take(self) -> list[tuple[Requests, asyncio.Future]]:
        """The oldest queued batches that fit in ``max_texts`` (always at least one)."""
        taken, count = [], 0
        while self._pending:
            size = sum(len(texts) for texts in self._pending[0][0])
            if taken and count + size > self.max_texts:
                break
            taken.append(self._pending.popleft())
            count += size
        return [(requests, future) for requests, future in taken if not future.cancelled()]

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            taken = self._take()
            if not taken:
                continue
            merged = [texts for requests, _ in taken for texts in requests]
            try:
                answers = await loop.run_in_executor(self._executor, self._run, merged)
            except Exception as error:  # every caller of this forward gets the error
                for _, future in taken:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for requests, future in taken:
                if not future.done():
                    future.set_result(answers[start:start + len(requests)])
                start += len(requests)
