"""Any encoder that transformers' Auto classes load for sequence classification trains with frozen
layers and the LM term, exports, and loads in ``transformers.pipeline``: a tiny random config
per family, with a word-level tokenizer the test makes (no network)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from search.artifacts import export_checkpoint
from search.model import ModelError, build_model
from search.train import Trainer
from tests.conftest import WORDS, tiny_config, tiny_data

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
SMALL = {"vocab_size": len(VOCAB), "hidden_size": 32, "num_hidden_layers": 3,
         "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}
IDS = {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}


def _configs():
    from transformers import (
        BertConfig,
        DebertaV2Config,
        DistilBertConfig,
        ElectraConfig,
        ModernBertConfig,
        RobertaConfig,
    )

    return {
        "bert": lambda: BertConfig(**SMALL),
        "distilbert": lambda: DistilBertConfig(
            vocab_size=len(VOCAB), dim=32, n_layers=3, n_heads=2, hidden_dim=64,
            max_position_embeddings=64, pad_token_id=0),
        "roberta": lambda: RobertaConfig(**SMALL, **IDS),
        "electra": lambda: ElectraConfig(**SMALL, embedding_size=16),
        "deberta-v2": lambda: DebertaV2Config(
            **SMALL, pad_token_id=0, relative_attention=True, position_buckets=16,
            pos_att_type=["p2c", "c2p"]),
        "modernbert": lambda: ModernBertConfig(
            **SMALL, **IDS, cls_token_id=2, sep_token_id=3, global_attn_every_n_layers=1,
            local_attention=16),
    }


FAMILIES = ["bert", "distilbert", "roberta", "electra", "deberta-v2", "modernbert"]
CACHED_FAMILIES = {"bert", "roberta", "electra"}


def make_family_model(family: str, directory: Path) -> Path:
    """A random ``family`` encoder (no head) saved as safetensors, with a BERT word tokenizer."""
    from transformers import AutoModel, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = _configs()[family]()
    config.initializer_range = 0.2  # a random model then learns the toy task in a few steps
    AutoModel.from_config(config).save_pretrained(str(directory))
    BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}).save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request, tmp_path_factory) -> tuple[str, Path]:
    return request.param, make_family_model(request.param, tmp_path_factory.mktemp(request.param))


def test_frozen_depth_finds_the_layer_stack_and_is_validated(family_model):
    family, model_dir = family_model
    model = build_model(model_dir, label_names=["neg", "pos"], dropout=0.1, frozen_depth=2)
    assert model.num_layers == 3
    frozen = {id(p) for m in model.frozen_modules() for p in m.parameters()}
    assert frozen and all(not p.requires_grad for m in model.frozen_modules()
                          for p in m.parameters())
    top = [p for p in model.layers[2].parameters()]
    assert top and all(p.requires_grad and id(p) not in frozen for p in top)
    with pytest.raises(ModelError, match="allowed values are 0..3"):
        build_model(model_dir, label_names=["neg", "pos"], dropout=0.1, frozen_depth=4)


def test_dropout_reaches_the_family_config(family_model):
    _, model_dir = family_model
    model = build_model(model_dir, label_names=["neg", "pos"], dropout=0.25, frozen_depth=0)
    rates = {m.p for m in model.classifier.modules() if isinstance(m, torch.nn.Dropout)}
    assert 0.25 in rates and not rates - {0.25, 0.0}


def test_each_family_trains_end_to_end_and_its_export_loads_in_a_pipeline(
    family_model, reviews_csv, tmp_path
):
    from transformers import pipeline

    family, model_dir = family_model
    cfg = tiny_config(model_dir, reviews_csv, "space.frozen_depth=1", "space.joint_epochs=1",
                      "train.epochs=3", "train.patience=5", "train.prefix_cache=auto")
    trainer = Trainer(cfg=cfg, params=cfg.default_params(), data=tiny_data(cfg),
                      model_dir=model_dir, workdir=tmp_path / "trial")
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    result = trainer.fit()
    assert [h["stage"] for h in result.history][:2] == ["joint", "task"]
    assert all(math.isfinite(h["train_task_loss"]) for h in result.history)
    assert math.isfinite(result.history[0]["train_lm_loss"])  # the LM term ran
    frozen = {id(p) for m in trainer.model.frozen_modules() for p in m.parameters()}
    for name, param in trainer.model.named_parameters():
        if id(param) in frozen:
            assert torch.equal(param, before[name]), name
    assert result.best["val_accuracy"] > 0.6, (family, result.history)
    # The frozen-prefix cache runs where the layers are wired as BERT's; elsewhere the trial
    # falls back to the full forward pass (and logs why) instead of crashing mid-training.
    assert result.history[-1]["prefix_cache"] == (family in CACHED_FAMILIES)

    export = export_checkpoint(result.checkpoint_dir, tmp_path / "export")
    scores = pipeline("text-classification", model=str(export))(["great fun", "awful mess"])
    assert {s["label"] for s in scores} <= {"neg", "pos"}
