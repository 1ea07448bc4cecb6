import json

import pytest
import torch

from search import artifacts
from search.train import Trainer
from tests.conftest import tiny_config, tiny_data

EXPECTED_FILES = {
    "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "sftune.json",
}


@pytest.fixture(scope="module")
def checkpoint(tiny_model_dir, reviews_csv, tmp_path_factory):
    cfg = tiny_config(tiny_model_dir, reviews_csv, "train.epochs=2")
    workdir = tmp_path_factory.mktemp("trial")
    trainer = Trainer(cfg=cfg, params=cfg.default_params(), data=tiny_data(cfg),
                      model_dir=tiny_model_dir, workdir=workdir, trial_meta={"trial_id": "t1"})
    result = trainer.fit()
    return result.checkpoint_dir, trainer


def test_checkpoint_has_exactly_the_expected_files(checkpoint):
    directory, _ = checkpoint
    assert {p.name for p in directory.iterdir()} == EXPECTED_FILES


def test_meta_describes_the_trial(checkpoint):
    directory, trainer = checkpoint
    meta = artifacts.read_meta(directory)
    assert meta["label_names"] == ["neg", "pos"]
    assert meta["params"]["alpha"] == trainer.params.alpha
    assert meta["data_fingerprint"] == trainer.data.fingerprint
    assert meta["trial_id"] == "t1"
    assert meta["mlm_head"] == "fresh"  # a bare encoder, and the trial has a joint stage
    assert {"torch", "transformers", "python"} <= set(meta["versions"])
    assert 0 <= meta["metrics"]["val_accuracy"] <= 1


def test_export_round_trips_through_pipeline_with_label_names(checkpoint, tmp_path):
    from transformers import pipeline

    directory, trainer = checkpoint
    out = artifacts.export_checkpoint(directory, tmp_path / "export", test={"accuracy": 0.5})
    assert json.loads((out / "sftune.json").read_text())["test"] == {"accuracy": 0.5}
    clf = pipeline("text-classification", model=str(out), top_k=None)
    scores = clf(["the movie was great", "the plot was awful"])
    assert {s["label"] for s in scores[0]} == {"neg", "pos"}
    # The pipeline agrees with the checkpoint's own forward pass, label by label.
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(out), use_safetensors=True)
    enc = trainer.tokenizer(["the movie was great"], return_tensors="pt")
    with torch.no_grad():
        probs = model(**enc).logits.softmax(-1)[0]
    by_label = {s["label"]: s["score"] for s in scores[0]}
    assert by_label["pos"] == pytest.approx(probs[1].item(), abs=1e-5)
    assert by_label["neg"] == pytest.approx(probs[0].item(), abs=1e-5)


def test_every_export_has_a_model_card_with_the_trial_and_its_scores(checkpoint, tmp_path):
    from huggingface_hub import ModelCard

    directory, trainer = checkpoint
    test = {"test_accuracy": 0.8125, "test_f1_macro": 0.8, "test_examples": 40}
    out = artifacts.export_checkpoint(directory, tmp_path / "export", test=test, sweep="reviews")
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "text-classification" and card.data.library_name == (
        "transformers")
    assert "sftune" in card.data.tags
    text = card.text
    assert "# reviews: text classifier" in text and "`neg`, `pos`" in text
    assert "| trial | `t1` |" in text and f"`{trainer.data.fingerprint}`" in text
    assert "| test accuracy (measured once) | 0.8125 |" in text
    assert f"| lr | {trainer.params.lr:.4g} |" in text
    assert 'pipeline("text-classification", model="PATH_OR_HUB_ID")' in text
    # The card goes with the export, not with the trial's own checkpoint.
    assert not (directory / "README.md").exists()


def test_pickle_only_directory_is_refused(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(artifacts.CheckpointError, match="pickle weights"):
        artifacts.verify_safetensors_only(tmp_path)
