"""The model a trial trains: one encoder shared by a classification head and a masked-LM head.

The classifier is a stock ``AutoModelForSequenceClassification`` so that a checkpoint is a plain
Hugging Face directory. The MLM head is added on top of the same encoder, with its decoder tied to
the word embeddings (the packaged MiniLM ships no pretrained MLM head, so it starts fresh).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from search import assets, storage

__all__ = [
    "ModelError",
    "SFTModel",
    "build_model",
    "encoder_layers",
    "load_tokenizer",
    "quiet_transformers",
    "resolve_model_dir",
]

BUILTIN_MODELS = ("minilm",)


class ModelError(ValueError):
    """The model cannot be found or does not fit the requested setting."""


def resolve_model_dir(name: str) -> Path:
    """A built-in name, a local checkpoint directory, one in a bucket (``s3://``, ``gs://``:
    downloaded once per machine, so every node of a cluster finds it), or a Hugging Face Hub id
    already in the local Hugging Face cache; never a download from the Hub (machines are
    offline)."""
    if name in BUILTIN_MODELS:
        return assets.builtin_model_dir()
    if storage.is_remote(name):
        if not storage.exists(storage.join(name, "config.json")):
            raise ModelError(f"model {name!r} has no config.json in the bucket")
        return storage.local_copy(name)
    path = Path(name).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return path
    if path.exists():
        raise ModelError(f"model directory {path} has no config.json")
    cached = _hub_cache_snapshot(name)
    if cached is not None:
        return cached
    raise ModelError(
        f"model {name!r} is neither a built-in name ({', '.join(BUILTIN_MODELS)}), a local "
        "directory, a bucket URI, nor a Hugging Face Hub id in this machine's Hugging Face "
        "cache. sftune does not download from the Hub: fetch the checkpoint where you have "
        "network access (`hf download ID`, or save it to a directory) and pass its id or "
        "directory as model.name."
    )


def _hub_cache_snapshot(repo_id: str) -> Path | None:
    """The local Hugging Face cache's snapshot of ``repo_id`` (HF_HUB_CACHE / HF_HOME are
    honoured), looked up without any network call; None when it is not cached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        snapshot = Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError):
        return None
    return snapshot if (snapshot / "config.json").is_file() else None


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)


def encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's transformer blocks, bottom first: its longest list of same-type modules.

    Families name the stack differently (BERT, RoBERTa, ELECTRA, DeBERTa: ``encoder.layer``;
    DistilBERT: ``transformer.layer``; ModernBERT: ``layers``), so it is found, not named.
    """
    stacks = [m for m in encoder.modules()
              if isinstance(m, nn.ModuleList) and len(m) and len({type(b) for b in m}) == 1]
    if not stacks:
        raise ModelError(
            f"{type(encoder).__name__} has no stack of transformer layers sftune can find (a "
            "list of identical blocks), so space.frozen_depth cannot apply to it"
        )
    return max(stacks, key=len)


#: Where the families keep their dropout rates: BERT, RoBERTa and ELECTRA the first three,
#: DeBERTa the first two and ``pooler_dropout``; DistilBERT ``dropout``, ``attention_dropout``
#: and ``seq_classif_dropout``; ModernBERT ``embedding_dropout``, ``mlp_dropout``,
#: ``attention_dropout`` and ``classifier_dropout``.
DROPOUT_KEYS = (
    "hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout", "pooler_dropout",
    "dropout", "attention_dropout", "seq_classif_dropout", "embedding_dropout", "mlp_dropout",
)


def _set_dropout(config, rate: float) -> None:
    """Set every dropout rate the family's config has to ``rate`` (``space.dropout``)."""
    keys = [key for key in DROPOUT_KEYS if hasattr(config, key)]
    if not keys:
        raise ModelError(
            f"{config.model_type}: its config has none of the dropout settings sftune knows "
            f"({', '.join(DROPOUT_KEYS)}), so space.dropout cannot apply"
        )
    for key in keys:
        setattr(config, key, rate)


class MLMHead(nn.Module):
    """BERT's prediction head: dense + activation + LayerNorm, decoder tied to word embeddings.

    It projects to the word embeddings' width, which ELECTRA keeps smaller than its hidden size.
    """

    def __init__(self, config, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        width = word_embeddings.embedding_dim
        eps = getattr(config, "layer_norm_eps", None) or getattr(config, "norm_eps", None)
        self.dense = nn.Linear(config.hidden_size, width)
        self.norm = nn.LayerNorm(width, eps=eps or 1e-12)
        self.bias = nn.Parameter(torch.zeros(word_embeddings.num_embeddings))
        self.word_embeddings = word_embeddings  # shared, not copied: the decoder is tied

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = self.norm(F.gelu(self.dense(hidden)))
        return F.linear(hidden, self.word_embeddings.weight, self.bias)


class SFTModel(nn.Module):
    """Classifier plus MLM head over one shared encoder, with the bottom ``frozen_depth`` frozen.

    The MLM head is the checkpoint's own pretrained one when it has one (``mlm_model``: the
    family's masked-LM model, its encoder swapped for the classifier's), else a fresh head tied
    to the word embeddings; ``mlm_head_source`` says which ("pretrained", "fresh", or "unused"
    when the trial has no joint stage).
    """

    def __init__(self, classifier: nn.Module, *, frozen_depth: int,
                 mlm_model: nn.Module | None = None, mlm_head_source: str = "fresh") -> None:
        super().__init__()
        self.classifier = classifier
        self.encoder = classifier.base_model
        self.layers = encoder_layers(self.encoder)
        self.mlm_model = mlm_model
        self.mlm_head = None if mlm_model is not None else MLMHead(
            classifier.config, self.encoder.get_input_embeddings())
        self.mlm_head_source = "pretrained" if mlm_model is not None else mlm_head_source
        self.frozen_depth = frozen_depth
        self._freeze(frozen_depth)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def frozen_modules(self) -> list[nn.Module]:
        """Embeddings plus the bottom k layers (nothing at k=0: full fine-tuning)."""
        if self.frozen_depth == 0:
            return []
        return [*self._input_modules(), *self.layers[: self.frozen_depth]]

    def _input_modules(self) -> list[nn.Module]:
        # ELECTRA projects small embeddings up to the hidden size before layer 0; the projection
        # belongs to the input side, so it freezes with the embeddings.
        embeddings = getattr(self.encoder, "embeddings", None)
        if not isinstance(embeddings, nn.Module):
            embeddings = self.encoder.get_input_embeddings()
        project = getattr(self.encoder, "embeddings_project", None)
        return [embeddings] + ([project] if project is not None else [])

    def _freeze(self, k: int) -> None:
        if not 0 <= k <= self.num_layers:
            raise ModelError(
                f"frozen_depth {k} is out of range: this model has {self.num_layers} layers, "
                f"so allowed values are 0..{self.num_layers}"
            )
        for module in self.frozen_modules():
            module.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> SFTModel:
        super().train(mode)
        # Frozen layers stay in eval mode so no dropout runs in them: their output is then a
        # deterministic function of the input, which the prefix cache relies on.
        for module in self.frozen_modules():
            module.eval()
        return self

    def task_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(**_inputs(input_ids, attention_mask, token_type_ids)).logits

    def embed_prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Hidden states after the frozen prefix (embeddings + bottom k layers), [B, T, H].

        ``logits_from_layer(embed_prefix(ids, mask), mask)`` computes what :meth:`task_logits`
        does, op for op, so the prefix can be computed once and reused.
        """
        hidden = self.encoder.embeddings(input_ids=input_ids)
        project = getattr(self.encoder, "embeddings_project", None)
        if project is not None:
            hidden = project(hidden)
        return self._run_layers(hidden, attention_mask, 0, self.frozen_depth)

    def logits_from_layer(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Classifier logits from the hidden states after layer k: layers k..N-1, then the head.

        At k=N no layer is left and the heads read only the first token, so ``hidden`` may then
        hold just that token ([B, 1, H]).
        """
        hidden = self._run_layers(hidden, attention_mask, self.frozen_depth, self.num_layers)
        pooler = getattr(self.encoder, "pooler", None)
        if pooler is not None:  # BERT: tanh-pooled first token, dropout, linear
            return self.classifier.classifier(self.classifier.dropout(pooler(hidden)))
        return self.classifier.classifier(hidden)  # RoBERTa/ELECTRA heads take [:, 0] themselves

    def _run_layers(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int, stop: int
    ) -> torch.Tensor:
        if start == stop:
            return hidden
        from transformers.masking_utils import create_bidirectional_mask

        # The mask the encoder's own forward builds for config._attn_implementation (sdpa: a
        # boolean 4-D mask, or None without padding; eager: an additive float mask).
        mask = create_bidirectional_mask(
            config=self.encoder.config, inputs_embeds=hidden, attention_mask=attention_mask
        )
        for layer in self.layers[start:stop]:
            out = layer(hidden, mask)
            hidden = out[0] if isinstance(out, tuple) else out  # older layers return tuples
        return hidden

    def mlm_loss(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Masked-LM cross-entropy; the fresh head projects only the masked positions onto the
        vocabulary, a pretrained one runs as its family wrote it (every position)."""
        selected = labels != -100
        inputs = _inputs(input_ids, attention_mask, token_type_ids)
        if self.mlm_model is not None and bool(selected.any()):
            return self.mlm_model(**inputs, labels=labels).loss.float()
        hidden = self.encoder(**inputs).last_hidden_state
        if not bool(selected.any()):
            return hidden.sum() * 0.0  # no token was masked: a zero that keeps the graph
        logits = self.mlm_head(hidden[selected])
        return F.cross_entropy(logits.float(), labels[selected])


def _inputs(input_ids: torch.Tensor, attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor | None) -> dict[str, torch.Tensor]:
    # Segment ids only for text pairs: DistilBERT's and ModernBERT's forwards take none.
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        inputs["token_type_ids"] = token_type_ids
    return inputs


def quiet_transformers() -> None:
    # "Some weights were newly initialized" is expected for the fresh head; hide the noise.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)


def build_model(
    model_dir: Path,
    *,
    label_names: list[str],
    dropout: float,
    frozen_depth: int,
    seed: int = 0,
    lm_head: bool = True,
) -> SFTModel:
    """Load the encoder from safetensors, add a fresh classifier head (seeded) and the MLM
    head (the checkpoint's pretrained one if it has one; ``lm_head=False`` when no joint
    stage will use it), apply dropout and freezing."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    quiet_transformers()
    config = AutoConfig.from_pretrained(
        str(model_dir),
        local_files_only=True,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
    )
    _set_dropout(config, dropout)
    torch.manual_seed(seed)  # the new classifier and MLM head start from the same weights
    classifier = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), config=config, local_files_only=True, use_safetensors=True
    )
    if not lm_head:
        return SFTModel(classifier, frozen_depth=frozen_depth, mlm_head_source="unused")
    mlm_model = _pretrained_mlm(model_dir, config, classifier)
    return SFTModel(classifier, frozen_depth=frozen_depth, mlm_model=mlm_model)


def _pretrained_mlm(model_dir: Path, config, classifier: nn.Module) -> nn.Module | None:
    """The checkpoint's masked-LM model sharing the classifier's encoder, or None when the
    checkpoint has no MLM head (a bare encoder, as the built-in MiniLM) or its family no
    masked-LM class."""
    from transformers import AutoModelForMaskedLM

    try:
        mlm, info = AutoModelForMaskedLM.from_pretrained(
            str(model_dir), config=config, local_files_only=True, use_safetensors=True,
            output_loading_info=True)
    except (ValueError, OSError, KeyError):
        return None
    prefix = mlm.base_model_prefix
    if any(not key.startswith(f"{prefix}.") for key in info["missing_keys"]):
        return None  # the head's weights are not in the checkpoint: they would be random
    setattr(mlm, prefix, classifier.base_model)  # one encoder, trained by both losses
    mlm.tie_weights()  # the decoder again shares the (now the classifier's) word embeddings
    return mlm
