"""The search space read back from sweep.json, and importance from Optuna's evaluators."""

from __future__ import annotations

import pandas as pd
import pytest

from dashboard import importance, loaders, space
from search.config import load_config
from tests.dashboard.builders import SPACE_OVERRIDES


def _meta(*overrides: str) -> dict:
    # The space the builders' trials were drawn from, plus the test's changes.
    return {"config": load_config(None, [*SPACE_OVERRIDES, *overrides]).model_dump(mode="json")}


def test_space_knows_which_params_are_log_scaled():
    dims = space.search_space(_meta())
    assert list(dims) == ["alpha", "lr", "frozen_depth", "weight_decay", "dropout"]
    assert space.log_scaled(dims) == {"alpha", "lr"}


def test_fixed_dimensions_are_not_searched_and_choices_are_kept():
    dims = space.search_space(_meta("space.alpha=30", "space.batch_size={choices: [16, 32]}"))
    assert "alpha" not in dims and dims["batch_size"].choices == [16.0, 32.0]
    assert "alpha" not in space.log_scaled(dims)


def test_unreadable_space_keeps_what_parses_and_a_missing_one_is_empty():
    meta = {"config": {"space": {"lr": {"low": 1e-5, "high": 1e-3, "log": True},
                                 "alpha": {"low": 5, "high": 1}, "dropout": 0.1,
                                 "mystery": {"low": 0, "high": 1}}}}
    dims = space.search_space(meta)
    assert set(dims) == {"lr", "mystery"} and space.log_scaled(dims) == {"lr"}
    assert space.search_space({}) == {} and space.search_space({"config": "junk"}) == {}


def test_plot_params_are_the_core_five_plus_searched_extras(tiny_sweep):
    sweep = loaders.load_sweep(tiny_sweep)
    dims = space.search_space(_meta("space.warmup_ratio={low: 0.0, high: 0.2}"))
    assert space.plot_params(sweep.table, dims) == [
        "alpha", "lr", "frozen_depth", "weight_decay", "dropout", "warmup_ratio"]


def test_importance_finds_the_params_that_drive_the_synthetic_score(large_sweep):
    # The synthetic accuracy depends on frozen depth and lr only (see dashboard.synthetic).
    sweep = loaders.load_sweep(large_sweep)
    result = importance.param_importance(sweep.table, space.search_space(sweep.meta))
    # Past FANOVA_MAX_TRIALS fANOVA would take minutes: PED-ANOVA ranks them.
    assert result.evaluator == "PED-ANOVA" and not result.note
    assert set(list(result.values)[:2]) == {"frozen_depth", "lr"}
    assert sum(result.values.values()) == pytest.approx(1.0)
    finished = sweep.table["outcome"].isin(["completed", "early_stopped"]).sum()
    assert result.n_trials == finished


def test_fanova_ranks_a_small_sweep_where_scikit_learn_is_installed(large_sweep):
    pytest.importorskip("sklearn")
    sweep = loaders.load_sweep(large_sweep)
    few = sweep.table.head(importance.FANOVA_MAX_TRIALS)
    result = importance.param_importance(few, space.search_space(sweep.meta))
    assert result.evaluator == "fANOVA" and set(list(result.values)[:2]) == {"frozen_depth", "lr"}


def test_importance_input_keeps_finished_in_space_trials_only(tiny_sweep):
    table = loaders.load_sweep(tiny_sweep).table
    dims = space.search_space(_meta())
    rows = importance.importance_input(table, dims)
    assert list(rows["trial_id"]) == ["t_best", "t_patience"]  # no ASHA, diverged or error
    narrow = dict(dims, lr=dims["lr"].model_copy(update={"low": 5e-5}))
    assert list(importance.importance_input(table, narrow)["trial_id"]) == ["t_best"]


def test_importance_with_too_few_trials_says_why(tiny_sweep):
    table = loaders.load_sweep(tiny_sweep).table
    result = importance.param_importance(table, space.search_space(_meta()))
    assert result.values == {} and "at least 4 finished trials; 2 so far" in result.note
    empty = importance.param_importance(pd.DataFrame(columns=table.columns), {})
    assert "no searched dimension" in empty.note


def test_constant_unsearched_params_are_named_not_plotted(tiny_sweep):
    table = loaders.load_sweep(tiny_sweep).table.assign(alpha=30.0)
    dims = space.search_space(_meta("space.alpha=30", "space.weight_decay=0.01"))
    assert space.plot_params(table, dims) == ["lr", "frozen_depth", "dropout"]
    assert space.fixed_params(table, dims) == {"alpha": 30.0, "weight_decay": 0.01}
