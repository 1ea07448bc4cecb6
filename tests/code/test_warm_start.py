"""Warm start (``tune.warm_start``): an earlier sweep's trials as history when the data and
fidelity match, its top configurations first when they do not; and the re-tune decision."""

from __future__ import annotations

import sys

import cloudpickle
import pandas as pd
import pytest

from search.config import is_point
from search.results import read_sweep_meta, read_trials, summarize_trials, write_sweep_meta
from search.results import write_trials as write_table
from search.retune import decide
from search.warm_start import fidelity_changes, plan_warm_start
from tests.conftest import tiny_config

cloudpickle.register_pickle_by_value(sys.modules[__name__])
SPACE = ("space.lr={low: 0.0005, high: 0.005, log: true}", "space.dropout={low: 0.0, high: 0.1}")


def _cfg(tiny_model_dir, reviews_csv, tmp_path, *overrides):
    return tiny_config(tiny_model_dir, reviews_csv, f"tune.storage_path={tmp_path}",
                       "tune.max_concurrent_trials=2", "train.epochs=1", *SPACE, *overrides)


def _old_sweep(tmp_path, cfg, fingerprint: str) -> None:
    """A finished sweep "old" with four trials: two inside the space, one with its lr outside
    the range, one trained at another weight decay (a fixed value here)."""
    rows = [
        {"trial_id": "in-a", "lr": 0.001, "dropout": 0.05, "weight_decay": 0.01, "score": 0.9},
        {"trial_id": "in-b", "lr": 0.002, "dropout": 0.0, "weight_decay": 0.01, "score": 0.7},
        {"trial_id": "far", "lr": 0.05, "dropout": 0.05, "weight_decay": 0.01, "score": 0.8},
        {"trial_id": "wd", "lr": 0.003, "dropout": 0.05, "weight_decay": 0.3, "score": 0.95},
    ]
    for row in rows:
        row.update(phase="search", default_point=False, status="TERMINATED", epoch=1.0, examples=96,
                   val_accuracy=row["score"], alpha=1.0, frozen_depth=0, joint_epochs=1,
                   warmup_ratio=0.1, batch_size=8)
    write_table(tmp_path / "old", pd.DataFrame(rows))
    write_sweep_meta(tmp_path / "old", {"name": "old", "status": "finished",
                                        "config": cfg.model_dump(mode="json"),
                                        "data_fingerprint": fingerprint})


def test_same_data_takes_the_trials_that_fit_the_space_as_history(tiny_model_dir, reviews_csv,
                                                                   tmp_path):
    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.warm_start=old")
    _old_sweep(tmp_path, cfg, fingerprint="f1")
    plan = plan_warm_start(cfg, "f1")
    assert plan.mode == "history" and plan.skipped == 2  # lr out of range; other weight decay
    assert plan.history == [({"lr": 0.001, "dropout": 0.05}, 0.9),
                            ({"lr": 0.002, "dropout": 0.0}, 0.7)]
    assert set(plan.rows["trial_id"]) == {"in-a", "in-b"}
    assert set(plan.rows["warm_from"]) == {"old"}


def test_changed_data_evaluates_the_old_top_configurations_first(tiny_model_dir, reviews_csv,
                                                                 tmp_path):
    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.warm_start=old",
               "tune.warm_start_top=2")
    _old_sweep(tmp_path, cfg, fingerprint="f1")
    plan = plan_warm_start(cfg, "f2")
    assert plan.mode == "prior" and "data (fingerprint)" in plan.reason
    # Best first by old score; weight decay is fixed here, so "wd"'s point fits; "far" does not.
    assert plan.prior == [{"lr": 0.003, "dropout": 0.05}, {"lr": 0.001, "dropout": 0.05}]
    assert plan.history == [] and plan.rows.empty  # old scores never count as new ones


def test_a_change_of_fidelity_is_named(tiny_model_dir, reviews_csv, tmp_path):
    old = _cfg(tiny_model_dir, reviews_csv, tmp_path)
    assert fidelity_changes(old, "f", old, "f") == []
    new = _cfg(tiny_model_dir, reviews_csv, tmp_path, "train.epochs=3", "train.num_threads=1")
    assert fidelity_changes(old, "f", new, "f") == ["train.epochs"]  # threads: speed only


@pytest.mark.parametrize(("served", "candidate", "margin", "promote"),
                         [(0.80, 0.82, 0.01, True), (0.80, 0.805, 0.01, False),
                          (0.80, 0.78, 0.0, False), (0.80, 0.80, 0.0, False)])
def test_a_new_model_is_promoted_only_past_the_margin(served, candidate, margin, promote):
    decision = decide(served, candidate, "accuracy", margin)
    assert decision["promote"] is promote
    assert decision["lead"] == pytest.approx(candidate - served)
    assert f"{candidate:.4f} vs {served:.4f}" in decision["reason"]


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
def test_a_warm_started_sweep_does_not_repeat_the_old_trials_and_a_prior_runs_first(
    tiny_model_dir, reviews_csv, tmp_path
):
    from search.sweep import run_sweep

    first = run_sweep(_cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.num_samples=3"),
                      name="first")
    old = summarize_trials(read_trials(first))
    old_points = [{"lr": r["lr"], "dropout": r["dropout"]} for _, r in old.iterrows()]

    # Same data: the old trials come in as history; only new points run (not even the default).
    again = run_sweep(_cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.num_samples=2",
                           "tune.warm_start=first"), name="again")
    table = summarize_trials(read_trials(again))
    taken, ran = table[table["warm_from"] == "first"], table[table["warm_from"].isna()]
    assert set(taken["trial_id"]) == set(old["trial_id"]) and len(ran) == 2
    assert taken["default_point"].sum() == 1 and not ran["default_point"].any()
    for _, trial in ran.iterrows():
        assert not any(is_point({"lr": trial["lr"], "dropout": trial["dropout"]}, p)
                       for p in old_points)
    assert read_sweep_meta(again)["warm_start"]["mode"] == "history"
    # The old sweep's checkpoints are its own: still there.
    assert all(isinstance(c, str) for c in summarize_trials(read_trials(first))["checkpoint"])

    # Changed data: after the default, the old top two configurations run first, afresh.
    changed = run_sweep(_cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.num_samples=3",
                             "tune.warm_start=first", "tune.warm_start_top=2",
                             "data.max_train_examples=60"), name="changed")
    table = summarize_trials(read_trials(changed))
    assert table["warm_from"].isna().all() and len(table) == 3
    top = [p for p, d in zip(old_points, old["default_point"], strict=True) if not d][:2]
    ran = [{"lr": r["lr"], "dropout": r["dropout"]} for _, r in table.iterrows()]
    assert all(any(is_point(p, r) for r in ran) for p in top)
    meta = read_sweep_meta(changed)["warm_start"]
    assert meta["mode"] == "prior" and meta["reason"] == "changed: data (fingerprint)"
