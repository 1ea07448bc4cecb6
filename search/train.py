"""The one trainer, shared by `sftune train` and every sweep trial. It knows nothing of Ray.

Progress leaves through an injected ``report(metrics, checkpoint_dir)`` callback, called once per
epoch; ``checkpoint_dir`` is set only when the epoch is the best so far (a trial keeps only its
best-epoch checkpoint). The test split is never touched here except by :func:`evaluate_split`
when a caller asks for it explicitly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from search import artifacts
from search.config import AppConfig, TrialParams
from search.data import EncodedSplit, PreparedData, iter_batches
from search.device import resolve_device
from search.model import SFTModel, build_model, load_tokenizer
from search.objective import MaskingSpec, joint_loss, mask_tokens, stage_of_epoch, task_loss
from search.prefix_cache import setup_prefix_cache

__all__ = [
    "DivergedError",
    "ReportFn",
    "Trainer",
    "TrialResult",
    "evaluate_split",
]

ReportFn = Callable[[dict[str, Any], Path | None], None]


class DivergedError(RuntimeError):
    """The loss became NaN or infinite; the trial cannot continue."""


@dataclass
class TrialResult:
    """What one trial leaves behind."""

    params: TrialParams
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    stop_reason: str = "completed"  # completed | early_stopped | diverged
    message: str = ""
    checkpoint_dir: Path | None = None


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on matrices only; biases and LayerNorm weights (1-D) get none."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up to the peak lr, then linear decay to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _macro_f1(labels: np.ndarray, preds: np.ndarray, num_labels: int) -> float:
    scores = []
    for c in range(num_labels):
        tp = np.sum((preds == c) & (labels == c))
        denom = np.sum(preds == c) + np.sum(labels == c)
        scores.append(0.0 if denom == 0 else 2 * tp / denom)
    return float(np.mean(scores))


@torch.inference_mode()
def evaluate_split(
    logits_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    split: EncodedSplit,
    *,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    num_labels: int,
) -> dict[str, float]:
    """Loss, accuracy and macro-F1 of ``logits_fn`` over a split (sorted by length for speed)."""
    total_loss, preds, labels = 0.0, [], []
    for batch in iter_batches(split, batch_size, pad_id, by_length=True):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = logits_fn(batch).float()
        total_loss += F.cross_entropy(logits, batch["labels"], reduction="sum").item()
        preds.append(logits.argmax(-1).cpu().numpy())
        labels.append(batch["labels"].cpu().numpy())
    y, p = np.concatenate(labels), np.concatenate(preds)
    return {
        "loss": total_loss / len(y),
        "accuracy": float(np.mean(y == p)),
        "f1_macro": _macro_f1(y, p, num_labels),
    }


class Trainer:
    """Trains one trial: build the model, run the staged objective, keep the best epoch."""

    def __init__(
        self,
        *,
        cfg: AppConfig,
        params: TrialParams,
        data: PreparedData,
        model_dir: Path,
        workdir: Path,
        report: ReportFn | None = None,
        trial_meta: dict[str, Any] | None = None,
        progress: bool = False,
        cache_dir: Path | None = None,
    ) -> None:
        self.cfg, self.params, self.data = cfg, params, data
        self.model_dir, self.workdir = Path(model_dir), Path(workdir)
        self.report = report or (lambda metrics, checkpoint: None)
        self.trial_meta = trial_meta or {}
        self.progress = progress
        self.device = resolve_device(cfg.train.device)
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        self.model = self._build_model()
        self.tokenizer = load_tokenizer(self.model_dir)
        groups = param_groups(self.model, params.weight_decay)
        # The fused kernel updates all parameters in one pass: at full fine-tuning on 2 CPU cores
        # the optimizer step is a visible share of each step (HF Trainer also defaults to it).
        self.optimizer = torch.optim.AdamW(groups, lr=params.lr, fused=True)
        self.steps_per_epoch = math.ceil(len(data.train) / params.batch_size)
        total = self.steps_per_epoch * cfg.train.epochs
        self.scheduler = linear_schedule(self.optimizer, round(total * params.warmup_ratio), total)
        self.rng = np.random.default_rng(cfg.train.seed)
        self.mask_generator = torch.Generator().manual_seed(cfg.train.seed)
        self.masking = MaskingSpec(
            mask_id=data.mask_id, special_ids=tuple(data.special_ids),
            vocab_size=data.vocab_size, probability=cfg.train.mlm_probability,
        )
        self.replacement_ids = self.masking.replacement_ids()
        self._unlabeled = self._unlabeled_batches() if data.unlabeled is not None else None
        # cache_dir shares frozen-prefix activations between a node's trials (None: this
        # trial's memory); eval-mode only, so it draws no random numbers.
        self.prefix_cache = setup_prefix_cache(
            self.model, data, cfg=cfg, model_dir=self.model_dir, cache_dir=cache_dir,
            device=self.device, autocast=self._autocast,
        )

    def _build_model(self) -> SFTModel:
        model = build_model(
            self.model_dir, label_names=self.data.label_names, dropout=self.params.dropout,
            frozen_depth=self.params.frozen_depth, seed=self.cfg.train.seed,
        )
        return model.to(self.device)

    def _autocast(self):
        enabled = self.device.type == "cuda" and self.cfg.train.bf16
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _unlabeled_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:  # cycles: the LM corpus may be shorter or longer than the labelled set
            yield from iter_batches(
                self.data.unlabeled, self.params.batch_size, self.data.pad_id,
                shuffle=True, generator=self.rng,
            )

    def task_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Classifier logits on unmasked inputs (the path the prefix cache can shortcut)."""
        hidden = self.prefix_cache.lookup(batch) if self.prefix_cache is not None else None
        if hidden is not None:  # layers k..N-1 and the head only
            return self.model.logits_from_layer(hidden, batch["attention_mask"])
        return self.model.task_logits(batch["input_ids"], batch["attention_mask"])

    def _lm_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        source = next(self._unlabeled) if self._unlabeled is not None else batch
        masked, labels = mask_tokens(
            source["input_ids"].cpu(), source["attention_mask"].cpu(), self.masking,
            self.mask_generator, self.replacement_ids,
        )
        mask = source["attention_mask"].to(self.device)
        return self.model.mlm_loss(masked.to(self.device), mask, labels.to(self.device))

    def compute_loss(self, batch: dict[str, torch.Tensor], stage: str):
        """The stage's objective on one batch: (loss, task loss, LM loss or None)."""
        with self._autocast():
            task = task_loss(self.task_logits(batch), batch["labels"])
            lm = self._lm_loss(batch) if stage == "joint" else None
            loss = joint_loss(lm, task, self.params.alpha) if lm is not None else task
        return loss, task, lm

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> tuple[float, float]:
        """One optimizer step; returns (task loss, LM loss or NaN)."""
        loss, task, lm = self.compute_loss(batch, stage)
        if not torch.isfinite(loss):
            raise DivergedError(f"diverged: loss is {loss.item()} (non-finite)")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        return task.item(), (lm.item() if lm is not None else math.nan)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        stage = stage_of_epoch(epoch, self.params.joint_epochs)
        self.model.train()
        task_sum, lm_sum, tokens, steps = 0.0, 0.0, 0, 0
        start = time.perf_counter()
        batches = iter_batches(
            self.data.train, self.params.batch_size, self.data.pad_id,
            shuffle=True, generator=self.rng, by_length=self.cfg.train.group_by_length,
        )
        for batch in self._progress(batches, epoch, stage):
            tokens += int(batch["attention_mask"].sum())
            batch = {k: v.to(self.device) for k, v in batch.items()}
            task, lm = self._step(batch, stage)
            task_sum, lm_sum, steps = task_sum + task, lm_sum + lm, steps + 1
        seconds = time.perf_counter() - start
        return {
            "epoch": epoch, "stage": stage,
            "train_task_loss": task_sum / steps, "train_lm_loss": lm_sum / steps,
            "train_time_s": seconds, "tokens_per_s": tokens / seconds,
            "examples_per_s": len(self.data.train) / seconds,
            "lr": self.scheduler.get_last_lr()[0],
            "prefix_cache": self.prefix_cache is not None,
            **self._peak_memory(),
        }

    def _peak_memory(self) -> dict[str, float]:
        """Peak RSS of this process and, on CUDA, peak GPU memory allocated, in MiB."""
        import resource

        gpu = math.nan
        if self.device.type == "cuda":
            gpu = torch.cuda.max_memory_allocated(self.device) / 2**20
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        return {"peak_rss_mib": rss, "peak_gpu_mem_mib": gpu}

    def _progress(self, batches, epoch: int, stage: str):
        if not self.progress:
            return batches
        from tqdm.auto import tqdm

        total_epochs = self.cfg.train.epochs
        desc = f"epoch {epoch}/{total_epochs} ({stage})"
        return tqdm(batches, total=self.steps_per_epoch, desc=desc, unit="step", leave=True)

    def evaluate(self, split: EncodedSplit) -> dict[str, float]:
        self.model.eval()
        with self._autocast():
            return evaluate_split(
                self.task_logits, split, batch_size=self.cfg.train.eval_batch_size,
                pad_id=self.data.pad_id, device=self.device, num_labels=len(self.data.label_names),
            )

    def _save_best(self, metrics: dict[str, Any]) -> Path:
        meta = {
            "label_names": self.data.label_names,
            "params": self.params.model_dump(),
            "metrics": metrics,
            "data_fingerprint": self.data.fingerprint,
            "data_sizes": self.data.sizes,
            "base_model": self.cfg.model.name,
            **self.trial_meta,
        }
        return artifacts.save_checkpoint(
            self.workdir / "best", model=self.model.classifier, tokenizer=self.tokenizer, meta=meta
        )

    def _stop_reason(self, epoch: int, stale: int) -> str:
        if epoch >= self.cfg.train.epochs:
            return "completed"
        return "early_stopped" if stale >= self.cfg.train.patience else "running"

    def _resume(self, checkpoint: Path, result: TrialResult) -> int:
        """Load a checkpoint of this trial; returns the epoch to continue from.

        Checkpoints hold weights only, so AdamW's moments restart; the lr schedule and the
        best-so-far score continue where the checkpoint left them.
        """
        from safetensors.torch import load_file

        artifacts.verify_safetensors_only(checkpoint)
        state = load_file(str(Path(checkpoint) / artifacts.WEIGHTS_FILE))
        self.model.classifier.load_state_dict(state)
        result.best = artifacts.read_meta(checkpoint)["metrics"]
        result.checkpoint_dir = Path(checkpoint)
        done = int(result.best["epoch"])
        for _ in range(done * self.steps_per_epoch):
            self.scheduler.step()
        return done + 1

    def fit(self, resume_from: Path | None = None) -> TrialResult:
        """Run the epochs (until early stopping or divergence) and return the result.

        Every epoch's metrics carry ``score`` (the best epoch so far: a trial is judged by its
        best epoch, not its last) and ``stop_reason`` (running, completed or early_stopped).
        """
        result = TrialResult(params=self.params)
        first = self._resume(resume_from, result) if resume_from else 1
        metric, stale, started = self.cfg.train.metric, 0, time.perf_counter()
        for epoch in range(first, self.cfg.train.epochs + 1):
            try:
                metrics = self._train_epoch(epoch)
            except DivergedError as err:
                result.stop_reason, result.message = "diverged", str(err)
                return result
            metrics.update({f"val_{k}": v for k, v in self.evaluate(self.data.validation).items()})
            metrics["wall_time_s"] = time.perf_counter() - started
            improved = result.best is None or metrics[metric] > result.best[metric]
            stale = 0 if improved else stale + 1
            metrics["score"] = metrics[metric] if improved else result.best[metric]
            metrics["stop_reason"] = self._stop_reason(epoch, stale)
            result.history.append(metrics)
            if improved:
                result.best = metrics
                result.checkpoint_dir = self._save_best(metrics)
            self.report(metrics, result.checkpoint_dir if improved else None)
            if metrics["stop_reason"] != "running":
                result.stop_reason = metrics["stop_reason"]
                break
        return result
