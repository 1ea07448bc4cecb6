"""Page 2, Sweep overview: headline figures, the best trial, and the full trial table."""

from __future__ import annotations

import streamlit as st

from dashboard import loaders
from dashboard.views.common import Context, load_selected, show_empty_sweep
from search.results import describe_gain, describe_lineage, range_edges, widen_command

__all__ = ["render"]

_TABLE = {
    "trial_id": st.column_config.TextColumn("trial", pinned=True),
    "phase": st.column_config.TextColumn("phase"),
    "status_label": st.column_config.TextColumn("status", width="medium"),
    "failure": st.column_config.TextColumn(
        "failure", help="why it failed: out_of_memory, diverged, data (data or tokenizer), "
        "other; the status column has the error"),
    "score": st.column_config.NumberColumn("best metric", format="%.4f"),
    "alpha": st.column_config.NumberColumn("α", format="%.3g"),
    "lr": st.column_config.NumberColumn("lr", format="%.2e"),
    "frozen_depth": st.column_config.NumberColumn("frozen depth"),
    "weight_decay": st.column_config.NumberColumn("weight decay", format="%.4f"),
    "dropout": st.column_config.NumberColumn("dropout", format="%.3f"),
    "warmup_ratio": st.column_config.NumberColumn("warm-up", format="%.2f"),
    "batch_size": st.column_config.NumberColumn("batch"),
    "joint_epochs": st.column_config.NumberColumn("joint epochs"),
    "val_loss": st.column_config.NumberColumn("val loss", format="%.4f"),
    "best_epoch": st.column_config.NumberColumn("best epoch", format="%.2f"),
    "epochs": st.column_config.NumberColumn("epochs", format="%.2f"),
    "time_s": st.column_config.NumberColumn("time (s)", format="%.0f"),
    "warm_from": st.column_config.TextColumn(
        "from sweep", help="a trial of an earlier sweep, taken in by a warm start as history "
        "(not run again here)"),
}


def render(ctx: Context) -> None:
    sweep = load_selected(ctx)
    if sweep is None:
        return
    st.title(f"Sweep {sweep.name}")
    _headline(sweep, ctx)
    _lineage(sweep)
    if show_empty_sweep(sweep, ctx):
        return
    _best_card(sweep)
    _range_edges(sweep)
    _finalists(sweep)
    _trial_table(sweep)


def _headline(sweep: loaders.Sweep, ctx: Context) -> None:
    figures = loaders.headline(sweep)
    planned = f" / {figures['planned']}" if figures.get("planned") else ""
    started = figures["started"].strftime("%Y-%m-%d %H:%M UTC") if figures["started"] else "?"
    live = f"; this page {ctx.refresh_note}" if loaders.is_running(sweep.meta) else ""
    st.caption(f"Status **{figures['status']}**, started {started}, "
               f"duration {loaders.format_duration(figures['duration_s'])}{live}.")
    best = f"{figures['best']:.4f}" if figures["best"] is not None else "—"
    cells = st.columns(6)
    cells[0].metric("trials", f"{figures['trials']}{planned}")
    cells[1].metric("finished", figures["finished"])
    cells[2].metric("running", figures["running"])
    cells[3].metric("stopped early", figures["stopped_early"])
    cells[4].metric("errored", figures["errored"])
    cells[5].metric(f"best {figures['metric']}", best)


def _lineage(sweep: loaders.Sweep) -> None:
    """Where the sweep came from (its warm start) and what its re-tune did to the endpoint."""
    lines = describe_lineage(sweep.meta)
    if not lines:
        return
    st.info("**Lineage**\n\n" + "\n".join(f"- {line}" for line in lines))
    scores = loaders.retune_scores(sweep.meta)
    if not scores.empty:
        st.dataframe(scores, hide_index=True, key="retune_table", column_config={
            m: st.column_config.NumberColumn(m, format="%.4f")
            for m in ("accuracy", "macro-F1", "worst-class F1")})


def _best_card(sweep: loaders.Sweep) -> None:
    card = loaders.best_card(sweep)
    if card is None:
        st.info("No trial has finished an epoch yet, so there is no best trial.")
        return
    with st.container(border=True):
        kind = "Final model" if card["final"] else "Best trial"
        st.subheader(f"{kind}: {card['trial_id']}")
        what = "the best configuration trained on all the data; " if card["final"] else ""
        st.caption(f"{what}{card['status']}; best evaluation at epoch {card['best_epoch']:g} "
                   f"of {card['epochs']:g} run")
        params, val, test = st.columns(3)
        params.markdown("**Params**\n\n" + _bullets(card["params"]))
        val.markdown("**Validation (best epoch)**\n\n" + _bullets(card["val"]))
        test.markdown("**Test (held out)**\n\n" + (
            _bullets(card["test"]) if card["test"] else "not evaluated yet: run `sftune best`"))
        if card["tuning_gain"]:
            st.markdown(f"**What tuning bought:** {describe_gain(card['tuning_gain'])}.")


def _finalists(sweep: loaders.Sweep) -> None:
    table = loaders.finalists(sweep)
    if table.empty:
        return
    st.header("Finalists")
    st.caption("The top search configurations re-run with more seeds at the search's fidelity; "
               "the final trial trains the best by mean (or lower bound) of its runs. A "
               "finalist whose new seeds fell short of its search score did not reproduce.")
    shown = table.assign(seeds=table["seeds"].map(lambda s: ", ".join(map(str, s))),
                         scores=table["scores"].map(lambda s: ", ".join(f"{v:.4f}" for v in s)))
    st.dataframe(shown, hide_index=True, key="finalists_table", column_config={
        "trial_id": "trial", "mean": st.column_config.NumberColumn("mean", format="%.4f"),
        "sd": st.column_config.NumberColumn("sd", format="%.4f"),
        "lcb": st.column_config.NumberColumn("mean − sd", format="%.4f"),
        "search_score": st.column_config.NumberColumn("search score", format="%.4f"),
        "new_mean": st.column_config.NumberColumn("new seeds' mean", format="%.4f"),
        "seeds": "new seeds", "scores": "their scores", "reproducible": "reproduced",
        "default_point": "untuned default"})


def _range_edges(sweep: loaders.Sweep) -> None:
    edges = range_edges(sweep.meta, sweep.table)
    if edges:
        st.warning("**The best trials sit at the edge of a searched range**; the optimum may lie "
                   "past it. Re-run with the widened range, warm-started from this sweep (its "
                   "trials are not run again):\n\n"
                   + "\n".join(f"- {edge['message']}" for edge in edges)
                   + f"\n\n`{widen_command(sweep.meta, edges)}`")


def _bullets(values: dict) -> str:
    return "\n".join(f"- {k}: `{v:.4g}`" if isinstance(v, float) else f"- {k}: `{v}`"
                     for k, v in values.items())


def _trial_table(sweep: loaders.Sweep) -> None:
    st.header("Trials")
    table = sweep.table
    # Every outcome is an option, so the widget stays the same while a live sweep adds some.
    outcomes = list(loaders.OUTCOME_LABELS)
    left, right = st.columns([2, 1])
    chosen = left.multiselect("Outcome", outcomes, default=outcomes, key="outcome_filter",
                              format_func=loaders.OUTCOME_LABELS.get)
    text = right.text_input("Search trial id or status", key="trial_search")
    shown = loaders.filter_trials(table, outcomes=chosen, text=text)
    st.caption(f"Showing {len(shown)} of {len(table)} trials, best first; click a column "
               "header to sort.")
    st.dataframe(shown, column_order=[c for c in _TABLE if c in shown], column_config=_TABLE,
                 hide_index=True, height=min(600, 38 + 35 * max(1, len(shown))),
                 key="trial_table")
    st.download_button(f"Download CSV ({len(shown)} trials)", loaders.table_csv(shown),
                       file_name=f"{sweep.name}-trials.csv", mime="text/csv",
                       key="download_csv", on_click="ignore")
