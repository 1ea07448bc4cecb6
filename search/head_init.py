"""Warm-start the classifier head with a linear probe on the pretrained encoder's features.

A fresh head is random, so fine-tuning starts at chance: its first steps push noise gradients
into the encoder, and on small data a whole run can end still predicting the majority class
(the 2016 debates, 859 training texts, 3 epochs, mean over 3 split seeds: 0.595 test from a
random head, 0.723 from a probed one; BENCHMARKS.md, "Other datasets"). Fitting the head first as a
logistic regression on the frozen features, then fine-tuning everything (LP-FT: Kumar et al.
2022, "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution"),
starts training from the probe's accuracy instead. The probe is cheap: one eval-mode forward
pass over ``train.probe_examples`` training texts and an L-BFGS fit of a [labels x features]
matrix. It changes the head's last linear layer only; the encoder is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from search.batching import encoder_inputs, iter_batches
from search.config import AppConfig
from search.data import PreparedData
from search.device import resolve_device
from search.encoding import EncodedSplit, sample_split
from search.model import ModelError, SFTModel, build_model

__all__ = ["ProbeHead", "fit_configured_probe", "fit_probe_head", "head_linear", "load_head",
           "probe_for_config"]

#: L2 penalty of the probe (on the summed squared weights): light, because the probe is a
#: starting point that fine-tuning moves anyway; at 1e-3 it underfit the debates in an ad-hoc
#: run (train accuracy 0.65 against 0.74 at 1e-4, split seed 0).
PROBE_L2 = 1e-4
PROBE_MAX_ITER = 200


@dataclass(frozen=True)
class ProbeHead:
    """The probe's weights for the head's last linear layer, and how well it fit."""

    weight: np.ndarray  # [labels, features]
    bias: np.ndarray  # [labels]
    examples: int
    train_accuracy: float

    def describe(self) -> dict[str, float | int | str]:
        return {"head_init": "probe", "probe_examples": self.examples,
                "probe_train_accuracy": self.train_accuracy}


def head_linear(model: SFTModel) -> nn.Linear:
    """The layer that maps the head's features to one logit per label: the classifier's last
    linear layer with that many outputs (BERT: ``classifier``; RoBERTa: ``classifier.out_proj``;
    DistilBERT: ``classifier`` after ``pre_classifier``)."""
    num_labels = model.classifier.config.num_labels
    linears = [m for m in model.classifier.modules()
               if isinstance(m, nn.Linear) and m.out_features == num_labels]
    if not linears:
        raise ModelError(f"{type(model.classifier).__name__} has no linear layer with "
                         f"{num_labels} outputs to warm-start; set train.head_init=random")
    return linears[-1]


@torch.no_grad()  # not inference_mode: the fit below needs the features in autograd
def _features(model: SFTModel, split: EncodedSplit, *, batch_size: int, pad_id: int,
              device: torch.device, max_tokens: int | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's last linear layer's inputs (eval mode: no dropout) and the labels."""
    captured: list[torch.Tensor] = []
    hook = head_linear(model).register_forward_pre_hook(
        lambda _module, args: captured.append(args[0].float().cpu()))
    was_training, labels = model.training, []
    model.eval()
    try:
        for batch in iter_batches(split, batch_size, pad_id, by_length=True,
                                  max_tokens=max_tokens):
            model.task_logits(**encoder_inputs(batch, device))
            labels.append(batch["labels"])
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(captured), torch.cat(labels)


def _fit_softmax_regression(features: torch.Tensor, labels: torch.Tensor, num_labels: int,
                            l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression by L-BFGS: mean cross-entropy + l2 * sum(W^2)."""
    weight = torch.zeros(num_labels, features.shape[1], requires_grad=True)
    bias = torch.zeros(num_labels, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=PROBE_MAX_ITER,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight.T + bias, labels) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def fit_probe_head(model: SFTModel, data: PreparedData, *, examples: int, batch_size: int,
                   seed: int, device: torch.device, max_tokens: int | None = None) -> ProbeHead:
    """Fit the probe on a stratified sample of ``examples`` training texts."""
    sample = sample_split(data.train, examples, seed)
    features, labels = _features(model, sample, batch_size=batch_size, pad_id=data.pad_id,
                                 device=device, max_tokens=max_tokens)
    weight, bias = _fit_softmax_regression(features, labels, len(data.label_names), PROBE_L2)
    accuracy = float(((features @ weight.T + bias).argmax(-1) == labels).float().mean())
    return ProbeHead(weight=weight.numpy(), bias=bias.numpy(), examples=len(labels),
                     train_accuracy=accuracy)


def load_head(model: SFTModel, head: ProbeHead) -> None:
    """Copy the probe's weights into the head's last linear layer."""
    linear = head_linear(model)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(head.weight))
        linear.bias.copy_(torch.from_numpy(head.bias))


def probe_for_config(cfg: AppConfig, data: PreparedData, model_dir: Path) -> ProbeHead:
    """The probe a trial of ``cfg`` would fit, computed once (a sweep shares it with every
    trial: the pretrained features depend on no searched value, since dropout is off in eval
    mode and frozen depth changes no weight)."""
    device = resolve_device(cfg.train.device)
    model = build_model(model_dir, label_names=data.label_names, dropout=0.0, frozen_depth=0,
                        seed=cfg.train.seed, lm_head=False).to(device)
    return fit_configured_probe(model, data, cfg, device)


def fit_configured_probe(model: SFTModel, data: PreparedData, cfg: AppConfig,
                         device: torch.device) -> ProbeHead:
    """:func:`fit_probe_head` with the config's sample size, batch size and seed: the one place
    a trial (:class:`search.train.Trainer`) and a sweep's driver turn the config into a probe."""
    return fit_probe_head(model, data, examples=cfg.train.probe_examples,
                          batch_size=cfg.train.batch_size, seed=cfg.train.seed, device=device,
                          max_tokens=cfg.train.max_batch_tokens)
