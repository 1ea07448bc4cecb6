"""The lexical layer: a TF-IDF + logistic-regression model whose log-probabilities are added to
the transformer's, with a weight chosen on validation.

Why: on small data where the label is carried by words (names, set phrases), a bag of word
n-grams reads every word of every text in a second, and a fine-tune on 2 CPU cores sees a few
epochs of the first 512 tokens. The two make different errors, and the sum of their
log-probabilities (a product of experts) beats either alone on such data (BENCHMARKS.md). Where
it does not help, validation picks weight 0 and the model is the transformer alone.

The layer lives beside the weights of an exported model (``lexical.safetensors``: idf, coef and
intercept; ``lexical.json``: the vocabulary and the weight), so it loads without pickle, and
everything that scores or serves a model (:func:`search.best.evaluate_export`, the endpoint, the
dashboard) applies it the same way through :func:`fuse`. A plain
``transformers.pipeline`` on the export reads the transformer alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LEXICAL_FILE", "LEXICAL_META", "WEIGHTS", "LexicalLayer", "choose_weight",
           "fit_layer", "fuse", "fuse_probs", "load_layer", "log_softmax"]

LEXICAL_FILE = "lexical.safetensors"
LEXICAL_META = "lexical.json"
#: The weights validation chooses from: 0 is the transformer alone; at 4 the words dominate.
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
#: Word uni- and bigrams, log-scaled counts: the usual strong TF-IDF setting. The vocabulary is
#: capped (the most frequent terms) so a large corpus keeps the layer a few MB.
VECTORIZER = {"ngram_range": (1, 2), "sublinear_tf": True, "min_df": 1, "lowercase": True,
              "max_features": 200_000}
#: Inverse regularisation of the logistic regression (large: TF-IDF features are small).
C = 10.0


@dataclass
class LexicalLayer:
    """A fitted TF-IDF + logistic regression and the weight of its log-probabilities."""

    terms: list[str]  # the vocabulary, in column order
    idf: np.ndarray  # (terms,)
    coef: np.ndarray  # (labels, terms)
    intercept: np.ndarray  # (labels,)
    weight: float = 0.0

    def __post_init__(self) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._vectorizer = TfidfVectorizer(**VECTORIZER, dtype=np.float32,
                                           vocabulary={t: i for i, t in enumerate(self.terms)})
        self._vectorizer.idf_ = self.idf  # fitted state, set: no refit, no pickle

    def log_probs(self, texts: Sequence[str]) -> np.ndarray:
        """(texts, labels) log-probabilities of the words alone."""
        features = self._vectorizer.transform(list(texts))
        return log_softmax(np.asarray(features @ self.coef.T) + self.intercept)

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        directory = Path(directory)
        save_file({"idf": self.idf.astype(np.float32), "coef": self.coef.astype(np.float32),
                   "intercept": self.intercept.astype(np.float32)},
                  str(directory / LEXICAL_FILE))
        (directory / LEXICAL_META).write_text(json.dumps(
            {"weight": self.weight, "terms": self.terms, "vectorizer": _jsonable(VECTORIZER),
             "C": C}))


def fit_layer(texts: Sequence[str], labels: Sequence[int], num_labels: int) -> LexicalLayer:
    """Fit the TF-IDF vocabulary and a logistic regression on the training texts (weight 0
    until :func:`choose_weight` sets it)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(**VECTORIZER, dtype=np.float32)
    features = vectorizer.fit_transform(list(texts))
    model = LogisticRegression(C=C, max_iter=2000).fit(features, np.asarray(labels))
    coef = np.zeros((num_labels, features.shape[1]), dtype=np.float32)
    intercept = np.zeros(num_labels, dtype=np.float32)
    if len(model.classes_) == 2:  # one row for the second class: softmax([0, z]) = sigmoid(z)
        coef[model.classes_[1]], intercept[model.classes_[1]] = model.coef_[0], model.intercept_[0]
    else:
        coef[model.classes_] = model.coef_
        intercept[model.classes_] = model.intercept_
    terms = [t for t, _ in sorted(vectorizer.vocabulary_.items(), key=lambda kv: kv[1])]
    return LexicalLayer(terms=terms, idf=vectorizer.idf_.astype(np.float32), coef=coef,
                        intercept=intercept)


def choose_weight(model_log_probs: np.ndarray, lexical_log_probs: np.ndarray,
                  labels: np.ndarray) -> tuple[float, dict[str, dict[str, float]]]:
    """The weight (of :data:`WEIGHTS`) whose fused predictions score best on validation:
    the highest accuracy, then the lowest log-loss (a small validation split ties often on
    accuracy), then the smaller weight. Returns it and every weight's two figures."""
    labels = np.asarray(labels)
    table = {}
    for weight in WEIGHTS:
        fused = fuse(model_log_probs, lexical_log_probs, weight)
        table[str(weight)] = {
            "accuracy": float(np.mean(fused.argmax(-1) == labels)),
            "log_loss": -float(np.mean(fused[np.arange(len(labels)), labels])),
        }
    # Rounded: weights that change no prediction differ in log-loss by rounding error only.
    best = max(WEIGHTS, key=lambda w: (table[str(w)]["accuracy"],
                                       -round(table[str(w)]["log_loss"], 9), -w))
    return best, table


def fuse(model_log_probs: np.ndarray, lexical_log_probs: np.ndarray | None,
         weight: float) -> np.ndarray:
    """Log-probabilities of the product of experts: the model's, plus ``weight`` times the
    words', renormalised. Weight 0 (or no layer) returns the model's own."""
    if lexical_log_probs is None or weight == 0:
        return model_log_probs
    return log_softmax(model_log_probs + weight * lexical_log_probs)


def fuse_probs(probs: np.ndarray, texts: Sequence[str], layer: LexicalLayer | None) -> np.ndarray:
    """:func:`fuse` for a loader that has the model's probabilities (the endpoint, the
    dashboard): (texts, labels) probabilities with the layer applied, or ``probs`` without one."""
    if layer is None:
        return probs
    with np.errstate(divide="ignore"):  # a probability of 0 is a log of -inf: kept
        own = np.log(probs)
    return np.exp(fuse(own, layer.log_probs(texts), layer.weight))


def load_layer(directory: Path) -> LexicalLayer | None:
    """The lexical layer saved beside a model, or None when there is none (or its weight is 0)."""
    from safetensors.numpy import load_file

    directory = Path(directory)
    if not (directory / LEXICAL_FILE).is_file():
        return None
    meta = json.loads((directory / LEXICAL_META).read_text())
    if not meta.get("weight"):
        return None
    tensors = load_file(str(directory / LEXICAL_FILE))
    return LexicalLayer(terms=meta["terms"], idf=tensors["idf"], coef=tensors["coef"],
                        intercept=tensors["intercept"], weight=float(meta["weight"]))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _jsonable(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
