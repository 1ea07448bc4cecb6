"""The fallback when no endpoint is up: find the exported best model and run it in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard import loaders
from dashboard.local_model import find_export, load_local_model
from search import artifacts
from search.artifacts import CheckpointError
from search.results import update_sweep_meta
from tests.conftest import make_tiny_model
from tests.dashboard import builders


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    return make_export(tmp_path_factory.mktemp("export"))


def make_export(root: Path) -> Path:
    """A tiny classifier exported the way `sftune best --export` leaves it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = make_tiny_model(root / "base")
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base), num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    target = root / "export"
    model.save_pretrained(str(target))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(target))
    artifacts.update_meta(target, trial_id="t_best", sweep="tiny")
    return target


def _weights(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"")
    return path


def test_find_export_prefers_the_recorded_export_then_falls_back(tmp_path):
    sweep = builders.write_tiny(tmp_path)
    table = loaders.load_sweep(sweep).table
    assert find_export({}, sweep, table) is None
    checkpoint = _weights(tmp_path / "ckpt")
    table.loc[0, "checkpoint"] = str(checkpoint)  # the best trial kept its checkpoint
    assert find_export({}, sweep, table) == checkpoint
    default = _weights(sweep / "export")
    assert find_export({}, sweep, table) == default
    recorded = _weights(tmp_path / "elsewhere")
    assert find_export({"export_dir": str(recorded)}, sweep, table) == recorded
    assert find_export({"export_dir": "export"}, sweep) == default  # relative to the sweep


def test_local_model_answers_with_the_real_label_names(exported):
    model = load_local_model(exported)
    answers = model.predict(["great fun", "dull mess"])
    assert [a.text for a in answers] == ["great fun", "dull mess"]
    for answer in answers:
        assert set(answer.probabilities) == {"neg", "pos"}
        assert sum(answer.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert answer.score == max(answer.probabilities.values())
    assert model.meta["trial_id"] == "t_best"


def test_pickle_weights_are_refused(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="pickle"):
        load_local_model(tmp_path)


def test_app_offers_the_local_model_when_the_endpoint_is_down(open_app, tmp_path, exported):
    sweep = builders.write_tiny(tmp_path)
    update_sweep_meta(sweep, export_dir=str(exported))
    at = open_app(tmp_path, page="try", sweep="tiny")
    assert "No model endpoint is up" in at.warning[0].value
    assert str(exported) in at.button(key="load_local").label
    at.button(key="load_local").click().run()
    assert "Answering locally" in at.success[0].value and "t_best" in at.success[0].value
    at.text_input(key="query_text").input("great fun").run()
    at.button(key="predict_one").click().run()
    assert not at.exception and not at.error
    assert at.metric[0].value in {"neg", "pos"}


def test_local_model_answers_as_the_endpoint_does(exported, tmp_path):
    import shutil

    from serving.predictor import Predictor

    # Trained on 8 tokens, cut head+tail: the dashboard cuts a long text as the endpoint does.
    directory = tmp_path / "cut"
    shutil.copytree(exported, directory)
    artifacts.update_meta(directory, max_length=8, truncation="head_tail")
    texts = ["a dull start " * 10 + "and a fine end", "great fun"]
    local = load_local_model(directory).predict(texts)
    served = Predictor.load(directory, device="cpu").predict(texts)
    for mine, theirs in zip(local, served, strict=True):
        assert mine.label == theirs["label"]
        assert mine.probabilities == pytest.approx(theirs["probabilities"], abs=1e-6)
