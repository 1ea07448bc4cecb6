"""Readers, splits, tokenization and batching on small local data."""

import numpy as np
import pandas as pd
import pytest

from search.batching import iter_batches, length_grouped_order
from search.config import DataConfig
from search.data import prepare_data
from search.model import load_tokenizer
from search.sources import load_labeled_frame
from search.splits import split_frame
from tests.conftest import make_reviews


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".json-lines",
                                    ".parquet"])
def test_each_format_loads_with_custom_columns_and_three_labels(tmp_path, suffix):
    frame = pd.DataFrame({
        "review": [f"text, {i}\twith \"quotes\"" if i == 0 else f"text {i}" for i in range(30)],
        "sentiment": ["neg", "neu", "pos"] * 10,
    })
    path = tmp_path / f"d{suffix.removesuffix('-lines')}"
    {".csv": lambda: frame.to_csv(path, index=False),
     ".tsv": lambda: frame.to_csv(path, index=False, sep="\t"),
     ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
     ".json": lambda: frame.to_json(path, orient="records", indent=1),  # one JSON array
     ".json-lines": lambda: frame.to_json(path, orient="records", lines=True),
     ".parquet": lambda: frame.to_parquet(path)}[suffix]()
    cfg = DataConfig(source=str(path), text_column="review", label_column="sentiment")
    loaded, names = load_labeled_frame(cfg)
    assert names == ["neg", "neu", "pos"]
    assert loaded["label"].tolist()[:3] == [0, 1, 2]
    assert loaded["text"].iloc[0] == 'text, 0\twith "quotes"'


def _write_splits(tmp_path, sizes=(60, 20, 20)) -> dict[str, str]:
    paths = {}
    for seed, (name, n) in enumerate(zip(("train", "validation", "test"), sizes, strict=True)):
        paths[name] = str(tmp_path / f"{name}.csv")
        make_reviews(n, seed=seed).to_csv(paths[name], index=False)
    return paths


def test_given_splits_are_used_as_given_and_all_three_are_fingerprinted(tmp_path, tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    paths = _write_splits(tmp_path)
    data = prepare_data(DataConfig(**paths), tok)
    assert data.sizes == {"train": 60, "validation": 20, "test": 20}  # no split was made
    assert data.label_names == ["neg", "pos"]
    fingerprints = {data.fingerprint}
    for name in ("validation", "test"):  # each file counts in the fingerprint
        changed = tmp_path / f"other-{name}.csv"
        make_reviews(20, seed=9).to_csv(changed, index=False)
        fingerprints.add(prepare_data(DataConfig(**{**paths, name: str(changed)}), tok).fingerprint)
    assert len(fingerprints) == 3


def test_given_splits_need_all_three_and_known_labels(tmp_path, tiny_model_dir):
    from search.config import ConfigError, load_config
    from search.sources import DataError

    paths = _write_splits(tmp_path)
    with pytest.raises(ConfigError, match="data.test not set"):
        load_config(None, [f"data.train={paths['train']}",
                           f"data.validation={paths['validation']}"])
    odd = make_reviews(20, seed=1)
    odd.loc[3, "label"] = "meh"
    odd.to_csv(paths["test"], index=False)
    with pytest.raises(DataError, match="row 4: label 'meh' is not among the training split's"):
        prepare_data(DataConfig(**paths), load_tokenizer(tiny_model_dir))


def test_multi_label_rows_are_refused_by_row(tmp_path):
    from search.sources import DataError

    path = tmp_path / "d.jsonl"
    frame = make_reviews(10)
    frame["label"] = frame["label"].astype(object)
    frame.at[2, "label"] = ["pos", "neg"]
    frame.to_json(path, orient="records", lines=True)
    with pytest.raises(DataError, match="row 3: the label is a list"):
        load_labeled_frame(DataConfig(source=str(path)))


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


def _padding_share(lengths: np.ndarray, order: np.ndarray, batch_size: int) -> float:
    batches = [lengths[order[s : s + batch_size]] for s in range(0, len(order), batch_size)]
    padded = sum(len(b) * b.max() for b in batches)
    return 1 - lengths.sum() / padded


def test_length_grouped_order_is_a_random_permutation_with_less_padding():
    lengths = np.random.default_rng(1).integers(5, 65, size=1000)
    grouped = length_grouped_order(lengths, 32, np.random.default_rng(0))
    assert sorted(grouped.tolist()) == list(range(1000))  # every example exactly once
    again = length_grouped_order(lengths, 32, np.random.default_rng(0))
    other = length_grouped_order(lengths, 32, np.random.default_rng(1))
    assert (grouped == again).all() and not (grouped == other).all()  # seeded, yet random
    shuffled = np.random.default_rng(0).permutation(1000)
    assert _padding_share(lengths, grouped, 32) < _padding_share(lengths, shuffled, 32) / 3
    batch_max = [lengths[grouped[s : s + 32]].max() for s in range(0, 1000, 32)]
    assert batch_max != sorted(batch_max) and batch_max != sorted(batch_max, reverse=True)


def test_length_grouped_batches_cover_the_split(tmp_path, tiny_model_dir):
    path = tmp_path / "d.csv"
    make_reviews(60).to_csv(path, index=False)
    data = prepare_data(DataConfig(source=str(path), max_length=16), load_tokenizer(tiny_model_dir))
    batches = list(iter_batches(data.train, 8, data.pad_id, shuffle=True, by_length=True,
                                generator=np.random.default_rng(0)))
    seen = np.concatenate([b["index"].numpy() for b in batches])
    assert sorted(seen.tolist()) == list(range(len(data.train)))
