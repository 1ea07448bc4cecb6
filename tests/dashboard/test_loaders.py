"""The pure loaders on a hand-written sweep, a synthetic 2,000-trial one and a corrupt one."""

from __future__ import annotations

import io
import os

import pandas as pd
import pytest

from dashboard import loaders
from search.results import ResultsError, list_sweeps, results_dir, write_trials
from tests.dashboard import builders


@pytest.fixture(scope="module")
def tiny(tiny_sweep):
    return loaders.load_sweep(tiny_sweep)


def test_trial_table_has_one_row_per_trial_best_first(tiny):
    table = tiny.table
    assert list(table["trial_id"]) == ["t_best", "t_patience", "t_asha", "t_diverged", "t_error"]
    best = table.iloc[0]
    # The score is the best epoch's (epoch 2: 0.84), not the last one's (0.80).
    assert best["score"] == pytest.approx(0.84) and best["best_epoch"] == 2
    assert best["epochs"] == 3 and best["time_s"] == pytest.approx(93.0)


def test_outcomes_and_status_labels_carry_the_reason(tiny):
    by_id = tiny.table.set_index("trial_id")
    assert by_id["outcome"].to_dict() == {
        "t_best": "completed", "t_patience": "early_stopped", "t_asha": "asha_stopped",
        "t_diverged": "diverged", "t_error": "error"}
    assert by_id.loc["t_diverged", "status_label"] == "diverged: train_task_loss is nan at step 40"
    # Only the exception's first line: the table stays one line per trial.
    assert by_id.loc["t_error", "status_label"] == (
        "error: MemoryError: simulated out of memory in trial")
    assert by_id.loc["t_patience", "status_label"] == "early stopped (patience)"
    assert by_id.loc["t_error", "epochs"] == 0 and pd.isna(by_id.loc["t_error", "score"])


def test_counts_headline_and_best_card(tiny):
    assert loaders.trial_counts(tiny.table) == {
        "trials": 5, "finished": 1, "running": 0, "stopped_early": 2, "errored": 2}
    figures = loaders.headline(tiny)
    assert figures["best"] == pytest.approx(0.84) and figures["status"] == "finished"
    assert figures["duration_s"] == pytest.approx(540, abs=5)
    card = loaders.best_card(tiny)
    assert card["trial_id"] == "t_best" and card["params"]["lr"] == pytest.approx(8e-5)
    assert type(card["params"]["frozen_depth"]) is int
    assert card["test"] == {"test_accuracy": 0.81, "test_examples": 100}
    assert card["val"]["val_accuracy"] == pytest.approx(0.84)


def test_test_metrics_are_read_for_the_trial_they_belong_to():
    meta = {"test": {"t1": {"test_accuracy": 0.9}, "t2": {"test_accuracy": 0.7}}}
    assert loaders.test_metrics(meta, "t2") == {"test_accuracy": 0.7}
    assert loaders.test_metrics({"test": None}, "t1") == {}


def test_filter_by_outcome_text_and_score(tiny):
    table = tiny.table
    assert list(loaders.filter_trials(table, outcomes=["error", "diverged"])["trial_id"]) == [
        "t_diverged", "t_error"]
    assert list(loaders.filter_trials(table, text="MEMORYERROR")["trial_id"]) == ["t_error"]
    assert list(loaders.filter_trials(table, min_score=0.7)["trial_id"]) == [
        "t_best", "t_patience"]
    assert loaders.filter_trials(table, outcomes=[]).empty


def test_csv_download_round_trips(tiny):
    frame = pd.read_csv(io.BytesIO(loaders.table_csv(tiny.table)))
    assert list(frame["trial_id"]) == list(tiny.table["trial_id"])
    assert {"status", "score", "alpha", "lr", "frozen_depth", "weight_decay", "dropout",
            "epochs", "time_s", "error"} <= set(frame.columns)
    assert frame.loc[frame["trial_id"] == "t_diverged", "status"].item().startswith("diverged")


def test_curves_are_long_per_epoch_and_skip_epoch_zero(tiny):
    long = loaders.curves(tiny, ["t_best", "t_patience", "t_error"])
    assert set(long["trial_id"]) == {"t_best", "t_patience"}  # t_error has no epoch
    best_val = long[(long["trial_id"] == "t_best") & (long["series"] == "val_accuracy")]
    assert list(best_val["epoch"]) == [1, 2, 3] and set(best_val["split"]) == {"val"}
    assert set(long.loc[long["series"] == "train_task_loss", "split"]) == {"train"}
    assert set(long.loc[long["trial_id"] == "t_patience", "outcome"]) == {"early_stopped"}
    assert loaders.default_curve_trials(tiny.table, n=2) == ["t_best", "t_patience"]


def test_compare_puts_two_sweeps_side_by_side(tiny, large_sweep):
    large = loaders.load_sweep(large_sweep)
    table = loaders.compare_sweeps(tiny, large)
    assert list(table.columns) == ["tiny", "large"]
    assert table.loc["trials", "tiny"] == "5" and table.loc["trials", "large"] == "2000"
    assert table.loc["best trial", "tiny"] == "t_best"
    assert table.loc["best test_accuracy", "tiny"] == "0.81"


def test_sweep_rows_report_a_corrupt_sweep_instead_of_raising(storage):
    rows = {row["name"]: row for row in map(loaders.sweep_row, list_sweeps(storage))}
    assert set(rows) == {"tiny", "live", "just-started", "broken"}
    assert rows["broken"]["status"] == "unreadable"
    assert "corrupt or partial" in rows["broken"]["problem"]
    assert rows["tiny"]["problem"] == "" and rows["tiny"]["trials"] == 5
    assert rows["live"]["running"] == 1 and rows["live"]["finished"] == 1
    assert rows["just-started"]["trials"] == 0 and rows["just-started"]["best"] is None
    table = loaders.sweep_table(list(rows.values()))
    assert len(table) == 4 and "problem" in table


def test_load_sweep_raises_results_error_on_a_truncated_file(storage):
    with pytest.raises(ResultsError, match="corrupt or partial"):
        loaders.load_sweep(storage / "broken")


def test_running_sweep_without_results_is_empty_not_an_error(storage):
    sweep = loaders.load_sweep(storage / "just-started")
    assert sweep.table.empty and loaders.is_running(sweep.meta)
    assert loaders.best_card(sweep) is None
    figures = loaders.headline(sweep, now=sweep.meta["started_at"] + 125)
    assert figures["duration_s"] == pytest.approx(125)


def test_file_stamp_changes_when_results_are_rewritten(tmp_path):
    path = builders.write_tiny(tmp_path)
    before = loaders.file_stamp(path)
    os.utime(results_dir(path) / "trials.parquet", ns=(1, 1))  # pretend it is old
    write_trials(path, builders.tiny_rows().head(2))
    assert loaders.file_stamp(path)[0] != before[0] and loaders.file_stamp(tmp_path) == (0, 0)


def test_large_sweep_loads_every_trial(large_sweep):
    sweep = loaders.load_sweep(large_sweep)
    assert len(sweep.table) == 2000 and sweep.table["trial_id"].is_unique
    counts = loaders.trial_counts(sweep.table)
    assert sum(counts[k] for k in ("finished", "running", "stopped_early", "errored")) == 2000
    assert min(counts["finished"], counts["stopped_early"], counts["errored"]) > 0
    assert sweep.trials["epoch"].max() == 10
    long = loaders.curves(sweep, loaders.default_curve_trials(sweep.table, n=20))
    assert long["trial_id"].nunique() == 20


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "—"), (42, "42s"), (125, "2m 05s"), (3725, "1h 02m")])
def test_format_duration(seconds, text):
    assert loaders.format_duration(seconds) == text
