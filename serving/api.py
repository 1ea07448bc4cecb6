"""The HTTP surface: a FastAPI app over a :class:`~serving.service.ModelService`-like object.

Routes: ``POST /predict``, ``GET /healthz``, ``GET /model``, ``GET /stats`` and the OpenAPI docs
(``/docs``, ``/openapi.json``). This module knows nothing of Ray: :mod:`serving.app` mounts the
same app in a Serve replica, and tests drive it in-process with ``fastapi.testclient``.

Every client error is a 4xx JSON :class:`~serving.schemas.ErrorBody`; the body is read with a
size cap and parsed by hand, so no malformed input can reach the model or turn into a 500.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.auth import OPEN_PATHS, check_bearer
from serving.schemas import (
    REQUEST_SHAPE,
    ErrorBody,
    Health,
    Limits,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    RequestError,
    Stats,
    body_too_large,
    parse_predict_body,
)

__all__ = ["Service", "create_api"]

ROUTES = "POST /predict, GET /healthz, GET /model, GET /stats, GET /docs"
_ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 413, 415, 422, 504)}


class Service(Protocol):
    """What the app needs from the replica; :class:`serving.service.ModelService` is one."""

    limits: Limits
    api_key_sha256: str | None
    request_timeout_s: float

    async def predict(self, texts: list[str]) -> list[dict[str, Any]]: ...

    def model_info(self) -> dict[str, Any]: ...

    def stats(self) -> dict[str, Any]: ...


def create_api(service: Service) -> FastAPI:
    """The FastAPI app answering for ``service``."""
    app = FastAPI(title="sftune", version="1", summary="Text classifier tuned by sftune.")
    _add_error_handlers(app)
    if service.api_key_sha256:
        app.add_middleware(_BearerAuth, key_sha256=service.api_key_sha256)
    _add_routes(app, service)
    return app


def _add_routes(app: FastAPI, service: Service) -> None:
    info = service.model_info()  # fixed for the replica's life: one model per replica
    identity = {"trial_id": info["trial_id"], "model_id": info["model_id"]}

    @app.post("/predict", response_model=PredictResponse, responses=_ERRORS,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": PredictRequest.model_json_schema()}}}})
    async def predict(request: Request) -> JSONResponse:
        """Classify one text or a list of texts; answers come in input order."""
        texts = parse_predict_body(await _read_json_body(request, service.limits),
                                   service.limits)
        try:
            answers = await asyncio.wait_for(service.predict(texts), service.request_timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(504, "timeout", f"no answer within {service.request_timeout_s} s",
                               "retry later, or send fewer texts per request") from None
        return JSONResponse({"predictions": answers, **identity})

    @app.get("/healthz", response_model=Health)
    async def healthz() -> dict[str, str]:
        """Liveness; needs no key."""
        return {"status": "ok"}

    @app.get("/model", response_model=ModelInfo, responses=_ERRORS)
    async def model() -> JSONResponse:
        """The deployed trial: id, params, metrics, label names, source sweep, load time."""
        return JSONResponse(service.model_info())

    @app.get("/stats", response_model=Stats, responses=_ERRORS)
    async def stats() -> JSONResponse:
        """Batching counters of the replica that answers."""
        return JSONResponse(service.stats())


async def _read_json_body(request: Request, limits: Limits) -> bytes:
    """The body, after checking its content type and size (without reading past the cap)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise RequestError(415, "unsupported_media_type",
                           f"content type is {media or 'missing'!r}",
                           f"Content-Type: application/json with {REQUEST_SHAPE}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise body_too_large(int(declared), limits)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise body_too_large(None, limits)
        chunks.append(chunk)
    return b"".join(chunks)


def _error_response(error: RequestError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    async def request_error(_: Request, exc: RequestError) -> JSONResponse:
        return _error_response(exc)

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown paths and methods: say which routes exist instead of a bare "Not Found".
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = f"{request.method} {request.url.path}: {exc.detail}"
        return _error_response(RequestError(exc.status_code, code, detail, ROUTES),
                               headers=getattr(exc, "headers", None))

    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(RequestError(422, "invalid_request", str(exc.errors()[:1]),
                                            REQUEST_SHAPE))

    app.add_exception_handler(RequestError, request_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


class _BearerAuth:
    """Pure ASGI middleware: every path but :data:`OPEN_PATHS` needs the bearer key.

    Pure ASGI rather than ``@app.middleware``: it adds no per-request task or body copy.
    """

    def __init__(self, app, *, key_sha256: str) -> None:
        self.app, self.key_sha256 = app, key_sha256

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or _route_path(scope) in OPEN_PATHS:
            return await self.app(scope, receive, send)
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if check_bearer(header.decode("latin-1"), self.key_sha256):
            return await self.app(scope, receive, send)
        error = RequestError(401, "unauthorized", "missing or wrong API key",
                             "an `Authorization: Bearer <key>` header with the server's key")
        response = _error_response(error, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


def _route_path(scope) -> str:
    # Behind a Serve route prefix the path may still carry it; compare the app-relative part.
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path
