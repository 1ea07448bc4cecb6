"""The built-in default model and dataset, found offline when installed."""

import pytest

from search import assets
from search.config import DataConfig
from search.data import prepare_data
from search.model import ModelError, build_model, load_tokenizer, resolve_model_dir
from search.sources import load_labeled_frame

try:
    assets.builtin_model_dir()
    assets.builtin_data_file("rotten_tomatoes")
    INSTALLED = True
except assets.AssetMissingError:
    INSTALLED = False

needs_assets = pytest.mark.skipif(
    not INSTALLED, reason="built-in assets not installed (run `sftune assets install`)"
)


@needs_assets
def test_rotten_tomatoes_is_fresh_vs_rotten_deduplicated():
    frame, names = load_labeled_frame(DataConfig(source="rotten_tomatoes"))
    assert names == ["rotten", "fresh"]
    # 13,905 rows - 1,097 plot rows = 12,808 reviews, of which 56 repeat a text verbatim.
    assert len(frame) == 12752
    assert frame["text"].is_unique
    assert set(frame["label"]) == {0, 1}


@needs_assets
def test_minilm_loads_with_six_layers_and_tokenizes():
    model_dir = resolve_model_dir("minilm")
    tokenizer = load_tokenizer(model_dir)
    model = build_model(model_dir, label_names=["rotten", "fresh"], dropout=0.1, frozen_depth=3)
    assert model.num_layers == 6
    assert model.classifier.config.hidden_size == 384
    data = prepare_data(
        DataConfig(source="rotten_tomatoes_small", max_train_examples=50, max_eval_examples=20),
        tokenizer,
    )
    assert data.sizes == {"train": 50, "validation": 20, "test": 20}


def test_hub_name_gives_clear_offline_error():
    with pytest.raises(ModelError, match="does not download from the Hub"):
        resolve_model_dir("bert-base-uncased")


def test_a_hub_id_in_the_local_hugging_face_cache_loads_offline(tiny_model_dir, tmp_path,
                                                                 monkeypatch):
    import shutil

    from huggingface_hub import constants

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-bert"  # the cache's documented layout
    shutil.copytree(tiny_model_dir, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve_model_dir("acme/tiny-bert") == repo / "snapshots" / revision
    with pytest.raises(ModelError, match="does not download from the Hub"):
        resolve_model_dir("acme/not-cached")


def test_missing_assets_say_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("SFTUNE_HOME", str(tmp_path))
    monkeypatch.setattr(assets, "_from_distribution", lambda *a: None)
    with pytest.raises(assets.AssetMissingError, match="sftune assets install"):
        assets.builtin_model_dir()
