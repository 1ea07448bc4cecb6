"""The figures: right axes, log scales where the space is log-scaled, stopped trials marked."""

from __future__ import annotations

import numpy as np
import pytest

from dashboard import charts, loaders, space
from dashboard.client import Prediction
from tests.dashboard.test_space_importance import _meta


@pytest.fixture(scope="module")
def tiny(tiny_sweep):
    return loaders.load_sweep(tiny_sweep)


def test_parallel_coordinates_draws_log_params_on_a_log_axis(tiny):
    dims = space.search_space(_meta())
    params = space.plot_params(tiny.table, dims)
    figure = charts.parallel_coordinates(tiny.table, params, space.log_scaled(dims),
                                         "val_accuracy")
    axes = figure.data[0].dimensions
    assert [a.label for a in axes] == ["alpha (log)", "lr (log)", "frozen_depth",
                                       "weight_decay", "dropout", "val_accuracy"]
    lr = axes[1]
    assert len(lr.values) == 4  # scored trials only: t_error never finished an epoch
    assert np.allclose(sorted(lr.values), np.log10([3e-5, 8e-5, 2e-4, 3e-4]))
    assert "0.0001" in lr.ticktext and axes[-1].values[0] == pytest.approx(0.84)


def test_scatter_uses_a_log_x_axis_only_when_asked(tiny):
    log_fig = charts.param_scatter(tiny.table, "lr", log=True, metric="val_accuracy")
    lin_fig = charts.param_scatter(tiny.table, "dropout", log=False, metric="val_accuracy")
    assert log_fig.layout.xaxis.type == "log" and lin_fig.layout.xaxis.type == "linear"
    assert {t.name for t in log_fig.data} == {"completed", "early stopped (patience)",
                                              "stopped by ASHA", "diverged"}
    assert sum(len(t.x) for t in log_fig.data) == 4


def test_curves_mark_trials_that_stopped_early(tiny):
    long = loaders.curves(tiny, ["t_best", "t_patience", "t_asha"])
    figure = charts.curves_figure(long, "val_accuracy")
    legend = {t.name: t for t in figure.data if t.showlegend}
    assert set(legend) == {"t_best", "t_patience (early stopped)", "t_asha (ASHA-stopped)"}
    assert legend["t_patience (early stopped)"].marker.symbol[-1] == "x"
    assert legend["t_best"].marker.symbol[-1] == "circle"
    dashed = [t for t in figure.data if t.line.dash == "dash"]
    assert len(dashed) == 3  # one validation-loss line per trial, drawn with train's colour


def test_probability_bar_highlights_the_predicted_label():
    answer = Prediction("x", "pos", 0.7, {"neg": 0.3, "pos": 0.7})
    bar = charts.probability_bar(answer).data[0]
    assert list(bar.x) == ["neg", "pos"] and list(bar.y) == [0.3, 0.7]
    assert bar.marker.color[1] != bar.marker.color[0]


def test_importance_bar_puts_the_most_important_on_top():
    bar = charts.importance_bar({"lr": 0.7, "alpha": 0.2, "dropout": 0.1}, "PED-ANOVA").data[0]
    assert list(bar.y)[-1] == "lr"


def test_a_log_axis_within_one_decade_still_gets_ticks_inside_the_data(tiny):
    table = tiny.table.assign(lr=[1.2e-3, 1.3e-3, 1.5e-3, 1.8e-3, 1.1e-3])
    axis = charts.parallel_coordinates(table, ["lr"], {"lr"}, "val_accuracy").data[0].dimensions[0]
    lo, hi = min(axis.values), max(axis.values)
    assert len(axis.tickvals) >= 2 and all(lo - 1e-9 <= t <= hi + 1e-9 for t in axis.tickvals)
    wide = charts.parallel_coordinates(tiny.table, ["lr"], {"lr"}, "val_accuracy")
    assert list(wide.data[0].dimensions[0].ticktext) == ["5e-05", "0.0001", "0.0002"]
