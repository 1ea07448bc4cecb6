"""The coalescer: batches queued behind a busy forward are merged into the next one."""

from __future__ import annotations

import asyncio
import threading

from serving.coalesce import Coalescer


class RecordingModel:
    """Answers each text with its upper case and records every forward. ``release`` holds a
    forward busy; a text starting with "boom" makes its forward raise."""

    def __init__(self) -> None:
        self.forwards: list[list[list[str]]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, requests: list[list[str]]) -> list[list[str]]:
        self.started.set()
        self.release.wait(5)
        self.forwards.append(requests)
        if any(text.startswith("boom") for texts in requests for text in texts):
            raise RuntimeError("out of memory")
        return [[text.upper() for text in texts] for texts in requests]


async def _until_running(model: RecordingModel) -> None:
    """Wait until the first forward is inside the model (and held there by ``release``)."""
    while not model.started.is_set():
        await asyncio.sleep(0.001)


def test_a_lone_batch_runs_at_once_and_answers_in_order():
    model = RecordingModel()
    coalescer = Coalescer(model, max_texts=64)
    answers = asyncio.run(coalescer.submit([["a", "b"], ["c"]]))
    assert answers == [["A", "B"], ["C"]]
    assert model.forwards == [[["a", "b"], ["c"]]]


async def _queued_behind_busy_forward(coalescer: Coalescer, model: RecordingModel,
                                      batches: list, cancel: tuple[int, ...] = ()):
    """Hold a first forward busy, submit ``batches`` meanwhile (cancelling those at ``cancel``),
    then let the model run. Returns the first answer and a result or exception per batch."""
    model.release.clear()
    first = asyncio.create_task(coalescer.submit([["first"]]))
    await _until_running(model)
    queued = [asyncio.create_task(coalescer.submit(batch)) for batch in batches]
    await asyncio.sleep(0.01)  # every batch now waits in the coalescer
    for index in cancel:
        queued[index].cancel()
    model.release.set()
    return await first, await asyncio.gather(*queued, return_exceptions=True)


def test_batches_queued_while_busy_merge_into_one_forward():
    model = RecordingModel()
    coalescer = Coalescer(model, max_texts=64)
    batches = [[[f"t{i}"]] for i in range(5)]
    first, queued = asyncio.run(_queued_behind_busy_forward(coalescer, model, batches))
    assert first == [["FIRST"]]
    assert queued == [[[f"T{i}"]] for i in range(5)]  # each caller gets its own answers
    assert [len(f) for f in model.forwards] == [1, 5]  # 5 waiting batches, one forward


def test_a_merged_forward_never_exceeds_max_texts():
    model = RecordingModel()
    coalescer = Coalescer(model, max_texts=4)
    batches = [[["a", "b", "c"]]] * 3 + [[["d"]]]
    _, answers = asyncio.run(_queued_behind_busy_forward(coalescer, model, batches))
    assert answers[-1] == [["D"]]
    sizes = [sum(len(texts) for texts in forward) for forward in model.forwards]
    assert max(sizes) <= 4 and sum(sizes) == 1 + 9 + 1


def test_an_error_reaches_every_caller_of_that_forward_and_the_next_one_runs():
    model = RecordingModel()
    coalescer = Coalescer(model, max_texts=64)
    batches = [[["boom"]], [["fine"]]]
    first, doomed = asyncio.run(_queued_behind_busy_forward(coalescer, model, batches))
    assert first == [["FIRST"]]
    # "fine" shared the forward of "boom", so it gets the same error, with the reason
    assert [str(error) for error in doomed] == ["out of memory", "out of memory"]
    after = asyncio.run(coalescer.submit([["later"]]))
    assert after == [["LATER"]]  # the coalescer keeps serving after a failed forward


def test_a_cancelled_caller_is_skipped_and_others_still_answered():
    model = RecordingModel()
    coalescer = Coalescer(model, max_texts=64)
    batches = [[["gone"]], [["kept"]]]
    _, (gone, kept) = asyncio.run(
        _queued_behind_busy_forward(coalescer, model, batches, cancel=(0,)))
    assert isinstance(gone, asyncio.CancelledError)
    assert kept == [["KEPT"]]
    assert [["gone"]] not in model.forwards and [["kept"]] in model.forwards
