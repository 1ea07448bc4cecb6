"""A stand-in for the Serve endpoint that speaks its HTTP contract, on 127.0.0.1, in a thread.

Positive words make ``pos`` likely, anything else ``neg``; every request is logged so tests
can check what the client sent.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

POSITIVE = {"good", "great", "fun", "love", "brilliant", "charming"}
LABELS = ("neg", "pos")
MAX_TEXTS = 64
INFO = {"trial_id": "trial_fake_7", "model_id": "abc123", "source": "tiny",
        "model_dir": "/tmp/export", "label_names": list(LABELS), "params": {"lr": 1e-4},
        "val_metrics": {"val_accuracy": 0.8}, "test_metrics": None,
        "loaded_at": "2026-01-01T00:00:00Z", "device": "cpu", "dtype": "float32"}


def classify(text: str) -> dict:
    p_pos = 0.9 if POSITIVE & set(text.lower().split()) else 0.2
    probs = {"neg": round(1 - p_pos, 6), "pos": p_pos}
    label = max(probs, key=probs.get)
    return {"label": label, "score": probs[label], "probabilities": probs}


class FakeEndpoint:
    """``with FakeEndpoint(api_key=...) as url:`` serves until the block ends."""

    def __init__(self, *, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.requests: list[tuple[str, str, dict | None]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> str:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self.url

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if endpoint.api_key is None or self.path == "/healthz":
                    return True
                if self.headers.get("Authorization") == f"Bearer {endpoint.api_key}":
                    return True
                self._send(401, {"error": "unauthorized", "detail": "missing or wrong API key",
                                 "allowed": "Authorization: Bearer <key>"})
                return False

            def do_GET(self) -> None:
                endpoint.requests.append(("GET", self.path, None))
                if not self._authorized():
                    return
                routes = {"/healthz": {"status": "ok"}, "/model": INFO}
                if self.path in routes:
                    self._send(200, routes[self.path])
                else:
                    self._send(404, {"error": "not_found", "detail": self.path})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append(("POST", self.path, body))
                if not self._authorized():
                    return
                texts = [body["text"]] if "text" in body else body.get("texts", [])
                if not texts or len(texts) > MAX_TEXTS:
                    self._send(422, {"error": "too_many_texts", "detail": f"{len(texts)} texts"})
                    return
                self._send(200, {"predictions": [classify(t) for t in texts],
                                 "trial_id": INFO["trial_id"], "model_id": INFO["model_id"]})

        return Handler
