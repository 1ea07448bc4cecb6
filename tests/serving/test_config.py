"""The serve section of the config: batching limits that would silently never batch fail."""

from __future__ import annotations

import pytest

from search.config import ConfigError, load_config
from serving.sizing import replica_count


def test_defaults_batch_and_bind_loopback():
    serve = load_config().serve
    assert serve.host == "127.0.0.1"
    assert serve.max_ongoing_requests >= serve.max_batch_size >= serve.max_texts


@pytest.mark.parametrize(("overrides", "words"), [
    (["serve.max_ongoing_requests=4"], "serve.max_ongoing_requests (4) must be >= "
                                       "serve.max_batch_size (64)"),
    (["serve.max_texts=100"], "serve.max_texts (100) must be <= serve.max_batch_size"),
    (["serve.autoscaling=true", "serve.min_replicas=5", "serve.max_replicas=2"],
     "serve.min_replicas (5) must be <= serve.max_replicas (2)"),
    (["serve.batch_size=3"], "serve.batch_size: unknown key"),
])
def test_bad_serve_settings_name_the_keys(overrides, words):
    with pytest.raises(ConfigError) as caught:
        load_config(None, overrides)
    assert words in str(caught.value)


@pytest.mark.parametrize(("overrides", "cores", "replicas"), [
    ([], 2, 2),                                   # CPU: two half-thread replicas
    ([], 1, 1),                                   # one core: nothing to overlap
    (["serve.gpus_per_replica=1"], 16, 1),        # one per GPU
    (["serve.gpus_per_replica=0.25"], 16, 4),     # fractional GPUs fill one GPU
    (["serve.replicas=3"], 2, 3),                 # an explicit count wins
])
def test_replica_count_default_depends_on_the_hardware(monkeypatch, overrides, cores, replicas):
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert replica_count(load_config(None, overrides).serve) == replicas
