"""Page 4, Learning curves: train and validation figures per epoch for chosen trials."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, loaders
from dashboard.views.common import Context, load_selected, show_empty_sweep

__all__ = ["MAX_CURVES", "render"]

#: More lines than this are unreadable on one chart, and cost the browser for nothing.
MAX_CURVES = 20


def render(ctx: Context) -> None:
    sweep = load_selected(ctx)
    if sweep is None:
        return
    st.title(f"Learning curves of {sweep.name}")
    if show_empty_sweep(sweep, ctx):
        return
    options = [str(t) for t in sweep.table["trial_id"]]  # best first
    chosen = st.multiselect(
        f"Trials (up to {MAX_CURVES}; the 5 best are shown first)", options,
        default=loaders.default_curve_trials(sweep.table), max_selections=MAX_CURVES,
        key="curve_trials", format_func=_labeller(sweep),
    )
    if not chosen:
        st.info("Pick one or more trials to plot.")
        return
    long = loaders.curves(sweep, chosen)
    missing = sorted(set(chosen) - set(long["trial_id"]))
    if missing:
        st.caption(f"No finished epoch to plot for: {', '.join(missing)}.")
    if long.empty:
        return
    st.plotly_chart(charts.curves_figure(long, sweep.metric), key="curves")
    st.caption("An X marks the last epoch of a trial that ended early: stopped by patience or "
               "by ASHA, diverged, or errored; the legend says which.")


def _labeller(sweep: loaders.Sweep):
    labels = dict(zip(sweep.table["trial_id"].astype(str), sweep.table["status_label"],
                      strict=True))
    scores = dict(zip(sweep.table["trial_id"].astype(str), sweep.table["score"], strict=True))

    def label(trial_id: str) -> str:
        score = scores.get(trial_id)
        shown = f"{score:.4f}" if score == score and score is not None else "—"
        return f"{trial_id} ({shown}, {labels.get(trial_id, '?')})"

    return label
