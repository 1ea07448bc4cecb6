"""Serving from a bucket: ``sftune serve NAME --storage s3://...`` resolves the sweep's model in
the bucket, and a real Ray Serve replica downloads and serves it over HTTP."""

from __future__ import annotations

import pandas as pd
import pytest

from search import storage
from search.config import ServeConfig
from search.results import write_sweep_meta, write_trials
from serving.resolve import resolve_model
from tests.serving import http_client as client
from tests.serving.conftest import TEXTS, free_port
from tests.serving.test_predictor import pipeline_probabilities


def _remote_sweep(bucket: str, checkpoints) -> str:
    """A sweep in the bucket whose trials' checkpoints are in the bucket too."""
    experiment = storage.join(bucket, "sweeps", "remote")
    rows = []
    for trial, score in (("A", 0.7), ("B", 0.6)):
        location = storage.join(experiment, trial, "checkpoint_000000")
        storage.upload_dir(checkpoints[trial], location)
        rows.append({"trial_id": trial, "status": "TERMINATED", "epoch": 1.0,
                     "val_accuracy": score, "score": score, "checkpoint": location})
    write_trials(experiment, pd.DataFrame(rows))
    write_sweep_meta(experiment, {"name": "remote", "status": "finished",
                                  "test": {"A": {"test_accuracy": 0.65}}})
    return experiment


def test_a_sweep_in_a_bucket_resolves_to_its_checkpoint_uri(bucket, checkpoints):
    experiment = _remote_sweep(bucket, checkpoints)
    model = resolve_model(name="remote", storage_path=storage.join(bucket, "sweeps"))
    assert model.model_dir == storage.join(experiment, "A", "checkpoint_000000")
    assert (model.trial_id, model.source, model.test_metrics) == ("A", "remote",
                                                                  {"test_accuracy": 0.65})
    other = resolve_model(name="remote", trial="B", storage_path=storage.join(bucket, "sweeps"))
    assert other.model_dir == storage.join(experiment, "B", "checkpoint_000000")
    with pytest.raises(Exception, match="no sweep 'absent'.*sweeps there: remote"):
        resolve_model(name="absent", storage_path=storage.join(bucket, "sweeps"))


@pytest.mark.slow
def test_a_serve_replica_serves_a_model_from_a_bucket(bucket, checkpoints):
    import ray
    from ray import serve

    from serving.deploy import deploy
    from serving.haproxy import ingress_env, remove_private_dir

    uri = storage.join(bucket, "export")
    storage.upload_dir(checkpoints["A"], uri)
    cfg = ServeConfig(port=free_port(), replicas=1, num_threads=1, cpus_per_replica=0.5)
    with pytest.MonkeyPatch.context() as env:
        for key, value in ingress_env(cfg).items():
            env.setenv(key, value)
        # Started after the AWS_* variables are set (s3_env), so the replica inherits them.
        ray.init(num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False,
                 log_to_driver=False)
        try:
            url = deploy(uri, cfg)
            answers = client.predict(url, TEXTS)
        finally:
            serve.shutdown()
            ray.shutdown()
            remove_private_dir()
    expected = pipeline_probabilities(checkpoints["A"], TEXTS)
    for answer, probs in zip(answers, expected, strict=True):
        assert answer["probabilities"] == pytest.approx(probs, abs=1e-5)
