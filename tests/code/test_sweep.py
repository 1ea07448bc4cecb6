"""A real sweep on a local Ray: Optuna TPE + ASHA over the tiny model, trials train for real."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import ray
from ray import cloudpickle

from search import artifacts
from search.results import read_sweep_meta, read_trials, summarize_trials
from search.sweep import SweepError, run_sweep, run_trial
from tests.conftest import tiny_config

pytestmark = pytest.mark.slow
# Trial wrappers below are shipped to Ray workers by value (the tests package is not on their path).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False,
             log_to_driver=False)
    yield
    ray.shutdown()


def _cfg(tiny_model_dir, reviews_csv, tmp_path, *overrides):
    return tiny_config(
        tiny_model_dir, reviews_csv, f"tune.storage_path={tmp_path}", "tune.num_samples=4",
        "tune.max_concurrent_trials=2", "space.lr={low: 0.0005, high: 0.005, log: true}",
        "space.frozen_depth={low: 0, high: 2}", "space.dropout={low: 0.0, high: 0.1}",
        *overrides,
    )


def test_sweep_runs_trials_records_epochs_and_exports_the_best(
    tiny_model_dir, reviews_csv, tmp_path
):
    from transformers import pipeline

    from search.best import export_best

    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.keep_checkpoints=2")
    path = run_sweep(cfg, name="real")
    frame = read_trials(path)
    summary = summarize_trials(frame)
    assert len(summary) == 4 and summary["trial_id"].is_unique
    assert (summary["status"] == "TERMINATED").all()
    per_trial_epochs = frame[frame["epoch"] > 0].groupby("trial_id")["epoch"].apply(list)
    assert all(epochs == list(range(1, len(epochs) + 1)) for epochs in per_trial_epochs)
    assert frame["val_accuracy"].notna().all() and frame["train_task_loss"].notna().all()
    assert frame["lr"].between(0.0005, 0.005).all()
    assert frame["frozen_depth"].isin([0, 1, 2]).all()
    assert frame["dropout"].between(0.0, 0.1).all()
    # The best trial is judged by its best epoch, not its last.
    best = summary.iloc[0]
    assert best["score"] == frame["val_accuracy"].max()
    kept = summary["checkpoint"].map(lambda c: isinstance(c, str) and Path(c).is_dir())
    assert kept.sum() == 2 and kept.iloc[:2].all()  # only the top-2 trials keep checkpoints
    meta = read_sweep_meta(path)
    assert meta["status"] == "finished" and meta["best"]["trial_id"] == best["trial_id"]
    assert (path / "sftune" / "optuna.db").is_file()

    exported = export_best(path, tmp_path / "export")
    assert exported["trial_id"] == best["trial_id"]
    assert 0 <= exported["test_accuracy"] <= 1
    meta = artifacts.read_meta(tmp_path / "export")
    assert meta["trial_id"] == best["trial_id"] and "test_accuracy" in meta["test"]
    scores = pipeline("text-classification", model=str(tmp_path / "export"))(["great fun"])
    assert scores[0]["label"] in {"neg", "pos"}
    assert export_best(path, tmp_path / "again")["test_accuracy"] == exported["test_accuracy"]


def test_asha_stops_a_poor_trial_early(tiny_model_dir, reviews_csv, tmp_path):
    # One learning rate learns, the other cannot move the weights: the latter's rung-1 score is
    # chance, below the good trials', and ASHA (grace 1, factor 2) stops it there.
    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.num_samples=6",
               "tune.max_concurrent_trials=1", "train.epochs=3", "train.patience=5",
               "space.lr={choices: [1.0e-9, 0.004]}", "space.frozen_depth=0")
    summary = summarize_trials(read_trials(run_sweep(cfg, name="asha")))
    assert len(summary) == 6
    stopped = summary[summary["stop_reason"] == "asha_stopped"]
    assert len(stopped) >= 1
    assert (stopped["epochs"] < 3).all()
    assert (summary[summary["stop_reason"] == "completed"]["epochs"] == 3).all()


def _faulty_trial(config, **kwargs):
    """Real trials, except frozen_depth 0 raises (an OOM stand-in) and 2 produces a NaN loss."""
    if config["frozen_depth"] == 0:
        raise MemoryError("simulated out of memory in trial")
    if config["frozen_depth"] == 2:
        import torch

        from search import train

        def nan_loss(self, batch, stage):
            loss = torch.tensor(float("nan"), requires_grad=True)
            return loss, loss, None

        original, train.Trainer.compute_loss = train.Trainer.compute_loss, nan_loss
        try:  # workers are reused across trials: the next trial must get the real loss back
            return run_trial(config, **kwargs)
        finally:
            train.Trainer.compute_loss = original
    return run_trial(config, **kwargs)


def test_raising_and_diverging_trials_are_recorded_and_the_sweep_completes(
    tiny_model_dir, reviews_csv, tmp_path
):
    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.num_samples=6",
               "space.frozen_depth={choices: [0, 1, 2]}")
    path = run_sweep(cfg, name="faults", trial_fn=_faulty_trial)
    summary = summarize_trials(read_trials(path)).set_index("trial_id")
    assert len(summary) == 6
    by_depth = summary.groupby("frozen_depth")
    assert set(by_depth.groups) == {0, 1, 2}, "the seeded sampler must reach every depth"
    errored = summary[summary["frozen_depth"] == 0]
    assert (errored["status"] == "ERROR").all()
    assert errored["error"].str.contains("simulated out of memory").all()
    diverged = summary[summary["frozen_depth"] == 2]
    assert (diverged["stop_reason"] == "diverged").all()
    assert diverged["error"].str.contains("diverged").all()
    healthy = summary[summary["frozen_depth"] == 1]
    assert (healthy["stop_reason"] == "completed").all() and healthy["score"].notna().all()
    assert read_sweep_meta(path)["status"] == "finished"


def test_bad_spaces_are_rejected_before_launch(tiny_model_dir, reviews_csv, tmp_path):
    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "space.frozen_depth={low: 0, high: 5}")
    with pytest.raises(SweepError, match=r"reaches 5 but model .* has 2 layers; allowed .* 0..2"):
        run_sweep(cfg, name="bad")
    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "space.dropout={low: 0.1, high: 1.5}")
    with pytest.raises(SweepError, match="space.dropout.high must be < 1"):
        run_sweep(cfg, name="bad2")
    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path)
    with pytest.raises(SweepError, match="no sweep to resume"):
        run_sweep(cfg, name="never-ran", resume=True)
    assert not (tmp_path / "bad").exists()


def test_sweep_name_clash_is_refused(tiny_model_dir, reviews_csv, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "something").write_text("x")
    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path)
    with pytest.raises(SweepError, match="already exists"):
        run_sweep(cfg, name="taken")
    assert (tmp_path / "taken" / "something").read_text() == "x"  # nothing overwritten


def test_trials_share_the_frozen_prefix_cache_under_the_experiment(
    tiny_model_dir, reviews_csv, tmp_path
):
    # Every trial freezes 1 layer: the first computes the prefix once, the others map it.
    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.num_samples=3",
               "space.frozen_depth=1", "train.prefix_cache=on")
    path = run_sweep(cfg, name="cached")
    arrays = sorted((path / "prefix_cache").glob("*.npy"))
    assert len(arrays) == 1, "one shared activation file for the one (model, data, k) key"
    summary = summarize_trials(read_trials(path))
    assert len(summary) == 3 and summary["score"].notna().all()
