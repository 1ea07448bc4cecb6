"""Tracking through Tune's own logger callbacks, each against a local store: MLflow (an SQLite
tracking store) and W&B in offline mode; every trial of both phases lands there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.results import read_trials
from search.sweep import run_sweep
from search.tracking import TrackingError, check_tracking
from tests.conftest import tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("local_ray")]
mlflow = pytest.importorskip("mlflow")  # the optional extras; `make test` installs them
pytest.importorskip("wandb")



def test_trials_of_both_phases_are_logged_to_mlflow_and_wandb(tiny_model_dir, reviews_csv,
                                                               tmp_path):
    store = tmp_path / "mlflow.db"
    cfg = tiny_config(
        tiny_model_dir, reviews_csv, f"tune.storage_path={tmp_path / 'runs'}",
        "tune.num_samples=2", "tune.search_examples=64", "train.epochs=1", "train.eval_every=32",
        "space.lr={low: 0.0005, high: 0.005, log: true}",
        f"tracking.mlflow_uri={store}", "tracking.wandb_project=sftune-test",
        f"tracking.wandb_dir={tmp_path / 'wb'}")
    frame = read_trials(run_sweep(cfg, name="tracked"))
    curves = {t: rows.sort_values("examples")["val_accuracy"].tolist()
              for t, rows in frame[frame["examples"] > 0].groupby("trial_id")}
    assert len(curves) == 3  # two search trials and the final one

    client = mlflow.tracking.MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("tracked")  # named after the sweep
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["sftune.phase"] for r in runs) == ["final", "search", "search"]
    for run in runs:
        matches = [t for t in curves if t in run.data.tags["trial_name"]]
        assert len(matches) == 1, run.data.tags
        trial_id = matches[0]
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
            curves[trial_id])
        assert 0.0005 <= float(run.data.params["lr"]) <= 0.005

    offline = sorted((tmp_path / "wb" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 3  # one offline run per trial, ready for `wandb sync`
    for path in offline:
        run, history = _read_offline_run(path)
        assert (run.project, run.run_group) == ("sftune-test", "tracked")
        assert run.job_type in ("search", "final") and list(run.tags) == ["tracked", run.job_type]
        [trial_id] = [t for t in curves if t in run.run_id or run.run_id in t]
        logged = [h["val_accuracy"] for h in history if "val_accuracy" in h]
        assert logged == pytest.approx(curves[trial_id]), history


def _read_offline_run(path: Path):
    """The run record and the logged rows of an offline W&B run file: a LevelDB-style log
    (32 KiB blocks of [crc32c, length, type] records after a 7-byte ":W&B" header) of
    wandb's Record protos, as `wandb sync` reads it."""
    import struct

    from wandb.proto import wandb_internal_pb2

    raw, block = path.read_bytes(), 32768
    assert raw[:4] == b":W&B"
    pos, pending, run, history = 7, b"", None, []
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", raw[pos + 4:pos + 7])
        pending, pos = pending + raw[pos + 7:pos + 7 + length], pos + 7 + length
        if kind not in (1, 4):  # FULL or LAST ends a record; FIRST / MIDDLE continue it
            continue
        record = wandb_internal_pb2.Record.FromString(pending)
        pending = b""
        if record.WhichOneof("record_type") == "run":
            run = record.run
        elif record.WhichOneof("record_type") == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
    return run, history


def test_a_tracker_without_its_package_is_refused_naming_the_key(monkeypatch):
    import importlib.util

    from search.config import TrackingConfig

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(TrackingError, match=r"tracking.wandb_project .* pip install "
                                            r"'sftune\[wandb\]'"):
        check_tracking(TrackingConfig(wandb_project="p"))
    check_tracking(TrackingConfig(mlflow_uri=str(Path("/tmp/x.db"))))  # mlflow is installed
