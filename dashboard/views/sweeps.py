"""Page 1, Sweeps: every sweep under the storage path, and two of them side by side."""

from __future__ import annotations

import streamlit as st

from dashboard import cached, charts, loaders
from dashboard.views.common import Context
from search.results import ResultsError, sweep_name

__all__ = ["render"]

_COLUMNS = {
    "name": st.column_config.TextColumn("sweep"),
    "status": st.column_config.TextColumn("status"),
    "trials": st.column_config.NumberColumn("trials"),
    "finished": st.column_config.NumberColumn("finished"),
    "running": st.column_config.NumberColumn("running"),
    "stopped_early": st.column_config.NumberColumn("stopped early"),
    "errored": st.column_config.NumberColumn("errored"),
    "metric": st.column_config.TextColumn("metric"),
    "best": st.column_config.NumberColumn("best", format="%.4f"),
    "started": st.column_config.DatetimeColumn("started (UTC)", format="YYYY-MM-DD HH:mm"),
    "duration": st.column_config.TextColumn("duration"),
}


def render(ctx: Context) -> None:
    st.title("Sweeps")
    if not ctx.sweeps:
        st.info(f"No sweeps yet under `{ctx.storage}`. Start one with "
                "`sftune sweep --name NAME`; it appears here as soon as it starts.")
        return
    table = loaders.sweep_table(cached.sweep_rows(ctx.sweeps))
    table["duration"] = table["duration_s"].map(loaders.format_duration)
    st.caption(f"{len(table)} sweeps under `{ctx.storage}`, newest first.")
    st.dataframe(table, column_order=list(_COLUMNS), column_config=_COLUMNS, hide_index=True)
    for row in table[table["problem"].fillna("") != ""].itertuples():
        st.warning(f"Sweep **{row.name}** cannot be read: {row.problem}")
    _compare(ctx)


def _compare(ctx: Context) -> None:
    st.header("Compare two sweeps")
    if len(ctx.sweeps) < 2:
        st.caption("Comparison needs two sweeps; this storage path holds one.")
        return
    names = [sweep_name(p) for p in ctx.sweeps]
    left, right = st.columns(2)
    a = left.selectbox("Sweep A", names, index=0, key="compare_a")
    b = right.selectbox("Sweep B", names, index=1, key="compare_b")
    try:
        first, second = (cached.sweep(ctx.sweeps[names.index(n)]) for n in (a, b))
    except ResultsError as err:
        st.error(f"Cannot compare: {err}")
        return
    st.dataframe(loaders.compare_sweeps(first, second))
    st.plotly_chart(charts.score_distributions(
        {f"A: {first.name}": first.table, f"B: {second.name}": second.table}, first.metric))
