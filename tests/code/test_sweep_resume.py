"""A sweep driver SIGKILLed mid-sweep resumes with `--resume` and loses no finished trial."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from search.results import read_trials, summarize_trials

pytestmark = pytest.mark.slow
NUM_SAMPLES = 5


def _write_config(path: Path, model_dir: Path, data: Path, storage: Path) -> Path:
    config = {
        "model": {"name": str(model_dir)},
        "data": {"source": str(data), "max_length": 16},
        "train": {"epochs": 3, "batch_size": 8, "patience": 5},
        "space": {"alpha": 1, "lr": {"low": 0.0005, "high": 0.005, "log": True},
                  "frozen_depth": {"low": 0, "high": 2}, "dropout": 0.0, "weight_decay": 0.01},
        "tune": {"num_samples": NUM_SAMPLES, "max_concurrent_trials": 1, "num_cpus": 2,
                 "storage_path": str(storage), "optuna_db": False,
                 "finalists": 0},  # the search's resume is under test; finalists resume too
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _sweep(config: Path, *args: str) -> subprocess.Popen:
    sftune = Path(sys.executable).with_name("sftune")
    return subprocess.Popen([str(sftune), "sweep", "--config", str(config), "--no-export", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _tune_trials(experiment: Path) -> dict[str, dict]:
    """Tune's own experiment snapshot (what a restore sees): each trial's status, and whether
    its last result registered a checkpoint."""
    trials = {}
    for state in experiment.glob("experiment_state-*.json"):
        try:
            entries = json.loads(state.read_text())["trial_data"]
        except (json.JSONDecodeError, KeyError):
            continue  # being rewritten
        for raw, metadata in entries:
            trial, last = json.loads(raw), json.loads(metadata).get("last_result") or {}
            trials[trial["trial_id"]] = {"status": trial["status"],
                                         "checkpointed": bool(last.get("checkpoint_dir_name"))}
    return trials


def _finished(trials: dict[str, dict]) -> set[str]:
    return {t for t, state in trials.items() if state["status"] == "TERMINATED"}


def _running_with_checkpoint(trials: dict[str, dict]) -> set[str]:
    return {t for t, state in trials.items()
            if state["status"] != "TERMINATED" and state["checkpointed"]}


def _wait_for_snapshot(proc: subprocess.Popen, experiment: Path, count: int,
                       checkpointed_running: bool) -> dict[str, dict]:
    """Wait until Tune's snapshot has ``count`` finished trials (and, if asked, a running one
    whose checkpoint the snapshot records)."""
    deadline = time.time() + 180
    while time.time() < deadline:
        assert proc.poll() is None, f"driver exited early: {proc.stderr.read()[-2000:]}"
        trials = _tune_trials(experiment)
        if len(_finished(trials)) >= count and (
                not checkpointed_running or _running_with_checkpoint(trials)):
            return trials
        time.sleep(0.2)
    raise AssertionError("no trial finished in time")


def _lose_checkpoints(experiment: Path, trial_ids: set[str]) -> int:
    """Delete the trials' checkpoints, as the race between Tune's checkpoint deletion (or the
    recorder's pruning) and Tune's next snapshot does when the driver is killed in between."""
    lost = 0
    for trial_id in trial_ids:
        for checkpoint in experiment.glob(f"*_{trial_id}_*/checkpoint_*"):
            shutil.rmtree(checkpoint)
            lost += 1
    return lost


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and every process it started (Ray's GCS, raylet, workers, agents)."""
    family = [proc.pid]
    try:
        family += [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        pass
    for pid in family:
        try:
            psutil.Process(pid).send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    proc.wait(timeout=30)
    psutil.wait_procs([p for p in map(_process, family) if p], timeout=30)


def _process(pid: int):
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def _errors(summary, experiment: Path) -> str:
    """What went wrong, for the failure message: each errored trial's recorded error and Tune's."""
    bad = summary[summary["status"] != "TERMINATED"][["trial_id", "stop_reason", "error"]]
    tune_errors = [path.read_text()[-1500:] for path in experiment.glob("*/error.txt")]
    return f"{bad.to_string()}\n" + "\n".join(tune_errors)


@pytest.mark.parametrize("checkpoint_lost", [False, True], ids=["intact", "checkpoint-lost"])
def test_killed_sweep_resumes_without_losing_or_rerunning_trials(
    tiny_model_dir, reviews_csv, tmp_path, checkpoint_lost
):
    config = _write_config(tmp_path / "sweep.yaml", tiny_model_dir, reviews_csv, tmp_path / "runs")
    experiment = tmp_path / "runs" / "killme"
    first = _sweep(config, "--name", "killme")
    try:
        trials = _wait_for_snapshot(first, experiment, 2, checkpointed_running=checkpoint_lost)
    finally:
        _kill_tree(first)
    assert first.returncode == -signal.SIGKILL
    finished = _finished(trials)
    before = read_trials(experiment)
    rows_before = before[before["trial_id"].isin(finished)].sort_values(["trial_id", "epoch"])
    assert len(summarize_trials(before)) < NUM_SAMPLES, "killed too late to test resume"
    if checkpoint_lost:
        assert _lose_checkpoints(experiment, _running_with_checkpoint(trials)) > 0

    second = _sweep(config, "--resume", "killme")
    try:
        _, err = second.communicate(timeout=300)
    finally:
        _kill_tree(second)
    assert second.returncode == 0, err[-3000:]
    restarted = set(re.findall(r"trial (\w+): its checkpoint .* is gone", err))
    if checkpoint_lost:
        assert restarted, err[-3000:]
    # A running trial can restart even with nothing deleted by hand: Tune removes a trial's
    # superseded checkpoint before its next snapshot, and the kill may fall in between. A
    # finished trial never restarts.
    assert not restarted & finished, err[-3000:]

    after = read_trials(experiment)
    summary = summarize_trials(after)
    assert len(summary) == NUM_SAMPLES and summary["trial_id"].is_unique
    assert (summary["status"] == "TERMINATED").all(), _errors(summary, experiment)
    rows_after = after[after["trial_id"].isin(finished)].sort_values(["trial_id", "epoch"])
    # Finished trials were neither lost nor run again: their rows are exactly as before.
    assert rows_after[["trial_id", "epoch", "timestamp", "val_accuracy"]].to_numpy().tolist() == (
        rows_before[["trial_id", "epoch", "timestamp", "val_accuracy"]].to_numpy().tolist()
    )
