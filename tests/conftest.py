"""Shared fixtures: a tiny random BERT and small labelled frames, built locally (no network)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = (
    "good bad great awful movie film plot the a is was fun boring love hate acting story "
    "brilliant dull superb terrible charming mess delight waste"
).split()
POSITIVE = ["good", "great", "fun", "love", "brilliant", "superb", "charming", "delight"]
NEGATIVE = ["bad", "awful", "boring", "hate", "dull", "terrible", "mess", "waste"]


def make_tiny_model(directory: Path, *, layers: int = 2, hidden: int = 32) -> Path:
    """A random 2-layer BERT with a word-level vocab, saved as safetensors + tokenizer."""
    from transformers import BertConfig, BertModel, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=64,
        initializer_range=0.2,  # larger than BERT's 0.02 so a random model learns in a few steps
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


def make_reviews(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Separable toy reviews: the sentiment word decides the label."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        positive = i % 2 == 0
        word = rng.choice(POSITIVE if positive else NEGATIVE)
        filler = " ".join(rng.choice(["the", "movie", "film", "plot", "acting", "story"])
                          for _ in range(rng.randint(2, 8)))
        rows.append({"text": f"{filler} was {word}", "label": "pos" if positive else "neg"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def reviews_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    make_reviews(400).to_csv(path, index=False)
    return path


def tiny_config(model_dir: Path, data_path: Path, *overrides: str):
    """An AppConfig for the tiny model and toy data; ``overrides`` are ``--set`` strings."""
    from search.config import load_config

    base = [
        f"model.name={model_dir}", f"data.source={data_path}", "data.max_length=16",
        "train.epochs=2", "train.batch_size=8", "train.eval_batch_size=32",
        "space.alpha=1", "space.lr=0.003", "space.frozen_depth=0", "space.dropout=0",
        "space.weight_decay=0.01", "space.joint_epochs=1",
        "tune.finalists=0",  # tests that re-run finalists ask for them
    ]
    return load_config(None, base + list(overrides))


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for the module's real sweeps: 2 CPUs, a small object store, no dashboard."""
    import ray

    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False,
             log_to_driver=False)
    yield
    ray.shutdown()


def tiny_data(cfg):
    from search.data import prepare_data
    from search.model import load_tokenizer, resolve_model_dir

    return prepare_data(cfg.data, load_tokenizer(resolve_model_dir(cfg.model.name)))


@pytest.fixture(scope="session")
def s3_env(tmp_path_factory):
    """A real S3-compatible server on 127.0.0.1 (moto's server mode, its own process), and the
    AWS_* variables that reach it, set for the whole session once a test asks for it."""
    from tests.s3server import environment, s3_server

    with s3_server(tmp_path_factory.mktemp("s3") / "server.log") as env, environment(env):
        yield env


@pytest.fixture
def bucket(s3_env, request) -> str:
    """A fresh, empty bucket for one test: its s3:// URI."""
    import re

    from tests.s3server import create_bucket

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-")
    return create_bucket(s3_env, f"t-{name}-{os.getpid()}")
