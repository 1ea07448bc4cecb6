"""The SFT objective: BERT-style masking and the staged loss L = L_lm + alpha * L_task.

Stage 1 ("joint", the first ``joint_epochs`` epochs) adds the masked-LM loss on a masked copy of
the batch (or of an unlabeled in-domain batch); stage 2 ("task") trains on the task loss alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

__all__ = ["MaskingSpec", "joint_loss", "mask_tokens", "stage_at", "task_loss"]

IGNORE_INDEX = -100


@dataclass(frozen=True)
class MaskingSpec:
    """What the masker needs to know about the vocabulary."""

    mask_id: int
    special_ids: tuple[int, ...]
    vocab_size: int
    probability: float = 0.15

    def replacement_ids(self) -> torch.Tensor:
        """Ids a random replacement may use: every id but the special tokens."""
        keep = torch.ones(self.vocab_size, dtype=torch.bool)
        keep[list(self.special_ids)] = False
        return keep.nonzero().squeeze(1)


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    spec: MaskingSpec,
    generator: torch.Generator,
    replacement_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose 15% of real, non-special tokens; of those 80% -> [MASK], 10% random, 10% kept.

    Returns the masked copy and the labels (original id where chosen, -100 elsewhere).
    """
    special = torch.isin(input_ids, torch.tensor(spec.special_ids, dtype=input_ids.dtype))
    eligible = attention_mask.bool() & ~special
    draw = torch.rand(input_ids.shape, generator=generator)
    chosen = eligible & (draw < spec.probability)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))

    split = torch.rand(input_ids.shape, generator=generator)
    to_mask = chosen & (split < 0.8)
    to_random = chosen & (split >= 0.8) & (split < 0.9)
    pool = spec.replacement_ids() if replacement_ids is None else replacement_ids
    random_ids = pool[torch.randint(len(pool), input_ids.shape, generator=generator)]
    masked = torch.where(to_mask, torch.full_like(input_ids, spec.mask_id), input_ids)
    masked = torch.where(to_random, random_ids.to(input_ids.dtype), masked)
    return masked, labels


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels)


def joint_loss(lm: torch.Tensor, task: torch.Tensor, alpha: float) -> torch.Tensor:
    """Stage-1 loss. alpha weights the task term; the LM term keeps weight 1."""
    return lm + alpha * task


def stage_at(step: int, steps_per_epoch: int, joint_epochs: int) -> str:
    """``"joint"`` for the steps (0-based) of the first ``joint_epochs`` epochs, then ``"task"``."""
    return "joint" if step < steps_per_epoch * joint_epochs else "task"
