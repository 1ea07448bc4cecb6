"""sftune's results (the trials table, sweep.json, the Optuna study, checkpoint pruning) and the
dashboard's loaders on a real S3 server: the same calls as on a local directory."""

from __future__ import annotations

import json
import time

import optuna

from dashboard import loaders
from dashboard.synthetic import make_synthetic_sweep, synthetic_config
from search import storage
from search.config import build_config
from search.recorder import ResultsRecorder, write_optuna_study
from search.results import (
    StopReason,
    list_sweeps,
    read_sweep_meta,
    read_trials,
    results_location,
    summarize_trials,
    update_sweep_meta,
)
from tests.code.test_recorder import DEFAULT, FIXED


def test_a_sweep_in_a_bucket_reads_back_and_lists_newest_first(bucket):
    root = storage.join(bucket, "sweeps")
    older = make_synthetic_sweep(storage.join(root, "older"), n_trials=20, epochs=3)
    time.sleep(1.1)  # object stores stamp whole seconds
    newer = make_synthetic_sweep(storage.join(root, "newer"), n_trials=30, epochs=3, seed=1)
    storage.write_bytes(storage.join(root, "not-a-sweep", "file.txt"), b"x")
    assert list_sweeps(root) == [newer, older]
    assert read_trials(older)["trial_id"].nunique() == 20
    update_sweep_meta(newer, status="interrupted")
    assert read_sweep_meta(newer)["status"] == "interrupted"
    assert list_sweeps(storage.join(bucket, "nothing-here")) == []


def test_the_dashboard_loads_a_sweep_from_a_bucket(bucket):
    path = make_synthetic_sweep(storage.join(bucket, "sweeps", "remote"), n_trials=25, epochs=4)
    before = loaders.file_stamp(path)
    loaded = loaders.load_sweep(path)
    assert loaded.name == "remote" and len(loaded.table) == 25
    assert loaders.best_card(loaded)["trial_id"] == loaded.table.iloc[0]["trial_id"]
    row = loaders.sweep_row(path)
    assert row["name"] == "remote" and row["problem"] == "" and row["path"] == path
    time.sleep(1.1)
    update_sweep_meta(path, status="finished")
    assert loaders.file_stamp(path)[1] > before[1]  # the cache key sees the new sweep.json


def test_a_corrupt_table_in_a_bucket_is_reported_not_raised(bucket):
    path = storage.join(bucket, "sweeps", "broken")
    make_synthetic_sweep(path, n_trials=5, epochs=2)
    storage.write_bytes(results_location(path, "trials.parquet"), b"not parquet")
    row = loaders.sweep_row(path)
    assert row["status"] == "unreadable" and "corrupt or partial" in row["problem"]


def test_the_recorder_writes_to_a_bucket_and_prunes_checkpoints_there(bucket, tmp_path):
    experiment = storage.join(bucket, "sweeps", "recorded")
    recorder = ResultsRecorder(experiment_dir=experiment, keep_checkpoints=1, fixed=FIXED,
                               default=DEFAULT, flush_interval_s=0.0)
    checkpoints = {}
    for trial, config, score in (("dflt", DEFAULT, 0.70), ("top", {"lr": 2e-4, "dropout": 0},
                                                           0.80),
                                 ("low", {"lr": 5e-5, "dropout": 0}, 0.60)):
        recorder.on_result(trial, config, {"epoch": 1.0, "examples": 100, "score": score,
                                           "val_accuracy": score,
                                           "stop_reason": StopReason.COMPLETED})
        checkpoints[trial] = storage.join(experiment, trial, "checkpoint_000000")
        storage.write_bytes(storage.join(checkpoints[trial], "model.safetensors"), b"w")
        recorder.on_checkpoint(trial, checkpoints[trial])
        recorder.on_complete(trial)
    summary = summarize_trials(read_trials(experiment)).set_index("trial_id")
    assert summary.loc["top", "checkpoint"] == checkpoints["top"]
    assert not storage.exists(storage.join(checkpoints["low"], "model.safetensors"))
    assert storage.exists(storage.join(checkpoints["dflt"], "model.safetensors"))


def test_the_optuna_study_is_written_into_the_bucket(bucket, tmp_path):
    path = make_synthetic_sweep(storage.join(bucket, "sweeps", "study"), n_trials=12, epochs=3)
    cfg = build_config(synthetic_config())
    target = write_optuna_study(path, cfg)
    local = tmp_path / "optuna.db"
    local.write_bytes(storage.read_bytes(target))
    study = optuna.load_study(study_name="study", storage=f"sqlite:///{local}")
    assert len(study.trials) == 12
    assert json.loads(storage.read_bytes(results_location(path, "sweep.json")))["name"] == "study"


def test_the_dashboard_finds_a_bucket_export_and_loads_it_locally(bucket, tmp_path):
    from dashboard.local_model import find_export, load_local_model
    from tests.dashboard.test_local_model import make_export

    path = make_synthetic_sweep(storage.join(bucket, "sweeps", "remote"), n_trials=3, epochs=2)
    local_export = make_export(tmp_path)
    storage.upload_dir(local_export, storage.join(path, "export"))
    update_sweep_meta(path, export_dir=storage.join(path, "export"))
    sweep = loaders.load_sweep(path)
    location = find_export(sweep.meta, sweep.path, sweep.table)
    assert location == storage.join(path, "export")
    model = load_local_model(location)  # downloaded once into the temp dir, then loaded
    assert model.meta["trial_id"] == "t_best"
    assert {a.label for a in model.predict(["great fun"])} <= {"neg", "pos"}

