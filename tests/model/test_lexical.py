"""The lexical layer: fit, saved without pickle, weighted on validation, and applied alike by the
test evaluation, the endpoint's predictor and the dashboard's local model."""

import json

import numpy as np
import pandas as pd
import pytest

from search.lexical import (
    LEXICAL_FILE,
    LEXICAL_META,
    choose_weight,
    fit_layer,
    fuse,
    load_layer,
    log_softmax,
)
from tests.conftest import make_reviews, tiny_config, tiny_data


def _toy(n: int = 200, seed: int = 0):
    frame = make_reviews(n, seed)
    return frame["text"].tolist(), (frame["label"] == "pos").astype(int).to_numpy()


def test_the_layer_round_trips_through_safetensors_and_json(tmp_path):
    texts, labels = _toy()
    layer = fit_layer(texts, labels, num_labels=2)
    layer.weight = 0.5
    layer.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([LEXICAL_FILE, LEXICAL_META])
    loaded = load_layer(tmp_path)
    unseen, unseen_labels = _toy(100, seed=1)
    np.testing.assert_allclose(loaded.log_probs(unseen), layer.log_probs(unseen), atol=1e-5)
    assert loaded.weight == 0.5
    # The sentiment word decides the toy label: the words alone get it right.
    assert np.mean(loaded.log_probs(unseen).argmax(-1) == unseen_labels) > 0.95
    np.testing.assert_allclose(np.exp(loaded.log_probs(unseen)).sum(-1), 1.0, atol=1e-5)


def _noisy(n: int, seed: int, flip: float = 0.25):
    """Toy reviews with a share of labels flipped: no model gets them all, so scores can be
    over- or under-confident."""
    texts, labels = _toy(n, seed)
    flipped = np.random.default_rng(seed).random(n) < flip
    return texts, np.where(flipped, 1 - labels, labels)


def test_the_words_alone_predict_as_the_tfidf_svm_baseline():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    texts, labels = _noisy(300, seed=0)
    unseen, _ = _noisy(200, seed=1)
    layer = fit_layer(texts, labels, num_labels=2)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    baseline = LinearSVC().fit(vectorizer.fit_transform(texts), labels)
    assert layer.log_probs(unseen).argmax(-1).tolist() == \
        baseline.predict(vectorizer.transform(unseen)).tolist()


def test_the_words_probabilities_are_calibrated_on_unseen_texts():
    # A quarter of the labels flipped: the words can be right on about 3 texts in 4, and an
    # uncalibrated SVM's scores say otherwise (its margins have no probability scale).
    texts, labels = _noisy(400, seed=0)
    unseen, truth = _noisy(2000, seed=1)
    probs = np.exp(fit_layer(texts, labels, num_labels=2).log_probs(unseen))
    accuracy = np.mean(probs.argmax(-1) == truth)
    assert 0.65 < accuracy < 0.85
    assert np.mean(probs.max(-1)) == pytest.approx(accuracy, abs=0.06)  # T = 1: 0.10 under


def test_every_label_gets_its_row_in_label_id_order():
    # Three labels, the words of label 2 never seen with the others.
    texts = ["red apple"] * 5 + ["green pear"] * 5 + ["blue plum"] * 5
    labels = np.array([2] * 5 + [0] * 5 + [1] * 5)
    layer = fit_layer(texts, labels, num_labels=3)
    assert layer.coef.shape[0] == 3
    assert layer.log_probs(["blue plum", "red apple", "green pear"]).argmax(-1).tolist() == \
        [1, 2, 0]


def test_a_layer_of_weight_zero_is_not_loaded(tmp_path):
    texts, labels = _toy()
    layer = fit_layer(texts, labels, num_labels=2)  # weight 0
    layer.save(tmp_path)
    assert load_layer(tmp_path) is None
    assert load_layer(tmp_path / "nothing-here") is None


def test_validation_chooses_the_weight_and_words_that_do_not_help_get_none():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 20)
    model = log_softmax(rng.normal(size=(40, 2)))  # about chance
    right = log_softmax(np.eye(2)[labels] * 3)
    weight, table = choose_weight(model, right, labels)
    assert weight > 0 and table[str(weight)]["accuracy"] == 1.0
    assert table["0.0"]["accuracy"] < 0.8
    # Words that say nothing (the same for every text) change no prediction: weight 0.
    flat = log_softmax(np.zeros((40, 2)))
    assert choose_weight(model, flat, labels)[0] == 0.0
    wrong = log_softmax(np.eye(2)[1 - labels] * 3)
    assert choose_weight(model, wrong, labels)[0] == 0.0


def test_fusion_adds_the_words_at_their_share_and_renormalises():
    model = log_softmax(np.array([[2.0, 0.0], [0.0, 1.0]]))
    words = log_softmax(np.array([[0.0, 3.0], [0.0, 0.5]]))
    assert fuse(model, words, 0.0) is model and fuse(model, None, 0.5) is model
    fused = fuse(model, words, 2 / 3)  # the words' share 2/3: added at twice the model's weight
    np.testing.assert_allclose(np.exp(fused).sum(-1), 1.0)
    expected = model + 2.0 * words
    np.testing.assert_allclose(fused - fused[:, :1], expected - expected[:, :1], atol=1e-12)
    assert fused.argmax(-1).tolist() == [1, 1]
    # Share 1 is the words alone, even where the model gave a label probability 0.
    np.testing.assert_array_equal(fuse(np.log([[1.0, 0.0]]), words[:1], 1.0), words[:1])


def test_words_that_beat_a_confident_model_win_outright():
    # A model stuck on the majority class, confidently (p = 0.9999), and words that are right but
    # unsure (p = 0.7): only the words alone (share 1) fix the minority texts.
    labels = np.array([0] * 12 + [1] * 8)
    model = np.log(np.tile([0.9999, 0.0001], (20, 1)))
    words = np.log(np.where(np.eye(2)[labels] == 1, 0.7, 0.3))
    weight, table = choose_weight(model, words, labels)
    assert weight == 1.0 and table["1.0"]["accuracy"] == 1.0
    assert table["0.9"]["accuracy"] == 0.6  # added at 9 times, the words still lose


def test_a_first_version_layer_loads_with_the_same_fused_figures(tmp_path):
    # Version 1 stored the additive weight k (the model's log-probabilities plus k times the
    # words'); it loads as the share k / (1 + k), which gives the same fused probabilities.
    texts, labels = _toy()
    layer = fit_layer(texts, labels, num_labels=2)
    layer.weight = 0.5
    layer.save(tmp_path)
    meta = json.loads((tmp_path / LEXICAL_META).read_text())
    del meta["version"]
    meta["weight"] = 4.0
    (tmp_path / LEXICAL_META).write_text(json.dumps(meta))
    loaded = load_layer(tmp_path)
    assert loaded.weight == pytest.approx(0.8)
    model = log_softmax(np.random.default_rng(0).normal(size=(len(texts), 2)))
    words = loaded.log_probs(texts)
    np.testing.assert_allclose(fuse(model, words, loaded.weight),
                               log_softmax(model + 4.0 * words), atol=1e-9)


@pytest.mark.slow
def test_an_attached_layer_is_what_evaluation_the_endpoint_and_the_dashboard_apply(
    tiny_model_dir, reviews_csv, tmp_path
):
    from dashboard.local_model import load_local_model
    from search.best import attach_lexical, evaluate_checkpoint
    from search.data import load_splits
    from search.train import Trainer
    from serving.predictor import Predictor

    # A transformer that learns nothing (lr 1e-9 from a random head) on data whose words decide
    # the label: validation gives the words a weight, and the test accuracy shows it.
    cfg = tiny_config(tiny_model_dir, reviews_csv, "train.head_init=random", "space.lr=1e-9",
                      "space.joint_epochs=0", "train.epochs=1")
    result = Trainer(cfg=cfg, params=cfg.default_params(), data=tiny_data(cfg),
                     model_dir=tiny_model_dir, workdir=tmp_path).fit()
    checkpoint = result.checkpoint_dir
    record = attach_lexical(checkpoint, cfg)
    assert record["weight"] > 0
    assert record["validation"][str(record["weight"])]["accuracy"] > \
        record["validation"]["0.0"]["accuracy"]
    test = evaluate_checkpoint(checkpoint, cfg)
    assert test["lexical_weight"] == record["weight"]
    assert test["test_accuracy"] > test["test_accuracy_model_only"] + 0.2

    frames, names = load_splits(cfg.data)
    texts, truth = frames.test["text"].tolist(), frames.test["label"].tolist()
    served = Predictor.load(checkpoint, device="cpu").predict(texts)
    hits = [names.index(p["label"]) == y for p, y in zip(served, truth, strict=True)]
    assert np.mean(hits) == pytest.approx(test["test_accuracy"])
    local = load_local_model(checkpoint).predict(texts)
    assert [p.label for p in local] == [p["label"] for p in served]
    np.testing.assert_allclose([p.score for p in local], [p["score"] for p in served],
                               atol=1e-4)


def test_lexical_off_fits_no_layer(tiny_model_dir, reviews_csv, tmp_path):
    from search import artifacts
    from search.best import _ensure_lexical

    cfg = tiny_config(tiny_model_dir, reviews_csv, "train.lexical=off")
    (tmp_path / artifacts.META_FILE).write_text("{}")
    _ensure_lexical(str(tmp_path), pd.Series({"checkpoint": str(tmp_path), "trial_id": "t"}), cfg)
    assert not (tmp_path / LEXICAL_FILE).exists()
    assert "lexical" not in artifacts.read_meta(tmp_path)


@pytest.mark.parametrize("share, says", [
    (0.8, "added to the transformer's at 4 times (the words' share 0.8)"),
    (1.0, "its predictions alone are the model's"),
])
def test_the_model_card_says_how_much_the_words_count(share, says):
    from search.model_card import render_card

    meta = {"label_names": ["neg", "pos"], "lexical": {"weight": share},
            "test": {"test_accuracy": 0.8, "test_accuracy_model_only": 0.7}}
    card = render_card(meta, "reviews")
    assert says in card and "the transformer alone: 0.7 test accuracy" in card
    assert "lexical layer" not in render_card({**meta, "lexical": {"weight": 0.0}}, "reviews")
