"""The serving tests' raw HTTP client (plain ``requests``). The product's client for the endpoint
is :mod:`dashboard.client`; this one returns the JSON as sent, which is what the tests assert on::

    from tests.serving.http_client import health, model_info, predict
    health("http://127.0.0.1:8000")                      # True once the model is loaded
    predict("http://127.0.0.1:8000", ["A gem.", "Dull."])  # [{"label", "score", "probabilities"}]
    model_info("http://127.0.0.1:8000")                  # {"trial_id", "params", ...}

Every failure is an :class:`EndpointError` whose ``status`` is the HTTP status (None when the
server could not be reached) and whose message is the server's own explanation.
"""

from __future__ import annotations

from typing import Any

import requests

__all__ = ["EndpointError", "health", "model_info", "predict", "stats"]


class EndpointError(RuntimeError):
    """The endpoint is down, refused the request (e.g. 401 without a key), or failed."""

    def __init__(self, message: str, *, status: int | None = None,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.body = status, body


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _call(method: str, url: str, *, api_key: str | None, timeout: float, **kwargs) -> Any:
    try:
        response = requests.request(method, url, headers=_headers(api_key), timeout=timeout,
                                    **kwargs)
    except requests.RequestException as err:
        raise EndpointError(f"cannot reach {url}: {err.__class__.__name__}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        detail = body.get("detail") if isinstance(body, dict) else response.text[:200]
        allowed = body.get("allowed") if isinstance(body, dict) else None
        hint = f" (allowed: {allowed})" if allowed else ""
        raise EndpointError(f"{url} answered {response.status_code}: {detail}{hint}",
                            status=response.status_code,
                            body=body if isinstance(body, dict) else None)
    return body


def predict(url: str, texts: str | list[str], *, api_key: str | None = None,
            timeout: float = 30.0) -> list[dict[str, Any]]:
    """Label, score and probabilities per text, in input order (one text may be a str)."""
    payload = {"text": texts} if isinstance(texts, str) else {"texts": list(texts)}
    body = _call("POST", f"{url.rstrip('/')}/predict", api_key=api_key, timeout=timeout,
                 json=payload)
    return body["predictions"]


def model_info(url: str, *, api_key: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """What is deployed: trial id, params, val/test metrics, label names, source, loaded_at."""
    return _call("GET", f"{url.rstrip('/')}/model", api_key=api_key, timeout=timeout)


def stats(url: str, *, api_key: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """Batching counters of the replica that answers."""
    return _call("GET", f"{url.rstrip('/')}/stats", api_key=api_key, timeout=timeout)


def health(url: str, *, timeout: float = 2.0) -> bool:
    """Whether the endpoint is up and its model loaded (needs no key)."""
    try:
        return _call("GET", f"{url.rstrip('/')}/healthz", api_key=None,
                     timeout=timeout).get("status") == "ok"
    except EndpointError:
        return False
