import pytest
import torch

from search.model import ModelError, build_model


def _model(tiny_model_dir, **kw):
    args = {"label_names": ["neg", "pos"], "dropout": 0.1, "frozen_depth": 0} | kw
    return build_model(tiny_model_dir, **args)


def test_heads_share_one_encoder_and_decoder_is_tied(tiny_model_dir):
    model = _model(tiny_model_dir)
    emb = model.encoder.get_input_embeddings()
    assert model.mlm_head.word_embeddings is emb
    assert model.classifier.base_model is model.encoder
    assert model.classifier.config.id2label == {0: "neg", 1: "pos"}


def test_dropout_reaches_hidden_attention_and_classifier(tiny_model_dir):
    model = _model(tiny_model_dir, dropout=0.23)
    cfg = model.classifier.config
    assert cfg.hidden_dropout_prob == cfg.attention_probs_dropout_prob == 0.23
    assert model.classifier.dropout.p == pytest.approx(0.23)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_frozen_depth_freezes_embeddings_and_bottom_layers_in_eval_mode(tiny_model_dir, k):
    model = _model(tiny_model_dir, frozen_depth=k)
    model.train()
    frozen = model.frozen_modules()
    assert len(frozen) == (0 if k == 0 else k + 1)
    for module in frozen:
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
    for layer in model.layers[k:]:
        assert layer.training
        assert all(p.requires_grad for p in layer.parameters())
    assert all(p.requires_grad for p in model.classifier.classifier.parameters())


@pytest.mark.parametrize("k", [-1, 3])
def test_frozen_depth_out_of_range_is_rejected(tiny_model_dir, k):
    with pytest.raises(ModelError, match=r"this model has 2 layers, so allowed values are 0..2"):
        _model(tiny_model_dir, frozen_depth=k)


def test_mlm_loss_is_finite_and_zero_without_masks(tiny_model_dir):
    model = _model(tiny_model_dir)
    ids = torch.tensor([[2, 5, 6, 7, 3]])
    mask = torch.ones_like(ids)
    labels = torch.tensor([[-100, 5, -100, -100, -100]])
    loss = model.mlm_loss(ids, mask, labels)
    assert torch.isfinite(loss) and loss.item() > 0
    assert model.mlm_loss(ids, mask, torch.full_like(ids, -100)).item() == 0.0
