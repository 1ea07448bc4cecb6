"""Behaviour of the one trainer on a tiny random BERT: it learns, freezes, weights and saves."""

import json
import math

import numpy as np
import pytest
import torch

from search.train import Trainer
from tests.conftest import tiny_config, tiny_data


def _trainer(tiny_model_dir, reviews_csv, tmp_path, *overrides, report=None):
    cfg = tiny_config(tiny_model_dir, reviews_csv, *overrides)
    return Trainer(cfg=cfg, params=cfg.default_params(), data=tiny_data(cfg),
                   model_dir=tiny_model_dir, workdir=tmp_path, report=report)


def test_loss_drops_and_metrics_are_reported_per_epoch(tiny_model_dir, reviews_csv, tmp_path):
    reports = []
    trainer = _trainer(tiny_model_dir, reviews_csv, tmp_path, "train.epochs=4",
                       "train.patience=10", report=lambda m, c: reports.append((m, c)))
    result = trainer.fit()
    losses = [m["train_task_loss"] for m, _ in reports]
    assert len(reports) == 4
    assert losses[-1] < losses[0] * 0.8
    assert result.best["val_accuracy"] > 0.7  # the toy task is separable
    first = reports[0][0]
    for key in ("train_lm_loss", "val_loss", "val_f1_macro", "tokens_per_s", "wall_time_s"):
        assert math.isfinite(first[key])
    assert math.isnan(reports[1][0]["train_lm_loss"])  # stage 2 has no LM term
    assert [m["stage"] for m, _ in reports] == ["joint", "task", "task", "task"]
    # Every evaluation carries its per-class figures and confusion matrix, which agree with
    # its accuracy and worst-class F1.
    for metrics, _ in reports:
        record = json.loads(metrics["val_per_class"])
        confusion = np.array(record["confusion"])
        assert record["labels"] == ["neg", "pos"]
        assert confusion.sum() == len(trainer.data.validation)
        assert np.trace(confusion) / confusion.sum() == pytest.approx(metrics["val_accuracy"])
        assert min(record["f1"]) == pytest.approx(metrics["val_f1_worst"])


def test_score_is_the_best_epoch_and_checkpoint_only_on_improvement(
    tiny_model_dir, reviews_csv, tmp_path
):
    reports = []
    trainer = _trainer(tiny_model_dir, reviews_csv, tmp_path, "train.epochs=4",
                       "train.patience=10", report=lambda m, c: reports.append((m, c)))
    # A fixed sequence of validation scores, so both branches run: improvements (epochs 1, 2,
    # 4) and a worse epoch (3), whose score stays at the best so far and which saves nothing.
    scores = iter([0.6, 0.7, 0.65, 0.8])
    evaluate = trainer.evaluate
    trainer.evaluate = lambda split: {**evaluate(split), "accuracy": next(scores)}
    result = trainer.fit()
    assert [m["score"] for m, _ in reports] == [0.6, 0.7, 0.7, 0.8]
    assert [c is not None for _, c in reports] == [True, True, False, True]
    running_best = -1.0
    for metrics, checkpoint in reports:
        improved = metrics["val_accuracy"] > running_best
        running_best = max(running_best, metrics["val_accuracy"])
        assert metrics["score"] == running_best
        assert (checkpoint is not None) == improved
    assert result.best["val_accuracy"] == running_best


@pytest.mark.parametrize("k", [1, 2])
def test_frozen_weights_are_bit_identical_and_the_rest_changed(
    tiny_model_dir, reviews_csv, tmp_path, k
):
    trainer = _trainer(tiny_model_dir, reviews_csv, tmp_path, f"space.frozen_depth={k}",
                       "space.dropout=0.2")
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.fit()
    frozen = {id(p) for m in trainer.model.frozen_modules() for p in m.parameters()}
    for name, param in trainer.model.named_parameters():
        if id(param) in frozen:
            assert torch.equal(param, before[name]), name
        elif "classifier" in name or "layer." in name:
            assert not torch.equal(param, before[name]), name
    if k == trainer.model.num_layers:  # only the head (pooler + classifier + MLM head) trains
        trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
        assert all(n.split(".")[0] in {"mlm_head", "classifier"} for n in trainable)
        assert not any(".encoder." in n for n in trainable)


def test_alpha_scales_the_stage1_classifier_gradient(tiny_model_dir, reviews_csv, tmp_path):
    grads = {}
    for alpha in (0.0, 1.5, 3.0):
        trainer = _trainer(tiny_model_dir, reviews_csv, tmp_path, f"space.alpha={alpha}")
        trainer.model.train()
        batch = next(iter(__import__("search.batching").batching.iter_batches(
            trainer.data.train, 8, trainer.data.pad_id)))
        loss, _, lm = trainer.compute_loss(batch, "joint")
        assert lm is not None and lm.item() > 0
        loss.backward()
        grads[alpha] = trainer.model.classifier.classifier.weight.grad.clone()
    assert torch.count_nonzero(grads[0.0]) == 0
    assert torch.count_nonzero(grads[1.5]) > 0
    torch.testing.assert_close(grads[3.0], 2 * grads[1.5], rtol=1e-4, atol=1e-7)


def test_early_stopping_ends_the_trial(tiny_model_dir, reviews_csv, tmp_path):
    # lr=0 freezes learning, so the metric never improves after epoch 1.
    trainer = _trainer(tiny_model_dir, reviews_csv, tmp_path, "space.lr=1e-12",
                       "train.epochs=6", "train.patience=2")
    result = trainer.fit()
    assert result.stop_reason == "early_stopped"
    assert len(result.history) == 3


def test_nan_loss_ends_the_trial_as_diverged(tiny_model_dir, reviews_csv, tmp_path):
    # A random head: a probe would overwrite the poisoned weights before the first step.
    trainer = _trainer(tiny_model_dir, reviews_csv, tmp_path, "train.head_init=random")
    with torch.no_grad():
        trainer.model.classifier.classifier.weight.fill_(float("nan"))
    result = trainer.fit()
    assert result.stop_reason == "diverged"
    assert "diverged" in result.message
    assert result.history == []


def test_same_seed_gives_the_same_trial(tiny_model_dir, reviews_csv, tmp_path):
    runs = [
        _trainer(tiny_model_dir, reviews_csv, tmp_path / str(i), "space.dropout=0.1").fit()
        for i in range(2)
    ]
    assert [h["train_task_loss"] for h in runs[0].history] == [
        h["train_task_loss"] for h in runs[1].history
    ]


def test_resume_continues_after_the_checkpointed_epoch(tiny_model_dir, reviews_csv, tmp_path):
    first = _trainer(tiny_model_dir, reviews_csv, tmp_path / "a", "train.epochs=1").fit()
    resumed = _trainer(tiny_model_dir, reviews_csv, tmp_path / "b", "train.epochs=3",
                       "train.patience=5")
    result = resumed.fit(resume_from=first.checkpoint_dir)
    assert [m["epoch"] for m in result.history] == [2, 3]
    assert result.best["score"] >= first.best["score"]
    # The weights came from the checkpoint: evaluating before training reproduces epoch 1.
    fresh = _trainer(tiny_model_dir, reviews_csv, tmp_path / "c", "train.epochs=3")
    fresh._resume(first.checkpoint_dir, type(first)(params=fresh.params))
    again = fresh.evaluate(fresh.data.validation)
    assert again["accuracy"] == first.best["val_accuracy"]
    assert again["loss"] == pytest.approx(first.best["val_loss"], rel=1e-5)


def test_evaluations_fall_mid_epoch_with_eval_every(tiny_model_dir, reviews_csv, tmp_path):
    # Batch 8, evaluated every quarter of an epoch (the toy training split is 320 rows).
    rows = len(tiny_data(tiny_config(tiny_model_dir, reviews_csv)).train)
    assert rows % 32 == 0
    reports = []
    trainer = _trainer(tiny_model_dir, reviews_csv, tmp_path, "train.epochs=1",
                       f"train.eval_every={rows // 4}", "train.patience=10",
                       report=lambda m, c: reports.append((m, c)))
    trainer.fit()
    assert [m["examples"] for m, _ in reports] == [rows // 4 * k for k in (1, 2, 3, 4)]
    assert [m["epoch"] for m, _ in reports] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert reports[0][1] is not None  # the first evaluation is the best so far: checkpointed
    assert all(m["stop_reason"] == "running" for m, _ in reports[:-1])
    assert reports[-1][0]["stop_reason"] == "completed"


def test_lr_factor_warms_up_then_decays_to_zero():
    from search.train import lr_factor

    assert lr_factor(0.05, 0.1) == pytest.approx(0.5)
    assert lr_factor(0.1, 0.1) == pytest.approx(1.0)
    assert lr_factor(0.55, 0.1) == pytest.approx(0.5)
    assert lr_factor(1.0, 0.1) == 0.0


def test_time_limit_ends_training_early_with_the_lr_decayed(
    tiny_model_dir, reviews_csv, tmp_path, monkeypatch
):
    # A clock that moves 1 s per reading (a few readings a step): a 40 s limit ends the run
    # well before its 80 steps, and the schedule, which follows the clock, reaches zero there.
    from search import train

    clock = iter(range(10**6))
    monkeypatch.setattr(train.time, "perf_counter", lambda: float(next(clock)))
    trainer = _trainer(tiny_model_dir, reviews_csv, tmp_path, "train.epochs=2",
                       "train.time_limit_s=40", "train.patience=100")
    lrs = []
    step = trainer._step
    trainer._step = lambda batch, stage, lr: lrs.append(lr) or step(batch, stage, lr)
    result = trainer.fit()
    assert 5 <= len(lrs) < trainer.total_steps // 2
    assert result.stop_reason == "completed" and result.history[-1]["progress"] == 1.0
    assert lrs[-1] < 0.3 * max(lrs)  # decaying to zero by the limit, not cut at its peak


def test_a_passed_stop_time_ends_the_run_reported_and_checkpointed(
    tiny_model_dir, reviews_csv, tmp_path
):
    # A sweep whose time is up: the trial evaluates after the step it is in, reports that
    # evaluation with its checkpoint, and ends as budget_stopped (not cut off mid-report).
    import time

    reports = []
    cfg = tiny_config(tiny_model_dir, reviews_csv, "train.epochs=4", "train.patience=100")
    trainer = Trainer(cfg=cfg, params=cfg.default_params(), data=tiny_data(cfg),
                      model_dir=tiny_model_dir, workdir=tmp_path, stop_at=time.time() - 1,
                      report=lambda m, c: reports.append((m, c)))
    result = trainer.fit()
    assert len(reports) == 1 and reports[0][0]["step"] == 1
    metrics, checkpoint = reports[0]
    assert metrics["stop_reason"] == result.stop_reason == "budget_stopped"
    assert checkpoint is not None and (checkpoint / "model.safetensors").exists()


def test_micro_batches_under_a_token_cap_give_the_whole_batch_update(
    tiny_model_dir, reviews_csv, tmp_path
):
    """Long texts over ``train.max_batch_tokens`` run in slices whose row-weighted gradients
    add up to the batch's: the same training run, in less memory."""
    from search.batching import iter_batches, micro_batches

    runs = {}
    for cap in ("null", "40"):  # 40 tokens: 2-5 rows of these 8-16-token texts per slice
        trainer = _trainer(tiny_model_dir, reviews_csv, tmp_path / cap, "space.joint_epochs=0",
                           f"train.max_batch_tokens={cap}")
        batch = next(trainer._epoch_batches(0, 0))
        task, _ = trainer._step(batch, "task", lr=1e-3)
        runs[cap] = (task, {n: p.grad.clone() for n, p in trainer.model.named_parameters()
                            if p.grad is not None})
    (whole, whole_grads), (sliced, sliced_grads) = runs["null"], runs["40"]
    assert sliced == pytest.approx(whole, rel=1e-5)  # the batch's mean task loss
    assert sliced_grads.keys() == whole_grads.keys()
    for name, grad in whole_grads.items():  # the gradient the optimizer stepped on
        assert torch.allclose(sliced_grads[name], grad, rtol=1e-4, atol=1e-6), name
    # Each slice holds at most the cap (or one row), trimmed to its own longest row.
    data = trainer.data
    batch = next(iter_batches(data.train, 8, data.pad_id, by_length=True))
    parts = micro_batches(batch, 40)
    assert len(parts) > 1 and sum(len(p["labels"]) for p in parts) == 8
    for part in parts:
        rows, width = part["input_ids"].shape
        assert rows * width <= 40 or rows == 1
        assert width == int(part["attention_mask"].sum(1).max())
    # Evaluation batches shrink to the cap instead (rows x longest row).
    for batch in iter_batches(data.validation, 32, data.pad_id, by_length=True, max_tokens=40):
        assert batch["input_ids"].numel() <= 40 or len(batch["labels"]) == 1


def _oom_above(tokens: int):
    """A Trainer whose forward pass runs out of memory on more than ``tokens`` padded tokens
    (memory grows with rows x length)."""

    class Tight(Trainer):
        def compute_loss(self, batch, stage):
            if batch["input_ids"].numel() > tokens:
                raise torch.OutOfMemoryError("simulated: CUDA out of memory")
            return super().compute_loss(batch, stage)

    return Tight


def test_an_out_of_memory_step_retries_with_half_the_tokens_and_the_same_batch(
    tiny_model_dir, reviews_csv, tmp_path
):
    cfg = tiny_config(tiny_model_dir, reviews_csv, "space.joint_epochs=0", "train.epochs=1",
                      "train.oom_retries=3")
    trainer = _oom_above(48)(cfg=cfg, params=cfg.default_params(), data=tiny_data(cfg),
                             model_dir=tiny_model_dir, workdir=tmp_path / "a")
    result = trainer.fit()  # batches of 8 rows x up to 16 tokens: halved until they fit
    retries = result.history[-1]["oom_retries"]
    assert result.stop_reason == "completed" and 1 <= retries <= 3
    assert trainer.max_batch_tokens <= 48 and result.best["val_accuracy"] > 0.6
    # Out of retries, the error is the trial's: classified as out of memory in the results.
    from search.results import classify_failure

    one = tiny_config(tiny_model_dir, reviews_csv, "space.joint_epochs=0", "train.oom_retries=1")
    with pytest.raises(torch.OutOfMemoryError) as caught:
        _oom_above(8)(cfg=one, params=one.default_params(), data=tiny_data(one),
                      model_dir=tiny_model_dir, workdir=tmp_path / "b").fit()
    assert classify_failure("error", f"OutOfMemoryError: {caught.value}") == "out_of_memory"


@pytest.mark.parametrize(("reason", "error", "kind"), [
    ("error", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "oom"),
    ("error", "ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on "
              "memory.", "oom"),
    ("error", "IndexError: index out of range in self", "data"),
    ("error", "search.sources.DataError: data.csv: row 4: text is empty", "data"),
    ("error", "ValueError: something else\n  File x.py, line 3, in f", "other"),
    ("diverged", "diverged: loss is nan (non-finite)", "diverged"),
    ("completed", None, None),
])
def test_failures_are_classified(reason, error, kind):
    from search.results import classify_failure

    expected = {"oom": "out_of_memory"}.get(kind, kind)
    assert classify_failure(reason, error) == expected
