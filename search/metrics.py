"""Classification metrics from labels and predictions: accuracy, macro- and worst-class F1,
precision / recall / F1 per class and the confusion matrix. numpy only; the tests check every
figure against scikit-learn's."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

__all__ = ["classification_metrics", "confusion_matrix", "per_class_json", "per_class_record",
           "per_class_table", "read_per_class"]


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_labels: int) -> np.ndarray:
    """``[true class, predicted class]`` counts."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(preds)), 1)
    return matrix


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # 0 where the denominator is 0 (scikit-learn's zero_division=0).
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)),
                     where=denominator > 0)


def classification_metrics(labels: np.ndarray, preds: np.ndarray,
                           num_labels: int) -> dict[str, Any]:
    """Scalar metrics, plus ``per_class`` (precision, recall, F1 and support lists, in label-id
    order) and ``confusion`` (a list of rows) for the JSON records."""
    matrix = confusion_matrix(labels, preds, num_labels)
    hits = np.diag(matrix).astype(np.float64)
    support, predicted = matrix.sum(1), matrix.sum(0)
    precision, recall = _ratio(hits, predicted), _ratio(hits, support)
    f1 = _ratio(2 * hits, support + predicted)
    present = support > 0  # a class absent from the split has no F1 to be worst at
    return {
        "accuracy": float(hits.sum() / max(1, matrix.sum())),
        "f1_macro": float(f1.mean()),
        "f1_worst": float(f1[present].min()) if present.any() else 0.0,
        "per_class": {"precision": precision.tolist(), "recall": recall.tolist(),
                      "f1": f1.tolist(), "support": support.tolist()},
        "confusion": matrix.tolist(),
    }


def per_class_record(metrics: dict[str, Any], label_names: list[str]) -> dict[str, Any]:
    """The per-class figures and the confusion matrix of one evaluation, under its labels."""
    return {"labels": list(label_names), **metrics["per_class"],
            "confusion": metrics["confusion"]}


def per_class_json(metrics: dict[str, Any], label_names: list[str]) -> str:
    """:func:`per_class_record` as one JSON string (a column of the trials table)."""
    return json.dumps(per_class_record(metrics, label_names))


def read_per_class(record: str | dict | None) -> dict[str, Any] | None:
    """A per-class record (JSON string or dict), or None when there is none."""
    if record is None or (isinstance(record, float) and np.isnan(record)):
        return None
    return json.loads(record) if isinstance(record, str) else record


def per_class_table(record: str | dict | None):
    """A per-class record as a frame: one row per label (precision, recall, F1, support)."""
    import pandas as pd

    data = read_per_class(record)
    if data is None:
        return None
    return pd.DataFrame({k: data[k] for k in ("precision", "recall", "f1", "support")},
                        index=pd.Index(data["labels"], name="label"))
