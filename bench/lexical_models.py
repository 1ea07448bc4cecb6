r"""The lexical layer's words alone: which linear model over TF-IDF n-grams it should be.

For each dataset and split seed (the quality benchmark's splits), three models over the same word
uni- and bigram TF-IDF features, trained on the training split and scored on the test split:

- ``svm``: the quality benchmark's TF-IDF baseline (``LinearSVC()``, scikit-learn's defaults);
- ``logreg``: the layer before 70f3330, a logistic regression at C = 10;
- ``layer``: :func:`search.lexical.fit_layer` now, the baseline's SVM with its scores scaled by a
  temperature fit on 3-fold out-of-fold scores.

Accuracy, and log-loss where a model gives probabilities (the share grid adds the words'
log-probabilities, so their calibration matters). Seconds of CPU, no GPU, no transformer.

    .venv/bin/python bench/lexical_models.py                    # 10 seeds of debates and speeches
    .venv/bin/python bench/lexical_models.py --datasets reviews --seeds 0 1 2 3 4

Writes bench/results/lexical_models[-TAG].json and prints the table (means +- sd over seeds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import print_table, write_json  # noqa: E402
from bench.datasets import load  # noqa: E402

CONFIG = ROOT / "configs" / "default.yaml"


def _splits(source: str, seed: int):
    from search.config import load_config
    from search.sources import load_labeled_frame
    from search.splits import split_frame

    cfg = load_config(CONFIG, [f"data.source={source}", f"data.split_seed={seed}"])
    frame, names = load_labeled_frame(cfg.data)
    return split_frame(frame, cfg.data, names), len(names)


def _scores(log_probs: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {"accuracy": float(np.mean(log_probs.argmax(-1) == truth)),
            "log_loss": -float(np.mean(log_probs[np.arange(len(truth)), truth]))}


def measure(dataset: str, seed: int) -> dict[str, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    from search.lexical import VECTORIZER, fit_layer

    splits, num_labels = _splits(load(dataset).source, seed)
    train, test = splits.train["text"].tolist(), splits.test["text"].tolist()
    labels, truth = splits.train["label"].to_numpy(), splits.test["label"].to_numpy()
    vectorizer = TfidfVectorizer(**VECTORIZER, dtype=np.float32)
    features, unseen = vectorizer.fit_transform(train), vectorizer.transform(test)
    svm = LinearSVC().fit(features, labels).predict(unseen)
    logreg = LogisticRegression(C=10.0, max_iter=2000).fit(features, labels)
    row = {"dataset": dataset, "seed": seed, "test_examples": len(truth),
           "svm": {"accuracy": float(np.mean(svm == truth))},
           "logreg": _scores(np.log(logreg.predict_proba(unseen)), truth),
           "layer": _scores(fit_layer(train, labels, num_labels).log_probs(test), truth)}
    return row


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        mine = [r for r in runs if r["dataset"] == dataset]
        row: dict[str, Any] = {"dataset": dataset, "seeds": len(mine)}
        for model in ("svm", "logreg", "layer"):
            row[f"{model}_accuracy"] = _mean_sd([r[model]["accuracy"] for r in mine])
        for model in ("logreg", "layer"):
            row[f"{model}_log_loss"] = _mean_sd([r[model]["log_loss"] for r in mine])
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["debates", "speeches"])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    runs = [measure(dataset, seed) for dataset in args.datasets for seed in args.seeds]
    rows = summarize(runs)
    print_table(rows, list(rows[0]))
    name = "lexical_models" + (f"-{args.tag}" if args.tag else "")
    write_json(name, {"argv": sys.argv, "summary": rows, "runs": runs})


if __name__ == "__main__":
    main()
