"""Readers, splits, tokenization and batching on small local data."""

import numpy as np
import pandas as pd
import pytest

from search.config import DataConfig
from search.data import iter_batches, load_labeled_frame, prepare_data, split_frame
from search.model import load_tokenizer
from tests.conftest import make_reviews


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_each_format_loads_with_custom_columns_and_three_labels(tmp_path, suffix):
    frame = pd.DataFrame({
        "review": [f"text {i}" for i in range(30)],
        "sentiment": ["neg", "neu", "pos"] * 10,
    })
    path = tmp_path / f"d{suffix}"
    {".csv": lambda: frame.to_csv(path, index=False),
     ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
     ".parquet": lambda: frame.to_parquet(path)}[suffix]()
    cfg = DataConfig(source=str(path), text_column="review", label_column="sentiment")
    loaded, names = load_labeled_frame(cfg)
    assert names == ["neg", "neu", "pos"]
    assert loaded["label"].tolist()[:3] == [0, 1, 2]
    assert loaded["text"].iloc[0] == "text 0"


def test_integer_labels_sort_numerically(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": list("abcdefghijkl"), "label": [2, 10] * 6}).to_csv(path, index=False)
    _, names = load_labeled_frame(DataConfig(source=str(path)))
    assert names == ["2", "10"]


def test_split_is_stratified_disjoint_and_seeded(reviews_csv):
    cfg = DataConfig(source=str(reviews_csv), val_fraction=0.2, test_fraction=0.2)
    frame, names = load_labeled_frame(cfg)
    a = split_frame(frame, cfg, names)
    b = split_frame(frame, cfg, names)
    assert a.train.equals(b.train)
    together = pd.concat([a.train, a.validation, a.test])
    assert sorted(together["text"]) == sorted(frame["text"])  # a partition: nothing lost or doubled
    for split in (a.validation, a.test):
        assert split["label"].value_counts().min() >= 1
        assert abs(split["label"].mean() - frame["label"].mean()) < 0.1


def test_prepare_tokenizes_once_and_batches_pad_dynamically(tmp_path, tiny_model_dir):
    path = tmp_path / "d.csv"
    make_reviews(60).to_csv(path, index=False)
    cfg = DataConfig(source=str(path), max_length=16, max_train_examples=20)
    data = prepare_data(cfg, load_tokenizer(tiny_model_dir))
    assert data.sizes["train"] == 20
    assert data.label_names == ["neg", "pos"]
    assert data.train.lengths.max() <= 16
    batches = list(iter_batches(data.train, 8, data.pad_id))
    assert [len(b["labels"]) for b in batches] == [8, 8, 4]
    for batch in batches:
        width = batch["input_ids"].shape[1]
        assert width == int(batch["attention_mask"].sum(1).max())  # padded to the batch's longest
        pads = batch["input_ids"][batch["attention_mask"] == 0]
        assert (pads == data.pad_id).all()


def test_fingerprint_changes_with_the_data(tmp_path, tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    fingerprints = []
    for seed in (0, 1):
        path = tmp_path / f"d{seed}.csv"
        make_reviews(60, seed=seed).to_csv(path, index=False)
        fingerprints.append(prepare_data(DataConfig(source=str(path)), tok).fingerprint)
    assert fingerprints[0] != fingerprints[1]


def test_unlabeled_corpus_is_tokenized(tmp_path, tiny_model_dir, reviews_csv):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the movie was fun\n\nthe plot was a mess\n")
    cfg = DataConfig(source=str(reviews_csv), unlabeled_path=str(corpus))
    data = prepare_data(cfg, load_tokenizer(tiny_model_dir))
    assert len(data.unlabeled) == 2
    assert data.unlabeled.labels is None
    shuffled = list(iter_batches(data.train, 4, data.pad_id, shuffle=True,
                                 generator=np.random.default_rng(0)))
    assert sum(len(b["index"]) for b in shuffled) == len(data.train)
