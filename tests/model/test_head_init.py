"""The head warm start: a linear probe on the pretrained features, fit before fine-tuning."""

import numpy as np
import pytest
import torch

from search.artifacts import read_meta
from search.head_init import ProbeHead, fit_probe_head, head_linear, load_head
from search.model import build_model
from search.train import Trainer
from tests.conftest import tiny_config, tiny_data


@pytest.fixture
def setup(tiny_model_dir, reviews_csv):
    cfg = tiny_config(tiny_model_dir, reviews_csv)
    data = tiny_data(cfg)
    model = build_model(tiny_model_dir, label_names=data.label_names, dropout=0.1,
                        frozen_depth=0, seed=0)
    return cfg, data, model


def _probe(model, data, examples=200):
    return fit_probe_head(model, data, examples=examples, batch_size=32, seed=0,
                          device=torch.device("cpu"))


def test_probe_beats_the_fresh_head_and_touches_only_the_heads_last_layer(setup):
    _, data, model = setup
    before = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    head = _probe(model, data)
    load_head(model, head)
    after = model.classifier.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"classifier.weight", "classifier.bias"}
    assert head.examples == 200
    labels = data.train.labels
    majority = max(np.mean(labels == c) for c in np.unique(labels))
    assert head.train_accuracy > majority + 0.1  # the toy sentiment word is in the features


def test_probe_leaves_the_model_in_the_mode_it_found(setup):
    _, data, model = setup
    model.train()
    _probe(model, data, examples=50)
    assert model.training and model.classifier.dropout.training


def test_probe_sample_is_stratified_and_seeded(setup):
    _, data, model = setup
    first, second = _probe(model, data, examples=60), _probe(model, data, examples=60)
    np.testing.assert_array_equal(first.weight, second.weight)
    assert first.examples == 60


def test_head_linear_is_the_layer_with_one_output_per_label(setup):
    _, _, model = setup
    assert head_linear(model) is model.classifier.classifier


def _trainer(cfg, data, model_dir, tmp_path, head=None):
    return Trainer(cfg=cfg, params=cfg.default_params(), data=data, model_dir=model_dir,
                   workdir=tmp_path, head=head)


def test_trainer_starts_from_a_given_probe_and_records_it(tiny_model_dir, reviews_csv,
                                                          tmp_path, setup):
    cfg = tiny_config(tiny_model_dir, reviews_csv, "train.epochs=1")
    data = tiny_data(cfg)
    head = ProbeHead(weight=np.full((2, 32), 0.25, dtype=np.float32),
                     bias=np.array([0.5, -0.5], dtype=np.float32), examples=7,
                     train_accuracy=0.5)
    trainer = _trainer(cfg, data, tiny_model_dir, tmp_path, head=head)
    trainer._init_head()
    np.testing.assert_array_equal(trainer.model.classifier.classifier.bias.detach().numpy(),
                                  head.bias)
    result = trainer.fit()
    meta = read_meta(result.checkpoint_dir)
    assert meta["head_init"] == "probe" and meta["probe_examples"] == 7


def test_random_head_init_fits_no_probe(tiny_model_dir, reviews_csv, tmp_path):
    cfg = tiny_config(tiny_model_dir, reviews_csv, "train.epochs=1", "train.head_init=random")
    trainer = _trainer(cfg, tiny_data(cfg), tiny_model_dir, tmp_path)
    result = trainer.fit()
    assert trainer.head is None
    assert read_meta(result.checkpoint_dir)["head_init"] == "random"


def test_probed_head_starts_above_chance_where_a_random_one_does_not(
    tiny_model_dir, reviews_csv, tmp_path
):
    """Evaluated before any step: the probe's head already separates the toy classes."""
    scores = {}
    for init in ("probe", "random"):
        cfg = tiny_config(tiny_model_dir, reviews_csv, f"train.head_init={init}")
        trainer = _trainer(cfg, tiny_data(cfg), tiny_model_dir, tmp_path / init)
        trainer._init_head()
        scores[init] = trainer.evaluate(trainer.data.validation)["accuracy"]
    assert scores["probe"] > 0.75
    assert scores["probe"] > scores["random"] + 0.15
