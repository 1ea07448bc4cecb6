"""The one trainer, shared by `sftune train` and every sweep trial. It knows nothing of Ray.

Progress leaves through an injected ``report(metrics, checkpoint_dir)`` callback, called once per
epoch; ``checkpoint_dir`` is set only when the epoch is the best so far (a trial keeps only its
best-epoch checkpoint). The test split is never touched here except by :func:`evaluate_split`
when a caller asks for it explicitly.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from search import artifacts
from search.batching import encoder_inputs, iter_batches, micro_batches
from search.config import AppConfig, TrialParams
from search.data import PreparedData
from search.device import resolve_device
from search.encoding import EncodedSplit
from search.head_init import ProbeHead, fit_configured_probe, load_head
from search.metrics import classification_metrics, per_class_json, read_per_class
from search.model import SFTModel, build_model, load_tokenizer
from search.objective import MaskingSpec, joint_loss, mask_tokens, stage_at, task_loss
from search.prefix_cache import setup_prefix_cache
from search.results import StopReason

logger = logging.getLogger(__name__)

__all__ = [
    "DivergedError",
    "ReportFn",
    "Trainer",
    "TrialResult",
    "evaluate_split",
    "evaluation_steps",
    "log_prob_metrics",
    "split_logits",
]

#: What a checkpoint's metadata records of how its head started (see search.head_init).
HEAD_META_KEYS = ("head_init", "probe_examples", "probe_train_accuracy")

ReportFn = Callable[[dict[str, Any], Path | None], None]


class DivergedError(RuntimeError):
    """The loss became NaN or infinite; the trial cannot continue."""


@dataclass
class TrialResult:
    """What one trial leaves behind."""

    params: TrialParams
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    stop_reason: str = StopReason.COMPLETED  # or EARLY_STOPPED, DIVERGED
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


def lr_factor(progress: float, warmup_ratio: float) -> float:
    """Linear warm-up to the peak lr over the first ``warmup_ratio`` of training, then linear
    decay to zero at its end. ``progress`` (0..1) is the share of the run done, in steps or in
    time, whichever is further along: a time-limited run still decays to zero by its limit
    (budgeted training, Li et al. 2020)."""
    if progress < warmup_ratio:
        return progress / warmup_ratio
    return max(0.0, (1.0 - progress) / max(1e-9, 1.0 - warmup_ratio))


def evaluation_steps(eval_every: int | None, batch_size: int, steps_per_epoch: int) -> int:
    """Optimizer steps between evaluations: ``eval_every`` examples, else one epoch."""
    return max(1, round(eval_every / batch_size)) if eval_every else steps_per_epoch


def _free_memory(device: torch.device) -> None:
    """Drop what a failed forward pass left behind before the smaller retry."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@torch.inference_mode()
def split_logits(
    logits_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    split: EncodedSplit,
    *,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    max_tokens: int | None = None,
) -> np.ndarray:
    """``logits_fn``'s (examples, labels) float32 logits over a split, in the split's row order
    (batched sorted by length for speed; ``max_tokens`` caps a batch's padded size)."""
    parts, rows = [], []
    for batch in iter_batches(split, batch_size, pad_id, by_length=True, max_tokens=max_tokens):
        rows.append(batch["index"].numpy())
        batch = {k: v.to(device) for k, v in batch.items()}
        parts.append(logits_fn(batch).float().cpu().numpy())
    logits = np.empty((len(split), parts[0].shape[1]), dtype=np.float32)
    logits[np.concatenate(rows)] = np.concatenate(parts)
    return logits


def log_prob_metrics(log_probs: np.ndarray, labels: np.ndarray,
                     num_labels: int) -> dict[str, Any]:
    """Loss (mean negative log-likelihood), accuracy, macro- and worst-class F1, per-class
    figures and the confusion matrix of (examples, labels) log-probabilities. See
    :func:`search.metrics.classification_metrics`."""
    labels = np.asarray(labels)
    loss = -float(np.mean(log_probs[np.arange(len(labels)), labels]))
    return {"loss": loss, **classification_metrics(labels, log_probs.argmax(-1), num_labels)}


def evaluate_split(
    logits_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    split: EncodedSplit,
    *,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    num_labels: int,
    max_tokens: int | None = None,
) -> dict[str, Any]:
    """:func:`log_prob_metrics` of ``logits_fn`` over a split."""
    logits = split_logits(logits_fn, split, batch_size=batch_size, pad_id=pad_id, device=device,
                          max_tokens=max_tokens)
    log_probs = torch.log_softmax(torch.from_numpy(logits), -1).numpy()
    return log_prob_metrics(log_probs, split.labels, num_labels)


@dataclass
class _Progress:
    """Where a run stands: steps and examples done, and the share of the run behind it."""

    step: int = 0
    start_step: int = 0  # where this run began (after a resume: the checkpoint's step)
    start_progress: float = 0.0
    started: float = field(default_factory=lambda: time.perf_counter())
    stale: int = 0  # evaluations since the best one

    def share(self, total_steps: int, time_limit_s: float | None, ahead: int = 0) -> float:
        """0..1: the further along of steps (``ahead`` more than done) and wall time, over what
        was left at the start."""
        by_steps = (self.step + ahead - self.start_step) / max(1, total_steps - self.start_step)
        by_time = (time.perf_counter() - self.started) / time_limit_s if time_limit_s else 0.0
        return self.start_progress + (1 - self.start_progress) * min(1.0, max(by_steps, by_time))


class Trainer:
    """Trains one trial: build the model, run the staged objective, keep the best evaluation.

    The run is ``train.epochs`` passes over ``data.train`` (or less, when ``train.time_limit_s``
    runs out first). It is evaluated every ``train.eval_every`` examples (else once per epoch)
    and at its end; each evaluation is reported, and the best one is checkpointed.
    """

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
        head: ProbeHead | None = None,
        stop_at: float | None = None,
    ) -> None:
        self.cfg, self.params, self.data = cfg, params, data
        # A wall-clock time (time.time()) past which the run evaluates once more and ends as
        # budget_stopped: a sweep's time running out ends its trials this way, reported and
        # checkpointed, rather than by Tune cutting them off mid-report.
        self.stop_at = stop_at
        self.head = head  # a probe fit once for many trials (a sweep's); else fit in fit()
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
        self.total_steps = self.steps_per_epoch * cfg.train.epochs
        self.eval_steps = evaluation_steps(cfg.train.eval_every, params.batch_size,
                                           self.steps_per_epoch)
        self.rng = np.random.default_rng(cfg.train.seed)
        self.mask_generator = torch.Generator().manual_seed(cfg.train.seed)
        self.masking = MaskingSpec(
            mask_id=data.mask_id, special_ids=tuple(data.special_ids),
            vocab_size=data.vocab_size, probability=cfg.train.mlm_probability,
        )
        self.replacement_ids = self.masking.replacement_ids()
        #: Padded tokens per forward pass; halved on out-of-memory (_step_retrying_oom).
        self.max_batch_tokens = cfg.train.max_batch_tokens
        self.oom_retries = 0
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
            lm_head=self.params.joint_epochs > 0,
        )
        return model.to(self.device)

    def _init_head(self) -> dict[str, Any]:
        """Warm-start the head (``train.head_init``) before the first step; returns what was
        done, for the checkpoint's metadata."""
        if self.cfg.train.head_init == "random":
            return {"head_init": "random"}
        if self.head is None:
            self.head = fit_configured_probe(self.model, self.data, self.cfg, self.device)
        load_head(self.model, self.head)
        return self.head.describe()

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
        return self.model.task_logits(**encoder_inputs(batch))

    def _lm_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        source = next(self._unlabeled) if self._unlabeled is not None else batch
        masked, labels = mask_tokens(
            source["input_ids"].cpu(), source["attention_mask"].cpu(), self.masking,
            self.mask_generator, self.replacement_ids,
        )
        mask = source["attention_mask"].to(self.device)
        types = source.get("token_type_ids")
        return self.model.mlm_loss(masked.to(self.device), mask, labels.to(self.device),
                                   None if types is None else types.to(self.device))

    def compute_loss(self, batch: dict[str, torch.Tensor], stage: str):
        """The stage's objective on one batch: (loss, task loss, LM loss or None)."""
        with self._autocast():
            task = task_loss(self.task_logits(batch), batch["labels"])
            lm = self._lm_loss(batch) if stage == "joint" else None
            loss = joint_loss(lm, task, self.params.alpha) if lm is not None else task
        return loss, task, lm

    def _step(self, batch: dict[str, torch.Tensor], stage: str, lr: float) -> tuple[float, float]:
        """One optimizer step at learning rate ``lr``; returns (task loss, LM loss or NaN).
        A batch over ``train.max_batch_tokens`` runs as micro-batches, each loss weighted by its
        share of the rows, so the gradient is the whole batch's mean."""
        self.optimizer.zero_grad(set_to_none=True)
        rows, task_sum, lm_sum = len(batch["labels"]), 0.0, 0.0
        for part in micro_batches(batch, self.max_batch_tokens):
            share = len(part["labels"]) / rows
            loss, task, lm = self.compute_loss(part, stage)
            if not torch.isfinite(loss):
                raise DivergedError(f"diverged: loss is {loss.item()} (non-finite)")
            (loss * share).backward()
            task_sum += task.item() * share
            lm_sum += lm.item() * share if lm is not None else math.nan
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.max_grad_norm)
        self.optimizer.step()
        return task_sum, lm_sum

    def _step_retrying_oom(self, batch: dict[str, torch.Tensor], stage: str,
                           lr: float) -> tuple[float, float]:
        """:meth:`_step`, and on out-of-memory (CPU or GPU) the same step again with half the
        tokens per forward pass, up to ``train.oom_retries`` times: its micro-batches then
        accumulate to the same effective batch, so the trial goes on with the same update."""
        while True:
            try:
                return self._step(batch, stage, lr)
            except (torch.OutOfMemoryError, MemoryError) as err:
                if self.oom_retries >= self.cfg.train.oom_retries:
                    raise
                rows, width = batch["input_ids"].shape
                current = min(self.max_batch_tokens or rows * width, rows * width)
                if current <= width:  # one row per pass already: nothing left to halve
                    raise
                self.max_batch_tokens = max(width, current // 2)
                self.oom_retries += 1
                self.optimizer.zero_grad(set_to_none=True)
                _free_memory(self.device)
                logger.warning("out of memory (%s); retrying the step with at most %d tokens "
                               "per forward pass (same effective batch)",
                               str(err).splitlines()[0][:200], self.max_batch_tokens)

    def _epoch_batches(self, epoch: int, skip: int) -> Iterator[dict[str, torch.Tensor]]:
        """Epoch ``epoch``'s (0-based) batches on the trainer's device, minus the first ``skip``.
        The order is drawn from (seed, epoch) alone, so a resumed run sees the batches it would
        have seen."""
        rng = np.random.default_rng([self.cfg.train.seed, epoch])
        batches = iter_batches(
            self.data.train, self.params.batch_size, self.data.pad_id,
            shuffle=True, generator=rng, by_length=self.cfg.train.group_by_length,
        )
        for index, batch in enumerate(batches):
            if index >= skip:
                yield {k: v.to(self.device) for k, v in batch.items()}

    def _batches(self, state: _Progress) -> Iterator[tuple[dict[str, torch.Tensor], str]]:
        """(batch, stage) pairs from ``state.step`` to the planned end of the run."""
        for epoch in range(state.step // self.steps_per_epoch, self.cfg.train.epochs):
            skip = state.step - epoch * self.steps_per_epoch
            for batch in self._epoch_batches(epoch, max(0, skip)):
                yield batch, stage_at(state.step, self.steps_per_epoch, self.params.joint_epochs)

    def _peak_memory(self) -> dict[str, float]:
        """Peak RSS of this process and, on CUDA, peak GPU memory allocated, in MiB."""
        import resource

        gpu = math.nan
        if self.device.type == "cuda":
            gpu = torch.cuda.max_memory_allocated(self.device) / 2**20
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        return {"peak_rss_mib": rss, "peak_gpu_mem_mib": gpu}

    def _progress_bar(self, batches, state: _Progress):
        if not self.progress:
            return batches
        from tqdm.auto import tqdm

        return tqdm(batches, total=self.total_steps - state.step, unit="step", leave=True,
                    desc=f"training ({self.cfg.train.epochs} epochs)")

    def evaluate(self, split: EncodedSplit) -> dict[str, float]:
        self.model.eval()
        with self._autocast():
            metrics = evaluate_split(
                self.task_logits, split, batch_size=self.cfg.train.eval_batch_size,
                pad_id=self.data.pad_id, device=self.device, num_labels=len(self.data.label_names),
                max_tokens=self.max_batch_tokens,
            )
        self.model.train()
        return metrics

    def _save_best(self, metrics: dict[str, Any]) -> Path:
        meta = {
            "label_names": self.data.label_names,
            "params": self.params.model_dump(),
            "metrics": {**metrics, "val_per_class": read_per_class(metrics.get("val_per_class"))},
            "data_fingerprint": self.data.fingerprint,
            "data_sizes": self.data.sizes,
            "max_length": self.data.max_length,
            "truncation": self.data.truncation,
            "text_pairs": self.cfg.data.text_pair_column is not None,
            "base_model": self.cfg.model.name,
            "mlm_head": self.model.mlm_head_source,
            **self.trial_meta,
        }
        return artifacts.save_checkpoint(
            self.workdir / "best", model=self.model.classifier, tokenizer=self.tokenizer, meta=meta
        )

    def _resume(self, checkpoint: Path, result: TrialResult) -> _Progress:
        """Load a checkpoint of this trial; returns where to continue from.

        Checkpoints hold weights only, so AdamW's moments restart; the data order, the lr
        schedule and the best-so-far score continue where the checkpoint left them.
        """
        from safetensors.torch import load_file

        artifacts.verify_safetensors_only(checkpoint)
        state = load_file(str(Path(checkpoint) / artifacts.WEIGHTS_FILE))
        self.model.classifier.load_state_dict(state)
        meta = artifacts.read_meta(checkpoint)
        result.best = meta["metrics"]
        self.trial_meta = {**self.trial_meta, **{k: meta[k] for k in HEAD_META_KEYS if k in meta}}
        result.checkpoint_dir = Path(checkpoint)
        step = int(result.best["step"])
        # A time-limited run's share may have run ahead of its steps; else the steps tell it.
        done = float(result.best["progress"]) if self.cfg.train.time_limit_s else 0.0
        return _Progress(step=step, start_step=step,
                         start_progress=max(done, step / self.total_steps))

    def fit(self, resume_from: Path | None = None) -> TrialResult:
        """Train until the steps (or ``train.time_limit_s``) run out, early stopping or
        divergence, and return the result.

        Every evaluation's metrics carry ``score`` (the best evaluation so far: a trial is judged
        by its best evaluation, not its last) and ``stop_reason`` (running, completed or
        early_stopped).
        """
        result = TrialResult(params=self.params)
        if resume_from:  # the checkpoint's head is the trained one; no new probe
            state = self._resume(resume_from, result)
        else:
            state = _Progress()  # the probe's time counts against train.time_limit_s
            self.trial_meta = {**self.trial_meta, **self._init_head()}
        self.model.train()
        window = _Window()
        time_limit = self.cfg.train.time_limit_s
        for batch, stage in self._progress_bar(self._batches(state), state):
            share = state.share(self.total_steps, time_limit, ahead=1)  # this step's end
            lr = self.params.lr * lr_factor(share, self.params.warmup_ratio)
            try:
                losses = self._step_retrying_oom(batch, stage, lr)
                window.add(batch, stage, *losses)
            except DivergedError as err:
                result.stop_reason, result.message = StopReason.DIVERGED, str(err)
                return result
            state.step += 1
            ended = self._ended(state, time_limit)
            if ended or state.step % self.eval_steps == 0:
                metrics = self._evaluation(state, window, lr, ended, result)
                window = _Window()
                if metrics["stop_reason"] != StopReason.RUNNING:
                    result.stop_reason = metrics["stop_reason"]
                    break
        return result

    def _ended(self, state: _Progress, time_limit: float | None) -> str | None:
        """Why the run ends after this step (its steps or time limit done, or the sweep's stop
        time passed), or None while it goes on."""
        if state.share(self.total_steps, time_limit) >= 1.0:
            return StopReason.COMPLETED
        if self.stop_at is not None and time.time() >= self.stop_at:
            return StopReason.BUDGET_STOPPED
        return None

    def _evaluation(self, state: _Progress, window: _Window, lr: float, ended: str | None,
                    result: TrialResult) -> dict[str, Any]:
        """Evaluate on validation, keep the best, report; returns the reported metrics.

        ``ended`` is the run's stop reason when this is its last evaluation, else None."""
        # examples = steps x batch size (the last batch of an epoch may be shorter): ASHA's time
        # axis, on which its rungs fall exactly at evaluations.
        metrics = {
            "epoch": state.step / self.steps_per_epoch,
            "examples": state.step * self.params.batch_size, "step": state.step,
            "progress": state.share(self.total_steps, self.cfg.train.time_limit_s),
            "lr": lr, "prefix_cache": self.prefix_cache is not None,
            "oom_retries": self.oom_retries,
            **window.summary(), **self._peak_memory(),
        }
        val = self.evaluate(self.data.validation)
        metrics["val_per_class"] = per_class_json(val, self.data.label_names)
        metrics.update({f"val_{k}": v for k, v in val.items() if not isinstance(v, dict | list)})
        metrics["wall_time_s"] = time.perf_counter() - state.started
        metric = self.cfg.train.metric
        improved = result.best is None or metrics[metric] > result.best[metric]
        state.stale = 0 if improved else state.stale + 1
        metrics["score"] = metrics[metric] if improved else result.best[metric]
        stopped = state.stale >= self.cfg.train.patience
        metrics["stop_reason"] = (
            ended or (StopReason.EARLY_STOPPED if stopped else StopReason.RUNNING)
        )
        result.history.append(metrics)
        if improved:
            result.best = metrics
            result.checkpoint_dir = self._save_best(metrics)
        self.report(metrics, result.checkpoint_dir if improved else None)
        return metrics


@dataclass
class _Window:
    """Training losses and throughput since the last evaluation."""

    task_sum: float = 0.0
    lm_sum: float = 0.0
    steps: int = 0
    tokens: int = 0
    stage: str = "task"
    started: float = field(default_factory=lambda: time.perf_counter())

    def add(self, batch: dict[str, torch.Tensor], stage: str, task: float, lm: float) -> None:
        self.task_sum, self.lm_sum = self.task_sum + task, self.lm_sum + lm
        self.steps += 1
        self.tokens += int(batch["attention_mask"].sum())
        self.stage = stage

    def summary(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.started
        return {
            "stage": self.stage,
            "train_task_loss": self.task_sum / max(1, self.steps),
            "train_lm_loss": self.lm_sum / max(1, self.steps) if self.steps else math.nan,
            "train_time_s": seconds, "tokens_per_s": self.tokens / max(seconds, 1e-9),
        }
