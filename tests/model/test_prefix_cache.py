"""The frozen-prefix cache: exact (logits and losses match the full path), shared, budgeted."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
import torch

from search import prefix_cache
from search.batching import iter_batches
from search.model import SFTModel
from search.prefix_cache import PrefixCacheError
from search.train import Trainer
from tests.conftest import make_tiny_model, tiny_config, tiny_data

LAYERS = 3  # so that k in {1, N-1, N} are three different depths


@pytest.fixture(scope="module")
def deep_model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert-3"), layers=LAYERS)


def _trainer(model_dir, csv, workdir, *overrides, cache_dir=None, data=None):
    cfg = tiny_config(model_dir, csv, *overrides)
    return Trainer(cfg=cfg, params=cfg.default_params(), data=data or tiny_data(cfg),
                   model_dir=model_dir, workdir=workdir, cache_dir=cache_dir)


def _pair(model_dir, csv, tmp_path, k, *overrides):
    """The same trial twice, cache off and on (dropout on, so RNG use is part of the check)."""
    common = (f"space.frozen_depth={k}", "space.dropout=0.1", *overrides)
    off = _trainer(model_dir, csv, tmp_path / "off", "train.prefix_cache='off'", *common)
    on = _trainer(model_dir, csv, tmp_path / "on", "train.prefix_cache='on'", *common)
    assert off.prefix_cache is None and on.prefix_cache is not None
    return off, on


def _val_logits(trainer) -> torch.Tensor:
    trainer.model.eval()
    out = torch.empty(len(trainer.data.validation), len(trainer.data.label_names))
    with torch.inference_mode(), trainer._autocast():  # as Trainer.evaluate runs it
        for batch in iter_batches(trainer.data.validation, 7, trainer.data.pad_id, by_length=True):
            batch = {k: v.to(trainer.device) for k, v in batch.items()}
            out[batch["index"].cpu()] = trainer.task_logits(batch).float().cpu()
    return out


def _record_steps(trainer) -> list[tuple[float, float]]:
    steps, step = [], trainer._step

    def recording(batch, stage, lr):
        steps.append(step(batch, stage, lr))
        return steps[-1]

    trainer._step = recording
    return steps


def _tiny_classifier(family: str, attention: str):
    import transformers as tf

    common = dict(vocab_size=50, hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=40, pad_token_id=1, num_labels=3)
    config, model = {
        "bert": (tf.BertConfig(**common), tf.BertForSequenceClassification),
        "roberta": (tf.RobertaConfig(**common), tf.RobertaForSequenceClassification),
        # embedding_size < hidden_size exercises ELECTRA's embeddings_project
        "electra": (tf.ElectraConfig(embedding_size=16, **common),
                    tf.ElectraForSequenceClassification),
    }[family]
    torch.manual_seed(0)
    classifier = model(config)
    classifier.set_attn_implementation(attention)
    return classifier


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("family", ["bert", "roberta", "electra"])
def test_forward_from_layer_k_equals_the_full_forward(family, attention):
    classifier = _tiny_classifier(family, attention)
    ids = torch.randint(3, 50, (4, 10), generator=torch.Generator().manual_seed(0))
    mask = (torch.arange(10) < torch.tensor([10, 6, 3, 9])[:, None]).long()
    ids[mask == 0] = 1
    for k in range(LAYERS + 1):
        model = SFTModel(classifier, frozen_depth=k).eval()
        hidden = model.embed_prefix(ids, mask)
        if k == LAYERS:
            hidden = hidden[:, :1]  # at k=N the cache keeps only the first token
        torch.testing.assert_close(model.logits_from_layer(hidden, mask),
                                   model.task_logits(ids, mask), rtol=0, atol=1e-6)


@pytest.mark.parametrize("k", [1, LAYERS - 1, LAYERS])
def test_cached_logits_match_per_example(deep_model_dir, reviews_csv, tmp_path, k):
    off, on = _pair(deep_model_dir, reviews_csv, tmp_path, k)
    torch.testing.assert_close(_val_logits(on), _val_logits(off), rtol=0, atol=1e-5)
    assert on.prefix_cache.hits > 0 and on.prefix_cache.misses == 0


@pytest.mark.parametrize("k", [1, LAYERS - 1, LAYERS])
def test_training_losses_match_step_for_step(deep_model_dir, reviews_csv, tmp_path, k):
    # Built and fitted one after the other, as trials run: each build reseeds torch, so both
    # fits start from the same RNG state. Epoch 1 is joint (its LM term runs the full stack).
    runs = {}
    for mode in ("off", "on"):
        trainer = _trainer(deep_model_dir, reviews_csv, tmp_path / mode, f"space.frozen_depth={k}",
                           "space.dropout=0.1", "train.epochs=2", f"train.prefix_cache='{mode}'")
        steps = _record_steps(trainer)
        runs[mode] = (trainer, steps, trainer.fit())
    (off, steps_off, result_off), (on, steps_on, result_on) = runs["off"], runs["on"]
    assert on.prefix_cache is not None and off.prefix_cache is None
    assert len(steps_on) == len(steps_off) == 2 * off.steps_per_epoch
    np.testing.assert_allclose(steps_on, steps_off, rtol=1e-5, atol=1e-6)
    assert [h["val_accuracy"] for h in result_on.history] == [
        h["val_accuracy"] for h in result_off.history
    ]
    assert all(h["prefix_cache"] for h in result_on.history)
    assert not any(h["prefix_cache"] for h in result_off.history)
    torch.testing.assert_close(_val_logits(on), _val_logits(off), rtol=0, atol=1e-5)


def test_second_trainer_maps_the_shared_file_without_recomputing(
    deep_model_dir, reviews_csv, tmp_path, monkeypatch
):
    fills, fill = [], prefix_cache._fill
    monkeypatch.setattr(prefix_cache, "_fill", lambda *a, **kw: fills.append(1) or fill(*a, **kw))
    cache_dir = tmp_path / "prefix_cache"
    first = _trainer(deep_model_dir, reviews_csv, tmp_path / "a", "space.frozen_depth=2",
                     cache_dir=cache_dir)
    second = _trainer(deep_model_dir, reviews_csv, tmp_path / "b", "space.frozen_depth=2",
                      cache_dir=cache_dir)
    assert len(fills) == 1
    assert (first.prefix_cache.source, second.prefix_cache.source) == ("computed", "mapped")
    assert isinstance(second.prefix_cache.values, np.memmap)
    np.testing.assert_array_equal(first.prefix_cache.values, second.prefix_cache.values)
    digest = first.prefix_cache.key.digest()
    assert sorted(p.name for p in cache_dir.iterdir()) == [
        f"{digest}.json", f"{digest}.lock", f"{digest}.npy"
    ]


def test_concurrent_builders_of_one_key_compute_it_once(tmp_path):
    key = prefix_cache.CacheKey(model="m", data="d", frozen_depth=1, max_length=8,
                                dtype="float32", device="cpu", attention="sdpa")
    fills, results = [], []

    def slow_fill(values):
        fills.append(1)
        time.sleep(0.3)  # long enough that the second builder arrives while this one works
        values[:] = 7.0

    def build():
        results.append(prefix_cache._load_or_build(tmp_path, key, (5, 4), np.float32, slow_fill))

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fills) == 1
    assert sorted(source for _, source in results) == ["computed", "mapped"]
    assert all(np.all(values == 7.0) for values, _ in results)


def test_over_budget_falls_back_to_the_full_path_and_says_why(
    deep_model_dir, reviews_csv, tmp_path, caplog
):
    with caplog.at_level(logging.INFO, logger="sftune"):
        trainer = _trainer(deep_model_dir, reviews_csv, tmp_path, "space.frozen_depth=2",
                           "train.prefix_cache_budget_mb=0", "train.epochs=1")
    assert trainer.prefix_cache is None
    [line] = [r for r in caplog.records if "prefix_cache_budget_mb=0" in r.getMessage()]
    assert line.levelno == logging.WARNING  # visible under default logging: a user set a budget
    assert "MiB" in line.getMessage() and "full forward pass" in line.getMessage()
    assert trainer.fit().history[0]["prefix_cache"] is False
    with pytest.raises(PrefixCacheError, match="prefix_cache_budget_mb"):
        _trainer(deep_model_dir, reviews_csv, tmp_path, "space.frozen_depth=2",
                 "train.prefix_cache_budget_mb=0", "train.prefix_cache='on'")


def test_on_at_k0_is_an_error(deep_model_dir, reviews_csv, tmp_path):
    with pytest.raises(PrefixCacheError, match="frozen_depth=0"):
        _trainer(deep_model_dir, reviews_csv, tmp_path, "train.prefix_cache='on'")


def test_auto_at_k0_uses_no_cache_and_says_so(deep_model_dir, reviews_csv, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="sftune"):
        trainer = _trainer(deep_model_dir, reviews_csv, tmp_path, cache_dir=tmp_path / "c")
    assert trainer.prefix_cache is None
    assert "frozen_depth=0" in caplog.text
    assert not (tmp_path / "c").exists()


def test_auto_uses_the_cache_where_it_applies(deep_model_dir, reviews_csv, tmp_path):
    trainer = _trainer(deep_model_dir, reviews_csv, tmp_path, "space.frozen_depth=1")
    assert trainer.prefix_cache is not None and trainer.prefix_cache.source == "memory"


def test_key_changes_with_frozen_depth_and_data(deep_model_dir, reviews_csv, tmp_path):
    def key(*overrides):
        trainer = _trainer(deep_model_dir, reviews_csv, tmp_path, *overrides)
        return trainer.prefix_cache.key

    base = key("space.frozen_depth=1")
    assert key("space.frozen_depth=1") == base
    assert key("space.frozen_depth=2").digest() != base.digest()
    other_data = key("space.frozen_depth=1", "data.max_train_examples=100")
    assert other_data.data != base.data and other_data.digest() != base.digest()
    assert key("space.frozen_depth=1", "data.max_length=12").digest() != base.digest()


def test_lookup_answers_only_batches_it_can_verify(deep_model_dir, reviews_csv, tmp_path):
    trainer = _trainer(deep_model_dir, reviews_csv, tmp_path, "space.frozen_depth=1")
    cache, pad = trainer.prefix_cache, trainer.data.pad_id
    train_batch = next(iter(iter_batches(trainer.data.train, 8, pad)))
    test_batch = next(iter(iter_batches(trainer.data.test, 8, pad)))
    tampered = {**train_batch, "input_ids": train_batch["input_ids"].clone()}
    tampered["input_ids"][0, 1] += 1
    with trainer._autocast():  # the precision the rows were computed in, as in training
        assert cache.lookup(train_batch) is not None
        assert cache.lookup(test_batch) is None  # indices fit the train split, ids do not
        assert cache.lookup(tampered) is None
        assert cache.lookup({k: v for k, v in train_batch.items() if k != "index"}) is None
    # The other precision (bf16 autocast for fp32 rows, and the reverse on a bf16 GPU trainer).
    flipped = cache.precision == ""
    with torch.autocast(trainer.device.type, dtype=torch.bfloat16, enabled=flipped):
        assert cache.lookup(train_batch) is None
