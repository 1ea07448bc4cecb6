"""The loaders and the app on the files a real (tiny) sweep leaves behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard import loaders, space
from dashboard.local_model import find_export
from search.results import read_sweep_meta

pytestmark = pytest.mark.slow

PAGES = ("sweeps", "overview", "hyperparameters", "curves", "try")


@pytest.fixture(scope="module")
def sweep(real_sweep):
    return loaders.load_sweep(real_sweep)


def test_loaders_read_the_real_sweep(sweep):
    table = sweep.table
    assert len(table) == 3 and table["trial_id"].is_unique
    assert set(table["outcome"]) <= {"completed", "early_stopped", "asha_stopped"}
    assert table["score"].is_monotonic_decreasing and table["epochs"].between(1, 2).all()
    counts = loaders.trial_counts(table)
    assert counts["finished"] + counts["stopped_early"] == 3 and counts["errored"] == 0
    card = loaders.best_card(sweep)
    assert card["trial_id"] == read_sweep_meta(sweep.path)["best"]["trial_id"]
    assert 0 <= card["test"]["test_accuracy"] <= 1
    long = loaders.curves(sweep, list(table["trial_id"]))
    per_trial = long[long["series"] == "val_accuracy"].groupby("trial_id")["epoch"].apply(list)
    assert all(epochs == list(range(1, len(epochs) + 1)) for epochs in per_trial)
    assert space.log_scaled(space.search_space(sweep.meta)) == {"lr"}
    assert find_export(sweep.meta, sweep.path, table) == Path(sweep.path) / "export"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_the_real_sweep(open_app, real_sweep, page):
    at = open_app(real_sweep.parent, page=page, sweep="tiny-real")
    assert not at.error, [e.value for e in at.error]
    if page == "overview":
        assert len(at.dataframe[0].value) == 3


def test_try_the_model_falls_back_to_the_real_export(open_app, real_sweep):
    at = open_app(real_sweep.parent, page="try", sweep="tiny-real")
    assert "No model endpoint is up" in at.warning[0].value
    at.button(key="load_local").click().run()
    at.text_input(key="query_text").input("a charming, brilliant film").run()
    at.button(key="predict_one").click().run()
    assert not at.exception and not at.error
    assert at.metric[0].value in read_sweep_meta(real_sweep)["label_names"]
