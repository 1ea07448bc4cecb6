"""Per-class metrics, computed without scikit-learn in the product, equal scikit-learn's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from search.metrics import classification_metrics, per_class_json, per_class_table

# Three classes, none perfect; class 2 is never predicted (its precision is 0 by convention).
LABELS = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 0, 1, 2])
PREDS = np.array([0, 1, 0, 1, 1, 0, 1, 1, 0, 0, 1, 1])


def test_per_class_figures_and_confusion_equal_scikit_learns():
    sk = pytest.importorskip("sklearn.metrics")
    ours = classification_metrics(LABELS, PREDS, 3)
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        LABELS, PREDS, labels=[0, 1, 2], zero_division=0)
    assert ours["per_class"]["precision"] == pytest.approx(precision.tolist())
    assert ours["per_class"]["recall"] == pytest.approx(recall.tolist())
    assert ours["per_class"]["f1"] == pytest.approx(f1.tolist())
    assert ours["per_class"]["support"] == support.tolist()
    assert ours["confusion"] == sk.confusion_matrix(LABELS, PREDS, labels=[0, 1, 2]).tolist()
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(LABELS, PREDS))
    assert ours["f1_macro"] == pytest.approx(
        sk.f1_score(LABELS, PREDS, labels=[0, 1, 2], average="macro", zero_division=0))
    assert ours["f1_worst"] == pytest.approx(min(f1)) and ours["f1_worst"] == 0.0


def test_a_class_absent_from_the_split_is_not_the_worst():
    # Four label ids, class 3 has no example: its F1 is 0 but it cannot be failed.
    ours = classification_metrics(LABELS, PREDS, 4)
    assert ours["per_class"]["support"][3] == 0
    worst_present = min(ours["per_class"]["f1"][:3])
    assert ours["f1_worst"] == worst_present
    perfect = classification_metrics(np.array([0, 1]), np.array([0, 1]), 3)
    assert perfect["f1_worst"] == 1.0


def test_the_record_round_trips_as_a_labelled_table():
    record = per_class_json(classification_metrics(LABELS, PREDS, 3), ["neg", "neu", "pos"])
    table = per_class_table(record)
    assert list(table.index) == ["neg", "neu", "pos"]
    assert table.loc["pos", "support"] == 3 and table.loc["pos", "precision"] == 0.0
    assert json.loads(record)["confusion"][2] == [1, 2, 0]
    assert per_class_table(None) is None
