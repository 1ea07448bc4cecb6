"""The model half of the server, without HTTP: same answers as transformers.pipeline."""

from __future__ import annotations

import pytest

from search.artifacts import CheckpointError
from serving.predictor import Predictor
from tests.serving.conftest import LABELS, TEXTS


def pipeline_probabilities(model_dir, texts):
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(model_dir), top_k=None)
    return [{s["label"]: s["score"] for s in scores} for scores in classify(texts)]


@pytest.fixture(scope="module")
def predictor(checkpoints):
    return Predictor.load(checkpoints["A"], device="cpu", num_threads=1)


def test_answers_equal_the_pipeline_in_input_order(predictor, checkpoints):
    answers = predictor.predict(TEXTS)
    expected = pipeline_probabilities(checkpoints["A"], TEXTS)
    assert len(answers) == len(TEXTS)
    for answer, probs in zip(answers, expected, strict=True):
        assert list(answer["probabilities"]) == LABELS
        assert answer["probabilities"] == pytest.approx(probs, abs=1e-5)
        assert answer["label"] == max(probs, key=probs.get)
        assert answer["score"] == pytest.approx(max(probs.values()), abs=1e-5)


@pytest.mark.parametrize("chunk", [1, 2])
def test_length_sorted_chunks_do_not_change_answers(checkpoints, predictor, chunk):
    chunked = Predictor.load(checkpoints["A"], device="cpu", num_threads=1,
                             forward_batch_size=chunk)
    for a, b in zip(chunked.predict(TEXTS), predictor.predict(TEXTS), strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


def test_overlong_text_is_truncated_not_an_error(predictor):
    # The tiny model has 64 positions; 300 words would overflow them without truncation.
    [answer] = predictor.predict(["good " * 300])
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert predictor.predict([]) == []


def test_info_names_the_trial_and_its_weights(checkpoints, predictor):
    info = predictor.info()
    assert info["trial_id"] == "A" and info["label_names"] == LABELS
    assert info["val_metrics"] == {"val_accuracy": pytest.approx(0.51)}
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    other = Predictor.load(checkpoints["B"], device="cpu", num_threads=1)
    assert other.info()["model_id"] != info["model_id"]


def test_pickle_weights_are_refused_unread(tmp_path, checkpoints):
    (tmp_path / "config.json").write_text((checkpoints["A"] / "config.json").read_text())
    # Not a valid pickle at all: if anything tried to unpickle it, the error would differ.
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x05 not a pickle")
    with pytest.raises(CheckpointError, match="pickle"):
        Predictor.load(tmp_path, device="cpu")


@pytest.fixture
def head_tail_checkpoint(tmp_path, checkpoints):
    """Checkpoint A as a sweep records it when it trained on 12 tokens, cut head+tail."""
    import shutil

    from search import artifacts

    directory = tmp_path / "head_tail"
    shutil.copytree(checkpoints["A"], directory)
    artifacts.update_meta(directory, max_length=12, truncation="head_tail")
    return directory


LONG = "the opening was dull and slow " * 4 + "but the ending was a great delight"


def _probabilities_of(model_dir, ids):
    """The model's own probabilities for one token sequence, no predictor involved."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        probs = model(input_ids=torch.tensor([ids])).logits.softmax(-1)[0]
    return dict(zip(LABELS, probs.tolist(), strict=True))


def test_texts_are_cut_as_the_model_was_trained_and_tested(head_tail_checkpoint):
    from search.encoding import tokenize, truncate

    predictor = Predictor.load(head_tail_checkpoint, device="cpu", num_threads=1)
    [ids] = tokenize(predictor.tokenizer, [LONG])
    assert len(ids) > 30  # far over the 12 tokens it trained on
    cut = truncate(ids, 12, "head_tail")  # what training and the test evaluation read
    assert cut != truncate(ids, 12, "head") and len(cut) == 12
    [answer] = predictor.predict([LONG])
    assert answer["probabilities"] == pytest.approx(
        _probabilities_of(head_tail_checkpoint, cut), abs=1e-5)
    # The whole text reads differently: the cut is what made the answer.
    assert answer["probabilities"] != pytest.approx(
        _probabilities_of(head_tail_checkpoint, ids), abs=1e-4)
    # serve.max_tokens still overrides the length (the truncation stays the model's).
    wider = Predictor.load(head_tail_checkpoint, device="cpu", num_threads=1, max_tokens=20)
    [answer] = wider.predict([LONG])
    assert answer["probabilities"] == pytest.approx(
        _probabilities_of(head_tail_checkpoint, truncate(ids, 20, "head_tail")), abs=1e-5)
