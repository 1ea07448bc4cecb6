"""The endpoint client against a fake server that speaks the Serve contract."""

from __future__ import annotations

import socket

import pytest

from dashboard import client
from tests.dashboard.fake_serve import INFO


def _dead_url() -> str:
    with socket.socket() as sock:  # a port nobody listens on once the socket closes
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_predict_one_text_sends_text_and_reads_every_probability(endpoint):
    [answer] = client.predict(endpoint.url, "a great film")
    assert endpoint.requests[-1] == ("POST", "/predict", {"text": "a great film"})
    assert answer.label == "pos" and answer.score == pytest.approx(0.9)
    assert set(answer.probabilities) == {"neg", "pos"} and answer.trial_id == "trial_fake_7"


def test_batches_keep_input_order_and_are_split_under_the_request_limit(endpoint):
    texts = [f"review {i} " + ("fun" if i % 3 == 0 else "dull") for i in range(70)]
    answers = client.predict(endpoint.url + "/", texts)
    assert [a.text for a in answers] == texts
    assert [a.label for a in answers] == ["pos" if i % 3 == 0 else "neg" for i in range(70)]
    sizes = [len(body["texts"]) for _, _, body in endpoint.requests]
    assert sizes == [32, 32, 6]
    assert client.predict(endpoint.url, []) == []


def test_model_info_and_health(endpoint):
    assert client.model_info(endpoint.url)["trial_id"] == INFO["trial_id"]
    assert client.health(endpoint.url) is True
    assert client.health(_dead_url()) is False


def test_a_down_endpoint_is_a_typed_error():
    url = _dead_url()
    with pytest.raises(client.EndpointDown, match="no endpoint answers"):
        client.predict(url, "hello")
    with pytest.raises(client.EndpointDown):
        client.model_info("localhost:1")  # no scheme: still a clear error, not a crash


def test_a_key_is_required_sent_as_bearer_and_a_wrong_one_is_rejected(locked_endpoint):
    url = locked_endpoint.url
    with pytest.raises(client.AuthRequired, match="needs an API key.*401"):
        client.model_info(url)
    with pytest.raises(client.AuthRequired, match="rejected the API key"):
        client.predict(url, "fun", api_key="wrong")
    assert client.predict(url, "fun", api_key="s3cret")[0].label == "pos"
    assert client.health(url) is True  # /healthz stays open
    assert locked_endpoint.requests[-2][1] == "/predict"


def test_other_4xx_is_a_bad_request_with_the_servers_detail(endpoint):
    with pytest.raises(client.BadRequest, match="404.*/nope"):
        client._request("GET", endpoint.url + "/nope", api_key=None, timeout=5)


@pytest.mark.parametrize("body", [
    {"predictions": [{"label": "pos"}]},  # one answer for two texts
    {"predictions": [{"score": 1.0}, {"score": 1.0}]},  # no label
    "not json object",
])
def test_off_contract_answers_are_server_errors(body):
    with pytest.raises(client.ServerError):
        client.parse_predictions(body, ["a", "b"])


def test_probabilities_may_come_as_a_list_aligned_with_labels():
    body = [{"label": "b", "labels": ["a", "b"], "probabilities": [0.25, 0.75]}]
    [answer] = client.parse_predictions(body, ["x"])
    assert answer.probabilities == {"a": 0.25, "b": 0.75} and answer.score == 0.75
