"""The HTTP layer in-process (no sockets, no Ray): errors, auth, docs and timeouts."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from serving.api import create_api
from serving.auth import hash_key
from serving.predictor import Predictor
from serving.schemas import Limits
from serving.service import ModelService
from tests.serving.conftest import LABELS

KEY = "a-long-enough-test-key-0123456789"
LIMITS = Limits(max_texts=4, max_chars=50, max_body_bytes=2048)
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def predictor(checkpoints):
    return Predictor.load(checkpoints["A"], device="cpu", num_threads=1)


@pytest.fixture(scope="module")
def client(predictor):
    return TestClient(create_api(ModelService(predictor, limits=LIMITS, source="sweep-x")))


@pytest.fixture(scope="module")
def secured(predictor):
    service = ModelService(predictor, limits=LIMITS, api_key_sha256=hash_key(KEY))
    return TestClient(create_api(service))


def test_predict_answers_every_text_in_order(client, predictor):
    texts = ["good fun", "awful boring mess", "love"]
    response = client.post("/predict", json={"texts": texts})
    assert response.status_code == 200
    body = response.json()
    assert body["trial_id"] == "A" and body["model_id"] == predictor.model_id
    direct = predictor.predict(texts)
    for got, want in zip(body["predictions"], direct, strict=True):
        assert got["label"] == want["label"]
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)
    single = client.post("/predict", json={"text": "love"}).json()["predictions"]
    assert len(single) == 1 and set(single[0]["probabilities"]) == set(LABELS)


BAD_REQUESTS = [
    # (raw body, headers, status, error code)
    (b"{oops", JSON, 400, "malformed_json"),
    (b'{"txt": "a"}', JSON, 422, "unknown_field"),
    (b"{}", JSON, 422, "missing_field"),
    (b'{"text": 1.5}', JSON, 422, "wrong_type"),
    (b'{"text": ""}', JSON, 422, "empty_text"),
    (b'{"texts": ["a", "b", "c", "d", "e"]}', JSON, 422, "too_many_texts"),
    (b'{"text": "' + b"y" * 51 + b'"}', JSON, 422, "text_too_long"),
    (b'{"text": "' + b"y" * 4000 + b'"}', JSON, 413, "body_too_large"),
    (b'{"text": "a"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    (b"text=a", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
     "unsupported_media_type"),
    (b'{"text": "a"}', {}, 415, "unsupported_media_type"),
]


@pytest.mark.parametrize(("body", "headers", "status", "code"), BAD_REQUESTS)
def test_bad_request_gets_4xx_json_and_server_keeps_serving(client, body, headers, status, code):
    response = client.post("/predict", content=body, headers=headers)
    assert response.status_code == status
    error = response.json()
    assert error["error"] == code and error["detail"] and error["allowed"]
    assert client.post("/predict", json={"text": "good"}).status_code == 200


def test_streamed_body_over_the_cap_is_413_without_content_length(client):
    def chunks():  # a generator body is sent chunked, with no Content-Length to trust
        yield b'{"text": "'
        for _ in range(40):
            yield b"z" * 100
        yield b'"}'

    response = client.post("/predict", content=chunks(), headers=JSON)
    assert response.status_code == 413 and response.json()["error"] == "body_too_large"


def test_unknown_route_and_method_say_what_exists(client):
    missing = client.get("/nope")
    assert missing.status_code == 404 and "POST /predict" in missing.json()["allowed"]
    wrong = client.get("/predict")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


def test_model_and_docs_describe_the_deployment(client):
    info = client.get("/model").json()
    assert info["trial_id"] == "A" and info["source"] == "sweep-x"
    assert info["label_names"] == LABELS and info["loaded_at"]
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["schema"]["properties"]) == {"text", "texts", "text_pair", "text_pairs"}
    assert client.get("/docs").status_code == 200


def test_key_is_required_everywhere_but_healthz(secured):
    assert secured.get("/healthz").status_code == 200
    for method, path in (("post", "/predict"), ("get", "/model"), ("get", "/stats"),
                         ("get", "/docs"), ("get", "/openapi.json")):
        for headers in ({}, {"Authorization": "Bearer wrong-key-wrong-key-1234"},
                        {"Authorization": KEY}):
            response = getattr(secured, method)(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.json()["error"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
    good = {"Authorization": f"Bearer {KEY}"}
    assert secured.post("/predict", json={"text": "good"}, headers=good).status_code == 200
    assert secured.get("/model", headers=good).json()["trial_id"] == "A"


class _SlowService:
    limits, api_key_sha256, request_timeout_s = LIMITS, None, 0.2

    async def predict(self, texts):
        await asyncio.sleep(5)

    def model_info(self):
        return {"trial_id": None, "model_id": "x"}

    def stats(self):
        return {}


def test_stuck_model_times_out_with_504_not_a_hang():
    response = TestClient(create_api(_SlowService())).post("/predict", json={"text": "a"})
    assert response.status_code == 504 and response.json()["error"] == "timeout"


def test_service_times_each_forward_for_the_batch_wait(predictor):
    import asyncio
    import time

    service = ModelService(predictor, limits=LIMITS)
    assert service.last_forward_s is None
    started = time.perf_counter()
    asyncio.run(service.predict(["a good film"]))
    elapsed = time.perf_counter() - started
    # In seconds, and the forward pass only: never more than the whole call took.
    assert 0 < service.last_forward_s <= elapsed
