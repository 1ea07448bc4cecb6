"""A small HTTP client for the sftune Serve endpoint, with one typed error per failure mode.

The contract (see ``serving/``): ``POST /predict`` with ``{"text": ...}`` or ``{"texts": [...]}``
answers one prediction per text, in input order, each with ``label``, ``score`` and the
``probabilities`` of every label; ``GET /healthz``; ``GET /model`` describes the loaded trial.
With an API key configured the endpoint answers 401 (JSON) unless the request carries
``Authorization: Bearer <key>``. This module reads only that contract; it imports no serving code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests

__all__ = [
    "AuthRequired",
    "BadRequest",
    "EndpointDown",
    "EndpointError",
    "Prediction",
    "ServerError",
    "health",
    "model_info",
    "predict",
]

#: Texts per request: the endpoint caps a request (64 by default), so a long batch is split.
CHUNK = 32
#: Seconds to connect (a dead endpoint fails fast) and to wait for an answer (a CPU batch is slow).
TIMEOUT = (2.0, 60.0)


class EndpointError(RuntimeError):
    """The endpoint could not answer; ``str()`` is a sentence a user can act on."""


class EndpointDown(EndpointError):
    """Nothing answers at the URL (refused, unresolvable or timed out)."""


class AuthRequired(EndpointError):
    """401/403: the endpoint needs an API key, or the one sent is wrong."""


class BadRequest(EndpointError):
    """Another 4xx: the endpoint refused the request (too long, empty, unknown route...)."""


class ServerError(EndpointError):
    """5xx (including Serve's 503 backpressure and 408 timeout) or an answer off-contract."""


@dataclass(frozen=True)
class Prediction:
    """One text's answer: the top label, its probability, and every label's probability."""

    text: str
    label: str
    score: float
    probabilities: dict[str, float]
    trial_id: str | None = None  # the trial whose checkpoint answered, when the server says


def _url(base: str, route: str) -> str:
    return base.rstrip("/") + route


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("error") or body.get("message") or body)
    return str(body)[:200]


def _send(method: str, url: str, *, api_key: str | None, timeout, **kwargs):
    """Send one request; raise the :class:`EndpointError` that fits any failure."""
    try:
        response = requests.request(method, url, headers=_headers(api_key), timeout=timeout,
                                    **kwargs)
    except (requests.ConnectionError, requests.Timeout) as err:
        raise EndpointDown(f"no endpoint answers at {url} ({type(err).__name__})") from None
    except requests.RequestException as err:  # a malformed URL, such as one with no http://
        raise EndpointDown(f"cannot reach {url}: {err}") from None
    _raise_for_status(response, url, api_key)
    return response


def _request(method: str, url: str, *, api_key: str | None, timeout, **kwargs) -> Any:
    """Send one request and return its JSON body."""
    response = _send(method, url, api_key=api_key, timeout=timeout, **kwargs)
    try:
        return response.json()
    except ValueError:
        raise ServerError(f"{url} answered {response.status_code} without JSON") from None


def _raise_for_status(response: requests.Response, url: str, api_key: str | None) -> None:
    code = response.status_code
    if code < 400:
        return
    detail = _detail(response)
    if code in (401, 403):
        what = "rejected the API key" if api_key else "needs an API key (Authorization: Bearer)"
        raise AuthRequired(f"{url} {what}: HTTP {code} {detail}".rstrip())
    if code in (408, 503, 504):
        raise ServerError(f"{url} is busy or timed out (HTTP {code}); try again: {detail}")
    if code < 500:
        raise BadRequest(f"{url} refused the request: HTTP {code} {detail}".rstrip())
    raise ServerError(f"{url} failed: HTTP {code} {detail}".rstrip())


def predict(
    url: str, texts: str | Sequence[str], api_key: str | None = None, *, timeout=TIMEOUT,
) -> list[Prediction]:
    """Predictions for ``texts`` (one string or several), in input order.

    More than :data:`CHUNK` texts go in several requests, so a pasted batch never trips the
    endpoint's per-request limit.
    """
    if isinstance(texts, str):
        body = _request("POST", _url(url, "/predict"), api_key=api_key, timeout=timeout,
                        json={"text": texts})
        return parse_predictions(body, [texts])
    batch, answers = list(texts), []
    for start in range(0, len(batch), CHUNK):
        chunk = batch[start:start + CHUNK]
        body = _request("POST", _url(url, "/predict"), api_key=api_key, timeout=timeout,
                        json={"texts": chunk})
        answers += parse_predictions(body, chunk)
    return answers


def parse_predictions(body: Any, texts: list[str]) -> list[Prediction]:
    """Read a ``/predict`` answer: a list, or an object holding ``predictions`` (or one
    prediction for a single text). Probabilities may be a ``{label: p}`` mapping or a list
    aligned with ``labels``."""
    items, trial_id = body, None
    if isinstance(body, dict):
        items = body.get("predictions", body.get("results", [body]))
        trial_id = body.get("trial_id")
    if not isinstance(items, list) or len(items) != len(texts):
        raise ServerError(f"/predict answered {len(items) if isinstance(items, list) else 'no'} "
                          f"predictions for {len(texts)} texts")
    return [_prediction(item, text, trial_id) for item, text in zip(items, texts, strict=True)]


def _prediction(item: Any, text: str, trial_id: Any = None) -> Prediction:
    try:
        probs = item.get("probabilities") or {}
        if isinstance(probs, list):
            probs = dict(zip(item["labels"], probs, strict=True))
        probs = {str(k): float(v) for k, v in probs.items()}
        label = str(item["label"])
        score = float(item.get("score", probs.get(label, float("nan"))))
    except (AttributeError, KeyError, TypeError, ValueError):
        raise ServerError(f"/predict answered an item off-contract: {str(item)[:200]}") from None
    return Prediction(text=text, label=label, score=score, probabilities=probs,
                      trial_id=None if trial_id is None else str(trial_id))


def model_info(url: str, api_key: str | None = None, *, timeout=(2.0, 10.0)) -> dict[str, Any]:
    """``GET /model``: trial id, params, metrics, label names, source sweep, loaded_at."""
    body = _request("GET", _url(url, "/model"), api_key=api_key, timeout=timeout)
    if not isinstance(body, dict):
        raise ServerError(f"{_url(url, '/model')} answered {type(body).__name__}, not an object")
    return body


def health(url: str, api_key: str | None = None, *, timeout=(2.0, 5.0)) -> bool:
    """True when ``/healthz`` answers 2xx; False when nothing answers or it reports a fault.

    Raises :class:`AuthRequired` on 401, because that is a setting to fix, not an outage.
    """
    try:
        _send("GET", _url(url, "/healthz"), api_key=api_key, timeout=timeout)
    except (EndpointDown, ServerError, BadRequest):
        return False
    return True
