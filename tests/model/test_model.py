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


def _tiny_masked_lm(directory):
    """A tiny BERT saved with its pretrained MLM head (as bert-base checkpoints are)."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    from tests.conftest import WORDS

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    torch.manual_seed(1)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertForMaskedLM(config).save_pretrained(str(directory))
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(str(directory))
    return directory


def test_a_pretrained_mlm_head_is_loaded_and_shares_the_classifiers_encoder(tmp_path):
    from transformers import BertForMaskedLM

    directory = _tiny_masked_lm(tmp_path / "mlm")
    model = _model(directory)
    assert model.mlm_head_source == "pretrained" and model.mlm_head is None
    saved = BertForMaskedLM.from_pretrained(str(directory))
    transform = "predictions.transform.dense.weight"
    assert torch.equal(model.mlm_model.cls.get_parameter(transform),
                       saved.cls.get_parameter(transform))
    assert model.mlm_model.bert is model.encoder  # one encoder, not a copy
    embeddings = model.encoder.get_input_embeddings().weight
    assert model.mlm_model.get_output_embeddings().weight is embeddings  # still tied
    ids = torch.tensor([[2, 5, 6, 7, 3]])
    labels = torch.tensor([[-100, 5, -100, -100, -100]])
    loss = model.mlm_loss(ids, torch.ones_like(ids), labels)
    loss.backward()
    assert torch.isfinite(loss) and embeddings.grad is not None
    assert model.mlm_loss(ids, torch.ones_like(ids), torch.full_like(ids, -100)).item() == 0.0


def test_a_bare_encoder_gets_the_fresh_head_and_a_trial_without_lm_term_none(tiny_model_dir):
    assert _model(tiny_model_dir).mlm_head_source == "fresh"
    unused = _model(tiny_model_dir, lm_head=False)
    assert unused.mlm_head_source == "unused" and unused.mlm_model is None
