"""Page 3, Hyperparameters: how the params relate to the metric, and which of them matter."""

from __future__ import annotations

import streamlit as st

from dashboard import cached, charts, loaders, space
from dashboard.views.common import Context, open_scored_sweep

__all__ = ["render"]


def render(ctx: Context) -> None:
    sweep = open_scored_sweep(ctx, "Hyperparameters of {name}")
    if sweep is None:
        return
    dims = space.search_space(sweep.meta)
    params, logs = space.plot_params(sweep.table, dims), space.log_scaled(dims)
    if not dims:
        st.caption("The sweep's config holds no search space, so every axis is linear.")
    fixed = space.fixed_params(sweep.table, dims)
    if fixed:
        st.caption("Fixed in this sweep: " + ", ".join(f"{k} = {v:g}" for k, v in fixed.items()))
    st.plotly_chart(charts.parallel_coordinates(sweep.table, params, logs, sweep.metric),
                    key="parallel_coordinates")
    st.caption("Drag along an axis to keep only the trials in that range. Log-scaled params "
               "(" + (", ".join(sorted(logs)) or "none") + ") are drawn on a log axis.")
    _scatter_grid(sweep, params, logs)
    _importance(ctx, sweep)


def _scatter_grid(sweep: loaders.Sweep, params: list[str], logs: set[str]) -> None:
    st.header("Each param against the metric")
    columns = st.columns(3)
    for i, param in enumerate(params):
        with columns[i % 3]:
            st.plotly_chart(charts.param_scatter(sweep.table, param, log=param in logs,
                                                 metric=sweep.metric), key=f"scatter_{param}")


def _importance(ctx: Context, sweep: loaders.Sweep) -> None:
    st.header("Importance")
    result = cached.param_importance(ctx.selected)
    if not result.values:
        st.info(result.note)
        return
    st.plotly_chart(charts.importance_bar(result.values, result.evaluator), key="importance")
    st.caption(f"{result.evaluator} over {result.n_trials} finished trials (completed or "
               "stopped by patience; ASHA-stopped and failed trials are left out, as Optuna "
               "leaves out pruned ones). It ranks the params by how much of the metric's "
               "variation each explains.")
