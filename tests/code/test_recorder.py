"""The Ray-free core: the recorder turns trial events into the results table, and the results
format reads back. No Ray runs here: the events are fed as Tune's callback would."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from search.recorder import ResultsRecorder
from search.results import (
    StopReason,
    best_trial,
    read_trials,
    recorded_test_metrics,
    summarize_trials,
)

DEFAULT = {"lr": 1e-4, "dropout": 0.1}
FIXED = {"alpha": 300.0, "frozen_depth": 0, "weight_decay": 0.01, "joint_epochs": 0}


def _result(examples: int, accuracy: float, score: float, reason: str = StopReason.RUNNING):
    return {"epoch": examples / 100, "examples": examples, "val_accuracy": accuracy,
            "score": score, "stop_reason": reason, "train_task_loss": 0.5}


@pytest.fixture
def recorder(tmp_path):
    return ResultsRecorder(experiment_dir=str(tmp_path), keep_checkpoints=1, fixed=FIXED,
                           default=DEFAULT, flush_interval_s=0.0)


def _checkpoint(tmp_path, name: str) -> str:
    path = tmp_path / "ckpt" / name
    path.mkdir(parents=True)
    return str(path)


def test_events_become_rows_with_their_stop_reasons(recorder, tmp_path):
    recorder.on_result("a", DEFAULT, _result(50, 0.70, 0.70))
    recorder.on_result("a", DEFAULT, _result(100, 0.75, 0.75, StopReason.COMPLETED))
    recorder.on_complete("a")
    recorder.on_result("b", {"lr": 2e-4, "dropout": 0.0}, _result(50, 0.60, 0.60))
    recorder.on_complete("b")  # ended while still running: the scheduler cut it
    recorder.on_error("c", {"lr": 3e-4, "dropout": 0.0}, "CUDA out of memory")  # no row yet
    frame = read_trials(tmp_path)
    last = frame.groupby("trial_id").tail(1).set_index("trial_id")
    assert last.loc["a", "stop_reason"] == StopReason.COMPLETED
    assert last.loc["b", "stop_reason"] == StopReason.ASHA_STOPPED
    assert last.loc["c", "stop_reason"] == StopReason.ERROR
    assert last.loc["c", "error"] == "CUDA out of memory" and last.loc["c", "status"] == "ERROR"
    assert frame[frame["trial_id"] == "a"]["default_point"].all()
    assert not frame[frame["trial_id"] == "b"]["default_point"].any()
    assert (frame["alpha"] == 300.0).all()  # fixed values fill the unsearched columns
    assert set(frame["stop_reason"]) <= {StopReason.RUNNING, *StopReason.TERMINAL}


def test_trials_still_running_when_the_budget_ends_say_so(recorder, tmp_path):
    recorder.on_result("done", DEFAULT, _result(100, 0.7, 0.7, StopReason.COMPLETED))
    recorder.on_complete("done")
    recorder.on_result("slow", {"lr": 2e-4, "dropout": 0.0}, _result(50, 0.6, 0.6))
    recorder.on_budget_end(["done", "slow"])
    recorder.flush(force=True)
    last = read_trials(tmp_path).groupby("trial_id").tail(1).set_index("trial_id")
    assert last.loc["done", "stop_reason"] == StopReason.COMPLETED  # its own end is kept
    assert last.loc["slow", "stop_reason"] == StopReason.BUDGET_STOPPED
    assert last.loc["slow", "status"] == "TERMINATED"


def test_only_the_top_trials_and_the_default_keep_checkpoints(recorder, tmp_path):
    paths = {}
    for trial, config, score in (("dflt", DEFAULT, 0.70), ("top", {"lr": 2e-4, "dropout": 0},
                                                           0.80),
                                 ("low", {"lr": 5e-5, "dropout": 0}, 0.60)):
        recorder.on_result(trial, config, _result(100, score, score, StopReason.COMPLETED))
        paths[trial] = _checkpoint(tmp_path, trial)
        recorder.on_checkpoint(trial, paths[trial])
        recorder.on_complete(trial)
    summary = summarize_trials(read_trials(tmp_path)).set_index("trial_id")
    assert summary.loc["top", "checkpoint"] == paths["top"]  # keep_checkpoints=1
    assert summary.loc["dflt", "checkpoint"] == paths["dflt"]  # the tuning gain's baseline
    assert pd.isna(summary.loc["low", "checkpoint"])
    assert not (tmp_path / "ckpt" / "low").exists()


def test_the_final_trial_is_the_best_and_a_resumed_recorder_keeps_the_rows(recorder,
                                                                           tmp_path):
    recorder.on_result("s1", DEFAULT, _result(100, 0.80, 0.80, StopReason.COMPLETED))
    recorder.on_complete("s1")
    recorder.phase = "final"
    recorder.on_result("f", DEFAULT, _result(300, 0.78, 0.78, StopReason.COMPLETED))
    recorder.on_complete("f")
    assert best_trial(read_trials(tmp_path))["trial_id"] == "f"  # final beats a search score
    again = ResultsRecorder(experiment_dir=str(tmp_path), keep_checkpoints=1, fixed=FIXED)
    again.load_existing()
    again.on_result("s2", {"lr": 2e-4, "dropout": 0.0}, _result(100, 0.7, 0.7))
    assert set(read_trials(tmp_path)["trial_id"]) == {"s1", "f", "s2"}


def test_recorded_test_metrics_are_per_trial_and_unusable_records_are_none():
    meta = {"test": {"t1": {"test_accuracy": 0.9, "test_examples": 40},
                     "t2": {"test_accuracy": float("nan")}}}
    assert recorded_test_metrics(meta, "t1") == {"test_accuracy": 0.9, "test_examples": 40}
    assert recorded_test_metrics(meta, "t2") is None
    assert recorded_test_metrics(meta, "t3") is None
    assert recorded_test_metrics({"test": None}, "t1") is None


def _imported(statement: str) -> list[str]:
    code = (f"import sys; {statement}; "
            "print(sorted(m for m in ('ray', 'torch') if m in sys.modules))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split()


def test_the_ray_free_core_imports_no_ray():
    # The results side (what `sftune results` and the dashboard use) needs neither.
    assert _imported("import search.recorder, search.results, search.space") == ["[]"]
    # The budget policy reads the data's sizes (search.data: numpy and pandas, no torch since
    # batching has its own module) and needs neither.
    assert _imported("import search.budget") == ["[]"]
    # Batching is where torch comes in.
    assert _imported("import search.batching") == ["['torch']"]
