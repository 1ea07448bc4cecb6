"""A real sweep on a local Ray: Optuna TPE + ASHA over the tiny model, trials train for real."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ray import cloudpickle

from search import artifacts
from search.results import read_sweep_meta, read_trials, summarize_trials
from search.space import SpaceError
from search.sweep import SweepError, run_sweep, run_trial
from tests.conftest import tiny_config, tiny_data

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("local_ray")]
# Trial wrappers below are shipped to Ray workers by value (the tests package is not on their path).
cloudpickle.register_pickle_by_value(sys.modules[__name__])



def tensorboard_scalars(path: Path) -> dict[str, list[float]]:
    """Scalar series of a TensorBoard event file (TFRecords of Event protos, tensorboardX's)."""
    import struct

    from tensorboardX.proto import event_pb2

    series: dict[str, list[float]] = {}
    with open(path, "rb") as handle:
        while header := handle.read(12):  # record length (8 bytes) and its CRC (4)
            (length,) = struct.unpack("<Q", header[:8])
            event = event_pb2.Event.FromString(handle.read(length))
            handle.read(4)  # the data's CRC
            for value in event.summary.value:
                series.setdefault(value.tag, []).append(value.simple_value)
    return series


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

    from search import api

    # Through the Python API, which the CLI calls: run, read, list, export.
    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.keep_checkpoints=2")
    result = api.sweep(cfg, name="real", export=False)
    path = result.path
    assert result.best is None and result.name == "real"
    frame = read_trials(path)
    summary = api.results(path)
    assert summary["trial_id"].tolist() == summarize_trials(frame)["trial_id"].tolist()
    assert len(summary) == 4 and summary["trial_id"].is_unique
    assert (summary["status"] == "TERMINATED").all()
    per_trial_epochs = frame[frame["epoch"] > 0].groupby("trial_id")["epoch"].apply(list)
    assert all(epochs == list(range(1, len(epochs) + 1)) for epochs in per_trial_epochs)
    assert frame["val_accuracy"].notna().all() and frame["train_task_loss"].notna().all()
    assert frame["val_per_class"].map(lambda r: json.loads(r)["labels"] == ["neg", "pos"]).all()
    assert frame["lr"].between(0.0005, 0.005).all()
    assert frame["frozen_depth"].isin([0, 1, 2]).all()
    assert frame["dropout"].between(0.0, 0.1).all()
    # The best trial is judged by its best epoch, not its last.
    best = summary.iloc[0]
    assert best["score"] == frame["val_accuracy"].max()
    # The untuned default point is one of the trials, exactly once.
    default = summary[summary["default_point"]]
    assert len(default) == 1
    assert default.iloc[0]["lr"] == pytest.approx(cfg.default_params().lr)
    # Only the top-2 trials keep checkpoints, plus the default (the tuning gain's baseline).
    kept = summary["checkpoint"].map(lambda c: isinstance(c, str) and Path(c).is_dir())
    assert set(summary["trial_id"][kept]) == {*summary["trial_id"].iloc[:2],
                                              default.iloc[0]["trial_id"]}
    meta = read_sweep_meta(path)
    assert meta["status"] == "finished" and meta["best"]["trial_id"] == best["trial_id"]
    assert (Path(path) / "sftune" / "optuna.db").is_file()

    # TensorBoard (Tune's own logger): each trial's event file holds its validation curve.
    for trial_id, rows in frame[frame["epoch"] > 0].groupby("trial_id"):
        [events] = Path(path).glob(f"*_{trial_id}_*/events.out.tfevents.*")
        curve = tensorboard_scalars(events)["ray/tune/val_accuracy"]
        assert curve == pytest.approx(rows.sort_values("epoch")["val_accuracy"].tolist())
    [listed] = api.list_sweeps(cfg.tune.storage_path)
    assert listed["name"] == "real" and listed["status"] == "finished" and listed["trials"] == 4
    exported = api.best(path, tmp_path / "export")
    assert exported["trial_id"] == best["trial_id"]
    assert 0 <= exported["test_accuracy"] <= 1
    meta = artifacts.read_meta(tmp_path / "export")
    assert meta["trial_id"] == best["trial_id"] and "test_accuracy" in meta["test"]
    per_class = meta["test"]["test_per_class"]  # the one test measurement, class by class
    assert sum(per_class["support"]) == exported["test_examples"]
    assert per_class["labels"] == ["neg", "pos"] and len(per_class["confusion"]) == 2
    scores = pipeline("text-classification", model=str(tmp_path / "export"))(["great fun"])
    assert scores[0]["label"] in {"neg", "pos"}
    assert api.best(path, tmp_path / "again")["test_accuracy"] == exported["test_accuracy"]


def test_asha_stops_a_poor_trial_early(tiny_model_dir, reviews_csv, tmp_path):
    # One learning rate learns, the other cannot move the weights: the latter's rung-1 score is
    # chance, below the good trials', and ASHA (grace 1, factor 2) stops it there.
    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.num_samples=6",
               "tune.max_concurrent_trials=1", "train.epochs=3", "train.patience=5",
               "space.lr={choices: [1.0e-9, 0.004], default: 0.004}", "space.frozen_depth=0")
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
    # Classified, with where it failed: the exception line, then the traceback's last lines.
    assert (errored["failure"] == "out_of_memory").all()
    assert errored["error"].map(lambda e: e.splitlines()[0].startswith("MemoryError") and
                                "_faulty_trial" in e).all()
    diverged = summary[summary["frozen_depth"] == 2]
    assert (diverged["stop_reason"] == "diverged").all()
    assert diverged["error"].str.contains("diverged").all()
    assert (diverged["failure"] == "diverged").all()
    healthy = summary[summary["frozen_depth"] == 1]
    assert (healthy["stop_reason"] == "completed").all() and healthy["score"].notna().all()
    assert healthy["failure"].isna().all()
    assert read_sweep_meta(path)["status"] == "finished"


def test_bad_spaces_are_rejected_before_launch(tiny_model_dir, reviews_csv, tmp_path):
    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "space.frozen_depth={low: 0, high: 5}")
    with pytest.raises(SpaceError, match=r"reaches 5 but model .* has 2 layers; allowed .* 0..2"):
        run_sweep(cfg, name="bad")
    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "space.dropout={low: 0.1, high: 1.5}")
    with pytest.raises(SpaceError, match="space.dropout.high must be < 1"):
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
    arrays = sorted((Path(path) / "prefix_cache").glob("*.npy"))
    assert len(arrays) == 1, "one shared activation file for the one (model, data, k) key"
    summary = summarize_trials(read_trials(path))
    assert len(summary) == 3 and summary["score"].notna().all()


def test_search_on_a_subset_then_the_best_config_trains_on_all_data(
    tiny_model_dir, reviews_csv, tmp_path, monkeypatch
):
    from search.best import export_best

    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.num_samples=4",
               "tune.search_examples=64", "tune.search_eval_examples=32", "train.epochs=1",
               "train.eval_every=32", "train.patience=10", "tune.keep_checkpoints=1",
               "space.joint_epochs={choices: [0, 1], default: 1}")
    path = run_sweep(cfg, name="phases")
    frame = read_trials(path)
    summary = summarize_trials(frame)
    search, final = summary[summary["phase"] == "search"], summary[summary["phase"] == "final"]
    assert len(search) == 4 and len(final) == 1, summary[["trial_id", "phase", "status"]]
    # The untuned default point is the first trial.
    first = frame[frame["default_point"]].iloc[0]
    assert frame[frame["default_point"]]["trial_id"].nunique() == 1
    # Tune numbers trials in the order it creates them: the default's directory is trial 1.
    assert list(Path(path).glob(f"run_trial_{first['trial_id']}_1_*"))
    assert first["lr"] == pytest.approx(cfg.default_params().lr)
    # Search trials saw one pass over 64 examples, evaluated mid-way; the final trial all of them.
    assert frame[frame["phase"] == "search"]["examples"].max() == 64
    assert sorted(frame[frame["trial_id"] == first["trial_id"]]["examples"]) == [32, 64]
    rows = len(tiny_data(cfg).train)
    assert final.iloc[0]["epochs"] == 1.0 and frame[frame["phase"] == "final"]["examples"].max() \
        >= rows
    # ... with the best search trial's configuration.
    for name in ("lr", "frozen_depth", "dropout", "weight_decay", "joint_epochs"):
        assert final.iloc[0][name] == pytest.approx(search.iloc[0][name])
    # The LM term runs in joint trials only; a searched joint_epochs takes both values.
    joint = frame[frame["phase"] == "search"].groupby("joint_epochs")["train_lm_loss"]
    assert set(joint.groups) == {0, 1}
    assert joint.apply(lambda s: s.notna().all()).to_dict() == {0: False, 1: True}

    from search import data as data_module

    prepared, prepare = [], data_module.prepare_data
    monkeypatch.setattr(data_module, "prepare_data",
                        lambda *a, **k: prepared.append(1) or prepare(*a, **k))
    exported = export_best(path, tmp_path / "export")
    assert exported["phase"] == "final" and exported["trial_id"] == final.iloc[0]["trial_id"]
    # Four evaluations (the two trials of the tuning gain, the lexical layer's validation pass,
    # the test), one tokenization of the data.
    assert len(prepared) == 1
    assert "validation" in artifacts.read_meta(tmp_path / "export")["lexical"]
    gain = read_sweep_meta(path)["tuning_gain"]
    assert gain["default_trial"] == first["trial_id"]
    assert gain["tuned_trial"] == search.iloc[0]["trial_id"]
    assert gain["gain_accuracy"] == pytest.approx(gain["tuned_accuracy"]
                                                  - gain["default_accuracy"])
    assert artifacts.read_meta(tmp_path / "export")["tuning_gain"] == gain
    # One head probe, fit by the driver on the full training split, started every trial: the
    # search trials (on 64 examples) and the final one record the same probe.
    probe = read_sweep_meta(path)["head"]
    assert probe["head_init"] == "probe" and probe["probe_examples"] == rows
    default_checkpoint = summary[summary["default_point"]].iloc[0]["checkpoint"]
    for checkpoint in (default_checkpoint, tmp_path / "export"):
        assert artifacts.read_meta(checkpoint)["probe_examples"] == rows


def test_asha_cuts_a_poor_trial_before_its_first_epoch_ends(tiny_model_dir, reviews_csv,
                                                            tmp_path):
    # Four evaluations an epoch; the rung is the first one. lr 1e-9 cannot learn.
    rows = len(tiny_data(_cfg(tiny_model_dir, reviews_csv, tmp_path)).train)
    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.num_samples=6",
               "tune.max_concurrent_trials=1", "train.epochs=1", f"train.eval_every={rows // 4}",
               "train.patience=10", "space.lr={choices: [1.0e-9, 0.004], default: 0.004}",
               "space.frozen_depth=0")
    summary = summarize_trials(read_trials(run_sweep(cfg, name="asha-mid")))
    stopped = summary[summary["stop_reason"] == "asha_stopped"]
    assert len(stopped) >= 1
    assert (stopped["epochs"] < 1).all()
    assert (summary[summary["stop_reason"] == "completed"]["epochs"] == 1).all()


def test_time_budget_stops_launching_and_the_sweep_still_exports(
    tiny_model_dir, reviews_csv, tmp_path
):
    from search.best import export_best

    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.num_samples=200",
               "tune.max_concurrent_trials=1", "train.epochs=1", "tune.time_budget_s=20")
    path = run_sweep(cfg, name="budget")
    summary = summarize_trials(read_trials(path))
    assert 1 <= len(summary) < 200
    assert export_best(path, tmp_path / "export")["test_accuracy"] >= 0


def test_trials_running_when_the_time_is_up_end_themselves_scored_and_checkpointed(
    tiny_model_dir, reviews_csv, tmp_path
):
    # No evaluation would come before the trials' 500 epochs end: only the sweep's stop time
    # makes them evaluate, and they end by themselves with it, each with its checkpoint (a
    # Tune stop landing between a report and its checkpoint's registration drops the latter).
    # Four trials for two lanes: Tune queues the other two, and they get a lane only after the
    # budget; they end at once, with no evaluation and no row.
    from pathlib import Path

    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.num_samples=4",
               "tune.max_concurrent_trials=4", "tune.cpus_per_trial=1",
               "tune.time_budget_s=12", "train.epochs=500", "train.eval_every=1000000",
               "train.patience=100", "tune.finalists=0", "tune.keep_checkpoints=4")
    summary = summarize_trials(read_trials(run_sweep(cfg, name="ends")))
    assert len(summary) == 2
    assert (summary["stop_reason"] == "budget_stopped").all()
    assert summary["score"].notna().all() and (summary["epochs"] < 500).all()
    assert all((Path(c) / artifacts.WEIGHTS_FILE).exists() for c in summary["checkpoint"])


def test_final_trial_gets_what_the_budget_left_all_lanes_and_per_epoch_evaluation(
    tiny_model_dir, reviews_csv, tmp_path
):
    import time

    from search.budget import EXPORT_RESERVE_S, FINAL_MIN_S, final_config

    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.time_budget_s=600",
               "train.eval_every=16")
    final = final_config(cfg, started=time.time() - 100, cpus=2)
    assert final.train.time_limit_s == pytest.approx(600 - 100 - EXPORT_RESERVE_S, abs=2)
    assert final.train.num_threads == 2 and final.train.eval_every is None
    late = final_config(cfg, started=time.time() - 590, cpus=2)
    assert late.train.time_limit_s == FINAL_MIN_S
    assert final_config(_cfg(tiny_model_dir, reviews_csv, tmp_path), time.time(),
                        cpus=2).train.time_limit_s is None


def test_asha_never_cuts_the_untuned_default():
    # Judged at the same rung with the same low score, ASHA stops the other trial, never the
    # default (it is the baseline every trial is compared with at equal fidelity).
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from search.sweep import DefaultKeepingASHA

    scheduler = DefaultKeepingASHA(metric="score", mode="max", time_attr="examples", max_t=100,
                                   grace_period=10, reduction_factor=2, default={"lr": 1e-9})
    trials = [SimpleNamespace(trial_id=f"t{i}", config={"lr": lr})
              for i, lr in enumerate([0.1, 0.1, 0.1, 1e-9, 2e-9])]
    decisions = {}
    for trial in trials:
        scheduler.on_trial_add(None, trial)
        score = 0.9 if trial.config["lr"] > 1e-3 else 0.1
        decisions[trial.trial_id] = scheduler.on_trial_result(None, trial,
                                                              {"examples": 10, "score": score})
    assert decisions["t4"] == TrialScheduler.STOP
    assert decisions["t3"] == TrialScheduler.CONTINUE


def _unlucky_top_finalist(config, **kwargs):
    """Real trials, except the re-runs of the best search trial score 0.2: its search score was
    a lucky draw its new seeds do not reproduce."""
    from search import train
    from search.results import search_rows

    if config.get("finalist_of") is None:  # a search trial or the final one
        return run_trial(config, **kwargs)
    summary = summarize_trials(search_rows(read_trials(kwargs["experiment_dir"])))
    if config["finalist_of"] != summary.iloc[0]["trial_id"]:
        return run_trial(config, **kwargs)

    def unlucky(self, split):
        return {**original(self, split), "accuracy": 0.2}

    original, train.Trainer.evaluate = train.Trainer.evaluate, unlucky
    try:
        return run_trial(config, **kwargs)
    finally:
        train.Trainer.evaluate = original


def test_finalists_are_rerun_with_more_seeds_and_the_choice_follows_their_mean(
    tiny_model_dir, reviews_csv, tmp_path, capsys
):
    from search.best import export_best
    from search.cli import main
    from search.results import finalist_summary

    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.num_samples=4",
               "tune.search_examples=64", "train.epochs=1", "tune.finalists=2",
               "tune.finalist_seeds=2", "tune.min_improvement=0",
               # Tiny models on 64 examples swing a lot between seeds: only the rigged
               # finalist (its re-runs score 0.2) falls this far.
               "tune.reproducibility_margin=0.3")
    path = run_sweep(cfg, name="finalists", trial_fn=_unlucky_top_finalist)
    frame = read_trials(path)
    summary = summarize_trials(frame)
    search = summary[summary["phase"] == "search"]
    reruns = summary[summary["phase"] == "finalist"]
    # The top 2 search configurations, each re-run with seeds 1 and 2 (train.seed is 0).
    assert sorted(reruns["finalist_of"].unique()) == sorted(search["trial_id"].iloc[:2])
    for trial_id, runs in reruns.groupby("finalist_of"):
        assert sorted(runs["seed"]) == [1, 2]
        original = search.set_index("trial_id").loc[trial_id]
        for name in ("lr", "frozen_depth", "dropout"):
            assert runs[name].tolist() == pytest.approx([original[name]] * 2), name
    finalists = finalist_summary(frame, margin=0.3).set_index("trial_id")
    top, second = search["trial_id"].iloc[:2]
    assert not finalists.loc[top, "reproducible"] and finalists.loc[second, "reproducible"]
    assert finalists.loc[top, "scores"] == [0.2, 0.2]
    assert finalists.loc[top, "mean"] == pytest.approx((search.iloc[0]["score"] + 0.4) / 3)
    # The final trial trains the finalist with the best mean, not the best search score.
    source = read_sweep_meta(path)["final_source"]
    assert source["trial_id"] == second and source["reason"] == "best finalists' mean"
    final = summary[summary["phase"] == "final"].iloc[0]
    assert final["lr"] == pytest.approx(search.iloc[1]["lr"])
    # The export records how it was chosen: every finalist's seeds and spread.
    export_best(path, tmp_path / "export")
    selection = artifacts.read_meta(tmp_path / "export")["selection"]
    assert {f["trial_id"]: f["seeds"] for f in selection["finalists"]} == {top: [1, 2],
                                                                           second: [1, 2]}
    assert "finalists re-run with more seeds" in (tmp_path / "export" / "README.md").read_text()
    assert main(["results", "finalists", "--storage", str(tmp_path)]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if "(search " in line]
    assert [line.split()[0].rstrip(":") for line in printed] == [second, top]  # by mean
    assert "NOT REPRODUCIBLE" in printed[1] and "NOT REPRODUCIBLE" not in printed[0]


def test_a_full_fidelity_sweeps_finalists_choose_which_search_run_is_its_model(
    tiny_model_dir, reviews_csv, tmp_path
):
    from search.best import export_best

    # No tune.search_examples: no final trial; the model is the chosen configuration's run.
    cfg = _cfg(tiny_model_dir, reviews_csv, tmp_path, "tune.num_samples=3", "train.epochs=1",
               "tune.finalists=2", "tune.finalist_seeds=1", "tune.min_improvement=0")
    path = run_sweep(cfg, name="full-finalists", trial_fn=_unlucky_top_finalist)
    summary = summarize_trials(read_trials(path))
    search = summary[summary["phase"] == "search"]
    top, second = search["trial_id"].iloc[:2]
    assert not (summary["phase"] == "final").any()
    assert sorted(summary.loc[summary["phase"] == "finalist", "finalist_of"]) == sorted([top,
                                                                                       second])
    assert read_sweep_meta(path)["final_source"]["trial_id"] == second
    best = export_best(path, tmp_path / "export")
    assert best["trial_id"] == second and best["phase"] == "search"
    selection = artifacts.read_meta(tmp_path / "export")["selection"]
    assert selection["trial_id"] == second and len(selection["finalists"]) == 2
