"""Data-aware sequence length, head+tail truncation and the search's stratified subset."""

import numpy as np
import pytest

from search.data import prepare_data, subset
from search.encoding import choose_max_length, truncate
from search.model import load_tokenizer
from tests.conftest import tiny_config, tiny_data

CLS, SEP = 101, 102


def test_max_length_is_the_95th_percentile_rounded_up_to_8_and_capped():
    lengths = np.arange(1, 101)  # p95 = 95.05
    assert choose_max_length(lengths, model_limit=512) == 96
    assert choose_max_length(lengths, model_limit=64) == 64
    assert choose_max_length(np.full(10, 3), model_limit=512) == 8


def test_head_truncation_keeps_the_start_and_both_special_tokens():
    ids = [CLS, *range(1, 21), SEP]
    assert truncate(ids, 10, "head") == [CLS, 1, 2, 3, 4, 5, 6, 7, 8, SEP]
    assert truncate(ids[:5], 10, "head") == ids[:5]  # short texts are untouched


def test_head_tail_keeps_a_quarter_from_the_start_and_the_rest_from_the_end():
    ids = [CLS, *range(1, 21), SEP]
    # 8 content tokens: 2 from the head, 6 from the tail.
    assert truncate(ids, 10, "head_tail") == [CLS, 1, 2, 15, 16, 17, 18, 19, 20, SEP]
    assert len(truncate(ids, 13, "head_tail")) == 13


def test_unset_max_length_is_chosen_from_the_training_texts(tiny_model_dir, reviews_csv):
    cfg = tiny_config(tiny_model_dir, reviews_csv, "data.max_length=null")
    data = tiny_data(cfg)
    lengths = data.train.lengths
    assert data.max_length == choose_max_length(lengths, model_limit=512)
    assert lengths.max() <= data.max_length
    assert 0.0 <= data.truncated_share <= 0.05 + 1e-9
    fixed = tiny_data(tiny_config(tiny_model_dir, reviews_csv, "data.max_length=8"))
    assert fixed.max_length == 8 and fixed.truncated_share > 0.5
    assert fixed.fingerprint != data.fingerprint


def test_head_tail_changes_the_fingerprint_and_the_tokens(tiny_model_dir, reviews_csv):
    head = tiny_data(tiny_config(tiny_model_dir, reviews_csv, "data.max_length=8"))
    tail = tiny_data(tiny_config(tiny_model_dir, reviews_csv, "data.max_length=8",
                                 "data.truncation=head_tail"))
    assert head.fingerprint != tail.fingerprint
    assert not np.array_equal(head.train.ids, tail.train.ids)


def test_subset_is_stratified_keeps_test_and_gets_its_own_fingerprint(
    tiny_model_dir, reviews_csv
):
    data = tiny_data(tiny_config(tiny_model_dir, reviews_csv))
    small = subset(data, train=40, validation=10, seed=0)
    assert (len(small.train), len(small.validation)) == (40, 10)
    assert small.test is data.test
    share = np.mean(data.train.labels == 1)
    assert np.mean(small.train.labels == 1) == pytest.approx(share, abs=0.05)
    assert small.fingerprint.startswith(data.fingerprint + "-sub")
    # Each kept example is an original one, token for token.
    originals = {tuple(data.train.example(i)) for i in range(len(data.train))}
    assert all(tuple(small.train.example(i)) in originals for i in range(len(small.train)))
    assert subset(data, train=None, validation=None, seed=0) is data


def test_prepare_data_tokenizes_each_text_once(tiny_model_dir, reviews_csv, monkeypatch):
    from search import data as data_module

    calls = []
    tokenize = data_module.tokenize
    monkeypatch.setattr(data_module, "tokenize", lambda tok, texts: calls.append(1)
                        or tokenize(tok, texts))
    cfg = tiny_config(tiny_model_dir, reviews_csv, "data.max_length=null")
    prepare_data(cfg.data, load_tokenizer(tiny_model_dir))
    assert len(calls) == 3  # train, validation, test: once each
