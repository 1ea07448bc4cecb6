"""A real sweep (a local Ray, real trials) with ``tune.storage_path`` in a bucket on a real S3
server: Tune's state, the checkpoints, sftune's results and the export all land in the bucket,
nothing in the driver's working directory, and every reader finds them there."""

from __future__ import annotations

import pytest
import ray

from search import storage
from search.best import export_best
from search.results import (
    list_sweeps,
    read_sweep_meta,
    read_trials,
    results_location,
    summarize_trials,
)
from search.sweep import run_sweep
from tests.conftest import tiny_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray(s3_env):
    # Started after the AWS_* variables are set, so Ray's workers inherit them.
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False,
             log_to_driver=False)
    yield
    ray.shutdown()


def test_a_sweep_on_a_bucket_keeps_everything_there(local_ray, bucket, tiny_model_dir,
                                                   reviews_csv, tmp_path, monkeypatch):
    from transformers import pipeline

    driver = tmp_path / "driver"
    driver.mkdir()
    monkeypatch.chdir(driver)
    root = storage.join(bucket, "sweeps")
    cfg = tiny_config(
        tiny_model_dir, reviews_csv, f"tune.storage_path={root}", "tune.num_samples=3",
        "tune.max_concurrent_trials=2", "tune.keep_checkpoints=1", "tune.search_examples=64",
        "tune.search_eval_examples=32", "train.epochs=1", "train.eval_every=32",
        "space.lr={low: 0.0005, high: 0.005, log: true}")
    path = run_sweep(cfg, name="remote")
    assert path == storage.join(root, "remote") and list_sweeps(root) == [path]
    summary = summarize_trials(read_trials(path))
    assert sorted(summary["phase"]) == ["final", "search", "search", "search"]
    assert (summary["status"] == "TERMINATED").all()
    kept = summary["checkpoint"].dropna()
    # The final trial, the best search trial (keep_checkpoints=1) and the untuned default.
    assert 2 <= len(kept) <= 3 and kept.str.startswith(f"{bucket}/").all()
    assert all(storage.is_dir(c) for c in kept)
    assert storage.exists(results_location(path, "optuna.db"))
    assert read_sweep_meta(path)["status"] == "finished"

    best = export_best(path)  # the default target: <experiment>/export, in the bucket
    assert best["phase"] == "final" and best["export_dir"] == storage.join(path, "export")
    assert 0 <= best["test_accuracy"] <= 1
    assert read_sweep_meta(path)["export_dir"] == best["export_dir"]
    local = storage.local_copy(best["export_dir"], tmp_path / "downloads")
    scores = pipeline("text-classification", model=str(local))(["great fun"])
    assert scores[0]["label"] in {"neg", "pos"}
    # Exported again to a local directory: the recorded test metrics are reused, not re-measured.
    again = export_best(path, tmp_path / "local-export")
    assert again["test_accuracy"] == best["test_accuracy"]
    assert list(driver.iterdir()) == []  # nothing landed in the driver's working directory
