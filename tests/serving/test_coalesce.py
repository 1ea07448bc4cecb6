"""The coalescer: batches queued behind a busy forward are merged into the next one."""

from __future__ import annotations

import asyncio
import threading

import pytest

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


def test_batches_queued_while_busy_merge_into_one_forward():
    model = RecordingModel()
    coalescer = Coalescer(model, max_texts=64)

    async def scenario():
        model.release.clear()
        first = asyncio.create_task(coalescer.submit([["first"]]))
        await _until_running(model)
        queued = [asyncio.create_task(coalescer.submit([[f"t{i}"]])) for i in range(5)]
        await asyncio.sleep(0.01)
        model.release.set()
        return await first, await asyncio.gather(*queued)

    first, queued = asyncio.run(scenario())
    assert first == [["FIRST"]]
    assert queued == [[[f"T{i}"]] for i in range(5)]  # each caller gets its own answers
    assert [len(f) for f in model.forwards] == [1, 5]  # 5 waiting batches, one forward


def test_a_merged_forward_never_exceeds_max_texts():
    model = RecordingModel()
    coalescer = Coalescer(model, max_texts=4)

    async def scenario():
        model.release.clear()
        first = asyncio.create_task(coalescer.submit([["x"]]))
        await _until_running(model)
        queued = [asyncio.create_task(coalescer.submit([["a", "b", "c"]])) for _ in range(3)]
        queued.append(asyncio.create_task(coalescer.submit([["d"]])))
        await asyncio.sleep(0.01)
        model.release.set()
        await first
        return await asyncio.gather(*queued)

    answers = asyncio.run(scenario())
    assert answers[-1] == [["D"]]
    sizes = [sum(len(texts) for texts in forward) for forward in model.forwards]
    assert max(sizes) <= 4 and sum(sizes) == 1 + 9 + 1


def test_an_error_reaches_every_caller_of_that_forward_and_the_next_one_runs():
    model = RecordingModel()
    coalescer = Coalescer(model, max_texts=64)

    async def scenario():
        model.release.clear()
        first = asyncio.create_task(coalescer.submit([["ok"]]))
        await _until_running(model)
        doomed = [asyncio.create_task(coalescer.submit([[text]])) for text in ("boom", "fine")]
        await asyncio.sleep(0.01)
        model.release.set()
        results = await asyncio.gather(first, *doomed, return_exceptions=True)
        return results, await coalescer.submit([["later"]])

    (first, *doomed), after = asyncio.run(scenario())
    assert first == [["OK"]]
    # "fine" shared the forward of "boom", so it gets the same error, with the reason
    assert [str(error) for error in doomed] == ["out of memory", "out of memory"]
    assert after == [["LATER"]]  # the coalescer keeps serving after a failed forward


def test_a_cancelled_caller_is_skipped_and_others_still_answered():
    model = RecordingModel()
    coalescer = Coalescer(model, max_texts=64)

    async def scenario():
        model.release.clear()
        first = asyncio.create_task(coalescer.submit([["first"]]))
        await _until_running(model)
        gone = asyncio.create_task(coalescer.submit([["gone"]]))
        kept = asyncio.create_task(coalescer.submit([["kept"]]))
        await asyncio.sleep(0.01)
        gone.cancel()
        model.release.set()
        await first
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await kept

    assert asyncio.run(scenario()) == [["KEPT"]]
    assert [["gone"]] not in model.forwards and [["kept"]] in model.forwards
