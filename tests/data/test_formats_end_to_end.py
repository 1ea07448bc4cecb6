"""Every data format a user can bring trains end to end and exports a model that
``transformers.pipeline`` loads: TSV, a JSON array, given splits, a ``datasets`` dataset saved
with ``save_to_disk`` (split by sftune, or a DatasetDict used as given), and text pairs."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search.artifacts import export_checkpoint, read_meta
from search.best import evaluate_checkpoint
from search.model import load_tokenizer
from search.sources import DataError
from search.train import Trainer
from tests.conftest import NEGATIVE, POSITIVE, make_reviews, tiny_config, tiny_data
from tests.model.test_families import make_family_model

datasets = pytest.importorskip("datasets")  # the optional extra; `make test` installs it


def _train_and_export(cfg, model_dir: Path, tmp_path: Path) -> tuple[Path, object]:
    trainer = Trainer(cfg=cfg, params=cfg.default_params(), data=tiny_data(cfg),
                      model_dir=model_dir, workdir=tmp_path / "trial")
    result = trainer.fit()
    assert result.best["val_accuracy"] > 0.75, result.history
    return export_checkpoint(result.checkpoint_dir, tmp_path / "export"), trainer


def _assert_pipeline_labels(export: Path, labels: set[str]) -> None:
    from transformers import pipeline

    scores = pipeline("text-classification", model=str(export))(["great fun", "awful mess"])
    assert {s["label"] for s in scores} <= labels


def _class_label_dataset(frame: pd.DataFrame):
    """A Dataset whose label column is a ClassLabel (ids on disk, names in the features)."""
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "sentiment": datasets.ClassLabel(names=["negative",
                                                                          "positive"])})
    return datasets.Dataset.from_dict(
        {"sentence": frame["text"].tolist(),
         "sentiment": [int(label == "pos") for label in frame["label"]]}, features=features)


def _write(fmt: str, tmp_path: Path) -> list[str]:
    """The data of ``fmt`` on disk, as the ``--set`` overrides that point sftune at it."""
    frame = make_reviews(240)
    if fmt == "tsv":
        frame.to_csv(tmp_path / "d.tsv", sep="\t", index=False)
        return [f"data.source={tmp_path / 'd.tsv'}"]
    if fmt == "json-array":
        frame.to_json(tmp_path / "d.json", orient="records", indent=1)
        return [f"data.source={tmp_path / 'd.json'}"]
    if fmt == "given-splits":
        parts = {"train": frame[:160], "validation": frame[160:200], "test": frame[200:]}
        for name, part in parts.items():
            part.to_csv(tmp_path / f"{name}.csv", index=False)
        return [f"data.{name}={tmp_path / name}.csv" for name in parts]
    columns = ["data.text_column=sentence", "data.label_column=sentiment"]
    if fmt == "saved-dataset":
        _class_label_dataset(frame).save_to_disk(str(tmp_path / "ds"))
        return [f"data.source={tmp_path / 'ds'}", *columns]
    # saved-dataset-dict: train / validation / test, used as given
    whole = _class_label_dataset(frame)
    splits = {"train": range(160), "validation": range(160, 200), "test": range(200, 240)}
    datasets.DatasetDict({n: whole.select(rows) for n, rows in splits.items()}).save_to_disk(
        str(tmp_path / "dsd"))
    return [f"data.source={tmp_path / 'dsd'}", *columns]


@pytest.mark.parametrize("fmt", ["tsv", "json-array", "given-splits", "saved-dataset",
                                 "saved-dataset-dict"])
def test_each_data_format_trains_and_exports_for_the_pipeline(fmt, tiny_model_dir, tmp_path):
    overrides = _write(fmt, tmp_path)
    cfg = tiny_config(tiny_model_dir, tmp_path / "unused.csv", *overrides, "train.epochs=3")
    data = tiny_data(cfg)
    if fmt in ("given-splits", "saved-dataset-dict"):  # used as given: no split was made
        assert data.sizes == {"train": 160, "validation": 40, "test": 40}
    export, _ = _train_and_export(cfg, tiny_model_dir, tmp_path)
    names = {"neg", "pos"} if fmt in ("tsv", "json-array", "given-splits") \
        else {"negative", "positive"}  # a ClassLabel's own names, not its ids
    assert read_meta(export)["label_names"] == sorted(names)
    _assert_pipeline_labels(export, names)


def test_a_saved_dataset_dict_without_the_three_splits_is_refused(tiny_model_dir, tmp_path):
    whole = _class_label_dataset(make_reviews(60))
    datasets.DatasetDict({"train": whole, "test": whole}).save_to_disk(str(tmp_path / "dsd"))
    cfg = tiny_config(tiny_model_dir, tmp_path / "dsd", "data.text_column=sentence",
                      "data.label_column=sentiment")
    with pytest.raises(DataError, match=r"splits \['train', 'test'\].*train, validation and test"):
        tiny_data(cfg)
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not a dataset saved with"):
        tiny_data(tiny_config(tiny_model_dir, tmp_path / "plain"))


def make_pairs(n: int, seed: int = 0) -> pd.DataFrame:
    """Pairs whose label is the sentiment of the *second* text: a model that did not read the
    second text would be at chance."""
    rng = random.Random(seed)
    filler = ["the", "movie", "film", "plot", "acting", "story"]
    rows = []
    for i in range(n):
        positive = i % 2 == 0
        first = " ".join(rng.choice(filler) for _ in range(3)) + " was " + rng.choice(
            POSITIVE + NEGATIVE)
        second = " ".join(rng.choice(filler) for _ in range(2)) + " was " + rng.choice(
            POSITIVE if positive else NEGATIVE)
        rows.append({"premise": first, "hypothesis": second, "label": "pos" if positive
                     else "neg"})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
def test_text_pairs_train_on_the_second_text_and_the_pipeline_agrees(family, tmp_path):
    from transformers import pipeline

    model_dir = make_family_model(family, tmp_path / family)
    path = tmp_path / "pairs.csv"
    make_pairs(320).to_csv(path, index=False)
    cfg = tiny_config(model_dir, path, "data.text_column=premise",
                      "data.text_pair_column=hypothesis", "data.max_length=24",
                      "train.epochs=4", "train.patience=4")
    data = tiny_data(cfg)
    # BERT's tokenizer gives segment ids: segment 1 starts after the first [SEP].
    assert data.train.segments is not None
    first = data.train.example(0)
    assert first[data.train.segments[0] - 1] == load_tokenizer(model_dir).sep_token_id
    export, _ = _train_and_export(cfg, model_dir, tmp_path)
    # transformers' pipeline, given {text, text_pair}, scores the export as sftune's test
    # evaluation does: the same tokens and segment ids reach the model.
    held = _test_frame(cfg)
    clf = pipeline("text-classification", model=str(export))
    answers = clf([{"text": a, "text_pair": b}
                   for a, b in zip(held["premise"], held["hypothesis"], strict=True)])
    accuracy = np.mean([a["label"] == y for a, y in zip(answers, held["label"], strict=True)])
    assert accuracy == pytest.approx(evaluate_checkpoint(export, cfg)["test_accuracy"])
    assert accuracy > 0.75
    _assert_endpoint_takes_pairs(export, held, [a["label"] for a in answers])


def _assert_endpoint_takes_pairs(export: Path, held: pd.DataFrame, expected: list[str]) -> None:
    """The endpoint's HTTP layer answers {texts, text_pairs} as the pipeline does, and a
    request without the second texts gets a 422 saying so."""
    from fastapi.testclient import TestClient

    from serving.api import create_api
    from serving.predictor import Predictor
    from serving.schemas import Limits
    from serving.service import ModelService

    predictor = Predictor.load(export, device="cpu", num_threads=1)
    assert predictor.pairs
    client = TestClient(create_api(ModelService(
        predictor, limits=Limits(max_texts=len(held), pairs=True))))
    body = {"texts": held["premise"].tolist(), "text_pairs": held["hypothesis"].tolist()}
    answers = client.post("/predict", json=body).json()["predictions"]
    assert [a["label"] for a in answers] == expected
    one = client.post("/predict", json={"text": "the plot was", "text_pair": "it was great"})
    assert one.status_code == 200 and len(one.json()["predictions"]) == 1
    for bad, code in [({"text": "the plot was"}, "missing_text_pair"),
                      ({"texts": ["a", "b"], "text_pairs": ["c"]}, "pair_count_mismatch"),
                      ({"texts": ["a"], "text_pairs": [" "]}, "empty_text")]:
        response = client.post("/predict", json=bad)
        assert (response.status_code, response.json()["error"]) == (422, code), bad


def _test_frame(cfg) -> pd.DataFrame:
    from search.sources import load_labeled_frame
    from search.splits import split_frame

    frame, names = load_labeled_frame(cfg.data)
    held = split_frame(frame, cfg.data, names).test
    return held.rename(columns={"text": "premise", "text_pair": "hypothesis"}).assign(
        label=held["label"].map(dict(enumerate(names))))


def test_a_numeric_looking_second_text_stays_text(tmp_path, tiny_model_dir):
    from search.config import DataConfig
    from search.sources import load_labeled_frame

    path = tmp_path / "pairs.csv"
    pd.DataFrame({"query": ["good film"] * 6, "doc": ["42", "7", "1999", "0", "13", "5"],
                  "label": ["a", "b"] * 3}).to_csv(path, index=False)
    frame, _ = load_labeled_frame(DataConfig(source=str(path), text_column="query",
                                             text_pair_column="doc"))
    assert frame["text_pair"].tolist()[:2] == ["42", "7"]  # read as text, not numbers
