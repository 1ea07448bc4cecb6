"""Request and response schemas of the endpoint, and the parser that turns a body into texts.

The parser never lets a client error escape as a 500: every problem becomes a
:class:`RequestError` with an HTTP status, a short code, what is wrong, and what is allowed.
Limits travel in :class:`Limits` so the same code serves any :class:`ServeConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "ErrorBody",
    "Health",
    "Limits",
    "ModelInfo",
    "PredictRequest",
    "PredictResponse",
    "Prediction",
    "RequestError",
    "Stats",
    "body_too_large",
    "parse_predict_body",
]

REQUEST_SHAPE = '{"text": "..."} or {"texts": ["...", ...]}'
PAIR_SHAPE = ('{"text": "...", "text_pair": "..."} or {"texts": ["...", ...], '
              '"text_pairs": ["...", ...]}')


@dataclass(frozen=True)
class Limits:
    """What one request may carry (from ``serve.max_texts``, ``max_chars``, ``max_body_bytes``)."""

    max_texts: int = 64
    max_chars: int = 5000
    max_body_bytes: int = 1_048_576
    pairs: bool = False  # the model classifies text pairs: every text needs its second text

    @classmethod
    def from_config(cls, cfg: Any) -> Limits:
        return cls(max_texts=cfg.max_texts, max_chars=cfg.max_chars,
                   max_body_bytes=cfg.max_body_bytes)


class RequestError(Exception):
    """A client error: ``status`` (4xx), ``code``, ``detail`` (what is wrong), ``allowed``."""

    def __init__(self, status: int, code: str, detail: str, allowed: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.allowed = status, code, detail, allowed

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, "allowed": self.allowed}


class ErrorBody(BaseModel):
    """Every error answer: a stable code, what is wrong, and what is allowed."""

    error: str = Field(description="Stable machine-readable code, e.g. `text_too_long`.")
    detail: str = Field(description="What is wrong with this request.")
    allowed: str | None = Field(None, description="What the endpoint accepts instead.")


class PredictRequest(BaseModel):
    """One text (``text``) or several (``texts``); exactly one of the two."""

    # strict: a number is not silently turned into the string "3".
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "examples": [{"text": "A charming, funny film."},
                     {"texts": ["A charming, funny film.", "Dull and far too long."]}],
    })

    text: str | None = Field(None, description="One text to classify.")
    texts: list[str] | None = Field(None, description="Several texts, answered in input order.")
    text_pair: str | None = Field(
        None, description="The second text of `text`, for a model trained on text pairs.")
    text_pairs: list[str] | None = Field(
        None, description="The second text of each of `texts`, for a model trained on pairs.")

    @field_validator("texts", "text_pairs")
    @classmethod
    def _not_empty_list(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("must hold at least one text")
        return value

    def items(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])

    def second_items(self) -> list[str] | None:
        if self.text_pair is None and self.text_pairs is None:
            return None
        return [self.text_pair] if self.text_pair is not None else list(self.text_pairs or [])


class Prediction(BaseModel):
    """The answer for one text."""

    label: str = Field(description="The most probable label.")
    score: float = Field(description="Probability of `label`, in [0, 1].")
    probabilities: dict[str, float] = Field(description="Probability of every label.")


class PredictResponse(BaseModel):
    """Predictions in input order, and which model gave them."""

    predictions: list[Prediction]
    trial_id: str | None = Field(description="Trial whose checkpoint answered.")
    model_id: str = Field(description="Short hash of the weights that answered.")


class Health(BaseModel):
    status: str = Field(description="`ok` once the model is loaded.")


class ModelInfo(BaseModel):
    """What is deployed: enough to tell exactly which model answered."""

    model_config = ConfigDict(protected_namespaces=())

    trial_id: str | None
    model_id: str = Field(description="Short sha256 of model.safetensors.")
    source: str | None = Field(description="Sweep (or directory) the checkpoint came from.")
    model_dir: str
    label_names: list[str]
    params: dict[str, Any] = Field(description="The trial's hyperparameters.")
    val_metrics: dict[str, Any] = Field(description="Validation metrics of the best epoch.")
    test_metrics: dict[str, Any] | None = Field(description="Test metrics, once evaluated.")
    lexical_weight: float = Field(0.0, description="The words' share (0-1) of the export's "
                                  "lexical layer (TF-IDF + linear SVM) in every answer; "
                                  "0: none, 1: the words alone.")
    loaded_at: str = Field(description="When this replica loaded the model (UTC, ISO 8601).")
    device: str
    dtype: str


class Stats(BaseModel):
    """Batching counters of the replica that answered."""

    replica: str
    requests: int
    texts: int
    batches: int
    max_batch_requests: int = Field(description="Most requests merged into one batch.")
    mean_batch_requests: float
    mean_batch_texts: float
    peak_rss_mib: float = Field(description="Peak resident memory of the replica, MiB.")
    gpu_peak_mib: float | None = Field(description="Peak GPU memory allocated, MiB (GPU only).")


def _check_text(value: str, where: str, limits: Limits) -> None:
    allowed = f"non-blank strings of at most {limits.max_chars} characters"
    if not value.strip():
        raise RequestError(422, "empty_text", f"{where} is empty or only whitespace", allowed)
    if len(value) > limits.max_chars:
        raise RequestError(
            422, "text_too_long",
            f"{where} has {len(value)} characters; the limit is {limits.max_chars}", allowed,
        )


def _describe(error: dict[str, Any]) -> RequestError:
    loc = error["loc"]
    where = loc[0] if len(loc) == 1 else f"{loc[0]}[{loc[1]}]" if loc else "body"
    kind = error["type"]
    if kind == "json_invalid":
        reason = error.get("ctx", {}).get("error", error["msg"])
        return RequestError(400, "malformed_json", f"body is not valid JSON: {reason}",
                            REQUEST_SHAPE)
    if kind == "extra_forbidden":
        return RequestError(422, "unknown_field", f"unknown field {where!r}",
                            f"only the fields text or texts (and text_pair / text_pairs for a "
                            f"pair model): {REQUEST_SHAPE}")
    if kind in ("string_type", "list_type", "model_type", "model_attributes_type"):
        got = type(error["input"]).__name__ if error["input"] is not None else "null"
        want = {"string_type": "a string", "list_type": "a list of strings"}.get(kind, "an object")
        return RequestError(422, "wrong_type", f"{where} must be {want}, got {got}", REQUEST_SHAPE)
    message = error["msg"].removeprefix("Value error, ")
    return RequestError(422, "invalid_request", f"{where}: {message}", REQUEST_SHAPE)


def parse_predict_body(body: bytes, limits: Limits) -> list[str] | list[tuple[str, str]]:
    """The texts (text pairs, for a pair model) of a ``/predict`` body, or a
    :class:`RequestError` saying what is wrong."""
    if len(body) > limits.max_body_bytes:
        raise body_too_large(len(body), limits)
    try:
        request = PredictRequest.model_validate_json(body)
    except ValidationError as err:
        raise _describe(err.errors()[0]) from None
    if request.text is None and request.texts is None:
        raise RequestError(422, "missing_field", "give a 'text' or 'texts' field", REQUEST_SHAPE)
    if request.text is not None and request.texts is not None:
        raise RequestError(422, "ambiguous_request", "give 'text' or 'texts', not both",
                           REQUEST_SHAPE)
    texts = request.items()
    if len(texts) > limits.max_texts:
        raise RequestError(422, "too_many_texts",
                           f"{len(texts)} texts in one request; the limit is {limits.max_texts}",
                           f"at most {limits.max_texts} texts per request; split the list")
    for i, text in enumerate(texts):
        _check_text(text, "text" if request.text is not None else f"texts[{i}]", limits)
    return _with_pairs(request, texts, limits)


def _with_pairs(request: PredictRequest, texts: list[str], limits: Limits):
    """Single texts, or (text, second text) tuples when the model classifies pairs."""
    seconds = request.second_items()
    if not limits.pairs:
        if seconds is not None:
            raise RequestError(422, "unexpected_text_pair", "this model classifies single "
                               "texts; it was not trained on text pairs", REQUEST_SHAPE)
        return texts
    single = request.text is not None
    if seconds is None or (request.text_pair is not None) != single:
        raise RequestError(422, "missing_text_pair", "this model classifies text pairs: give "
                           "text with text_pair, or texts with text_pairs", PAIR_SHAPE)
    if len(seconds) != len(texts):
        raise RequestError(422, "pair_count_mismatch", f"{len(texts)} texts but "
                           f"{len(seconds)} text_pairs", "one text_pair per text")
    for i, second in enumerate(seconds):
        _check_text(second, "text_pair" if single else f"text_pairs[{i}]", limits)
    return list(zip(texts, seconds, strict=True))


def body_too_large(size: int | None, limits: Limits) -> RequestError:
    got = f"{size} bytes" if size is not None else "more bytes"
    return RequestError(413, "body_too_large",
                        f"request body has {got}; the limit is {limits.max_body_bytes} bytes",
                        f"bodies of at most {limits.max_body_bytes} bytes")
