"""The lexical layer: a TF-IDF + linear SVM (the quality benchmark's baseline), its scores
calibrated into log-probabilities, pooled with the transformer at a share (weight) chosen on
validation.

Why: on small data where the label is carried by words (names, set phrases), a bag of word
n-grams reads every word of every text in a second, and a fine-tune on 2 CPU cores sees a few
epochs of the first 512 tokens. The two make different errors, and a product of experts (the
words' log-probabilities added to the model's, renormalised) beats either alone on such data
(BENCHMARKS.md). The words' share ``w`` runs from 0 (the transformer alone) through the additive
weights ``w / (1 - w)`` to 1 (the words alone: on a few hundred long texts a 2-core budget can
leave the transformer worse than a bag of n-grams, and then the user should get the better of
the two); validation picks it, preferring the smaller on a tie.

The layer lives beside the weights of an exported model (``lexical.safetensors``: idf, coef and
intercept; ``lexical.json``: the vocabulary and the weight), so it loads without pickle, and
everything that scores or serves a model (:func:`search.best.evaluate_export`, the endpoint, the
dashboard) applies it the same way through :func:`fuse`. A plain
``transformers.pipeline`` on the export reads the transformer alone. The files hold a linear model
over the TF-IDF features whatever fit it, so layers fit before the SVM (a logistic regression)
load and score as they did.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LEXICAL_FILE", "LEXICAL_META", "VERSION", "WEIGHTS", "LexicalLayer", "choose_weight",
           "fit_layer", "fuse", "fuse_probs", "load_layer", "log_softmax"]

LEXICAL_FILE = "lexical.safetensors"
LEXICAL_META = "lexical.json"
#: The words' shares validation chooses from: 0 is the transformer alone, 1 the words alone;
#: 0.2 to 0.9 add the words' log-probabilities at 0.25 to 9 times (w / (1 - w)).
WEIGHTS = (0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0)
#: The layer's file format, recorded in ``lexical.json``. Version 1 (no key) stored the additive
#: weight k itself, without a words-alone end: its share is k / (1 + k).
VERSION = 2
#: Word uni- and bigrams, log-scaled counts: the usual strong TF-IDF setting. The vocabulary is
#: capped (the most frequent terms) so a large corpus keeps the layer a few MB.
VECTORIZER = {"ngram_range": (1, 2), "sublinear_tf": True, "min_df": 1, "lowercase": True,
              "max_features": 200_000}
#: The linear SVM's settings: scikit-learn's defaults (squared hinge, C = 1), the TF-IDF
#: baseline's. Over 10 split seeds its words alone beat the logistic regression (C = 10) the layer
#: used before on all three benchmark datasets (BENCHMARKS.md, quality, "The words' model").
SVM = {"C": 1.0, "max_iter": 5000, "random_state": 0}
#: Folds of the cross-validation that calibrates the SVM's scores (:func:`_temperature`).
CALIBRATION_FOLDS = 3


@dataclass
class LexicalLayer:
    """A fitted TF-IDF + calibrated linear SVM and the words' share ``weight`` (:func:`fuse`)."""

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
            {"version": VERSION, "weight": self.weight, "terms": self.terms,
             "vectorizer": _jsonable(VECTORIZER), "classifier": "linear_svm",
             "svm": SVM}))


def fit_layer(texts: Sequence[str], labels: Sequence[int], num_labels: int) -> LexicalLayer:
    """Fit the TF-IDF vocabulary and a linear SVM on the training texts, its scores scaled by the
    temperature that makes them log-probabilities (weight 0 until :func:`choose_weight` sets it).
    The scaled SVM is stored as the layer's coef and intercept, so scoring stays one product."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(**VECTORIZER, dtype=np.float32)
    features = vectorizer.fit_transform(list(texts))
    labels = np.asarray(labels)
    coef, intercept = _fit_svm(features, labels, num_labels)
    temperature = _temperature(features, labels, num_labels)
    terms = [t for t, _ in sorted(vectorizer.vocabulary_.items(), key=lambda kv: kv[1])]
    return LexicalLayer(terms=terms, idf=vectorizer.idf_.astype(np.float32),
                        coef=coef * temperature, intercept=intercept * temperature)


def _fit_svm(features, labels: np.ndarray, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """A one-vs-rest linear SVM as (labels, terms) coef and (labels,) intercept, a row per label
    id: a label absent from ``labels`` gets zeros, and two labels one row (the second's), since
    softmax([0, z]) ranks as the binary SVM's score z does."""
    from sklearn.svm import LinearSVC

    coef = np.zeros((num_labels, features.shape[1]), dtype=np.float32)
    intercept = np.zeros(num_labels, dtype=np.float32)
    classes = np.unique(labels)
    if len(classes) < 2:  # one label seen: it wins every text
        intercept[classes] = 1.0
        return coef, intercept
    model = LinearSVC(**SVM).fit(features, labels)
    if len(model.classes_) == 2:
        coef[model.classes_[1]], intercept[model.classes_[1]] = model.coef_[0], model.intercept_[0]
    else:
        coef[model.classes_], intercept[model.classes_] = model.coef_, model.intercept_
    return coef, intercept


def _temperature(features, labels: np.ndarray, num_labels: int) -> float:
    """The scale t that makes softmax(t * SVM scores) calibrated probabilities: the one with the
    lowest log-loss on out-of-fold scores of the training texts (Platt scaling with one shared
    parameter). An SVM's margins have no probability scale of their own, and the share grid means
    what it says only if the words' log-probabilities are honest. 1 when a fold cannot be made."""
    from scipy.optimize import minimize_scalar
    from sklearn.model_selection import StratifiedKFold

    counts = np.unique(labels, return_counts=True)[1]
    folds = min(CALIBRATION_FOLDS, int(counts.min()))
    if folds < 2 or len(counts) < 2:
        return 1.0
    scores = np.zeros((len(labels), num_labels))
    for train, held in StratifiedKFold(folds, shuffle=True, random_state=0).split(features, labels):
        coef, intercept = _fit_svm(features[train], labels[train], num_labels)
        scores[held] = np.asarray(features[held] @ coef.T) + intercept
    rows = np.arange(len(labels))

    def log_loss(t: float) -> float:
        return -float(np.mean(log_softmax(t * scores)[rows, labels]))

    return float(minimize_scalar(log_loss, bounds=(0.01, 100.0), method="bounded").x)


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
    """Log-probabilities of the product of experts at the words' share ``weight``: the model's
    plus ``weight / (1 - weight)`` times the words', renormalised (so words that say nothing
    change nothing, and the model's confidence keeps its scale). Share 0 (or no layer) returns
    the model's own, share 1 the words' own."""
    if lexical_log_probs is None or weight == 0:
        return model_log_probs
    if weight >= 1:
        return lexical_log_probs
    return log_softmax(model_log_probs + weight / (1 - weight) * lexical_log_probs)


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
    weight = float(meta.get("weight") or 0)
    if not weight:
        return None
    if meta.get("version", 1) == 1:  # an additive weight k: the share of the same figures
        weight = weight / (1 + weight)
    tensors = load_file(str(directory / LEXICAL_FILE))
    return LexicalLayer(terms=meta["terms"], idf=tensors["idf"], coef=tensors["coef"],
                        intercept=tensors["intercept"], weight=weight)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _jsonable(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
