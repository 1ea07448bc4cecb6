"""Page 5, Per class: where a trial fails, label by label, and how two trials differ."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, loaders
from dashboard.views.common import Context, open_scored_sweep

__all__ = ["render"]

_FORMAT = {"precision": "{:.3f}", "recall": "{:.3f}", "f1": "{:.3f}", "support": "{:.0f}"}


def render(ctx: Context) -> None:
    sweep = open_scored_sweep(ctx, "Per class: {name}")
    if sweep is None:
        return
    options = [str(t) for t in sweep.table.dropna(subset=["score"])["trial_id"]]
    best = loaders.best_card(sweep)
    chosen = st.selectbox("Trial", options, key="class_trial",
                          index=options.index(best["trial_id"]) if best else 0)
    for split, caption in (("validation", "validation, at the trial's best evaluation"),
                           ("test", "test (held out), as measured once by `sftune best`")):
        _split_section(sweep, chosen, split, caption)
    _compare(sweep, chosen, options)


def _split_section(sweep: loaders.Sweep, trial_id: str, split: str, caption: str) -> None:
    found = loaders.per_class(sweep, trial_id, split)
    if found is None:
        if split == "validation":
            st.info(f"Trial {trial_id} has no per-class record (a sweep from before sftune "
                    "recorded one).")
        return
    table, confusion = found
    st.subheader(f"{split.capitalize()}: {trial_id}")
    st.caption(caption)
    left, right = st.columns([2, 3])
    left.dataframe(table.style.format(_FORMAT), key=f"class_table_{split}")
    right.plotly_chart(charts.confusion_heatmap(confusion), key=f"confusion_{split}")


def _compare(sweep: loaders.Sweep, chosen: str, options: list[str]) -> None:
    others = [t for t in options if t != chosen]
    if not others:
        return
    st.subheader("Compare with another trial")
    other = st.selectbox("Other trial", others, key="class_other")
    first, second = (loaders.per_class(sweep, t) for t in (chosen, other))
    if first is None or second is None:
        st.info("One of the two trials has no per-class record.")
        return
    difference = loaders.per_class_difference(first[0], second[0])
    st.caption(f"Validation precision, recall and F1 of {chosen} minus {other}, label by label "
               f"(positive: {chosen} is better there).")
    st.dataframe(difference.style.format("{:+.3f}"), key="class_difference")
