"""Page 6, Try the model: ask the Serve endpoint (or, when it is down, the exported best model
loaded locally) about one text or a batch, and show which model answered."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import cached, charts, client
from dashboard.client import AuthRequired, EndpointDown, EndpointError, Prediction
from dashboard.local_model import find_export
from dashboard.views.common import Context
from search.artifacts import CheckpointError
from search.results import ResultsError

__all__ = ["render"]


def render(ctx: Context) -> None:
    st.title("Try the model")
    url = st.text_input("Endpoint URL", ctx.settings.serve_url, key="serve_url").strip()
    api_key = st.session_state.get("pasted_api_key") or ctx.settings.api_key()
    answerer = _endpoint_answerer(url, api_key, ctx) or _local_answerer(ctx)
    if answerer is None:
        return
    _query_boxes(answerer)


def _endpoint_answerer(url: str, api_key: str | None, ctx: Context):
    """A predict function bound to the endpoint when it answers ``/model``; else None."""
    try:
        info = client.model_info(url, api_key)
    except AuthRequired as err:
        _ask_for_key(err, ctx)
        return None
    except EndpointDown as err:
        st.warning(f"No model endpoint is up: {err}. Start one with `sftune serve`, or load "
                   "the sweep's exported best model here.")
        return None
    except EndpointError as err:
        st.error(f"The endpoint answered, but not usefully: {err}")
        return None
    st.success(f"Endpoint up at {url}: trial **{info.get('trial_id') or '?'}** "
               f"from {info.get('source') or 'an unknown sweep'}, loaded at "
               f"{info.get('loaded_at', '?')}; labels {', '.join(info.get('label_names', []))}.")
    return lambda texts: client.predict(url, texts, api_key)


def _ask_for_key(err: AuthRequired, ctx: Context) -> None:
    var = ctx.settings.api_key_env
    where = (f"the variable `{var}` (named by `--api-key-env`) is "
             f"{'set but the key was rejected' if ctx.settings.api_key() else 'not set'}"
             if var else "no `--api-key-env` was given")
    st.error(f"The endpoint needs an API key: {err}. Here {where}. Restart the dashboard with "
             "the key's variable set, or paste a key below (kept in this browser session only).")
    st.text_input("API key", type="password", key="pasted_api_key")


def _local_answerer(ctx: Context):
    """A predict function bound to the locally loaded best model, once the user asks for it."""
    export = _export_dir(ctx)
    if export is None:
        st.info("No exported model to load either: run `sftune best --export` on a sweep, "
                "or select a sweep whose best trial kept its checkpoint.")
        return None
    loaded = st.session_state.get("local_model_dir") == str(export)
    if not loaded and not st.button(f"Load the best model locally from `{export}`",
                                    key="load_local"):
        return None
    st.session_state["local_model_dir"] = str(export)
    try:
        model = cached.local_model(str(export))
    except (CheckpointError, OSError, ValueError) as err:
        st.error(f"Could not load the model at `{export}`: {err}")
        return None
    trial = model.meta.get("trial_id") or "?"
    st.success(f"Answering locally with `{export}` (trial **{trial}**, CPU).")
    return model.predict


def _export_dir(ctx: Context):
    if ctx.selected is None:
        return None
    try:
        sweep = cached.sweep(ctx.selected)
    except ResultsError:
        return None
    return find_export(sweep.meta, sweep.path, sweep.table)


def _query_boxes(predict) -> None:
    single, batch = st.columns(2)
    with single:
        text = st.text_input("A review", key="query_text",
                             placeholder="A charming, funny film.")
        if st.button("Predict", key="predict_one", disabled=not text.strip()):
            _answer(predict, [text.strip()], "single")
    with batch:
        lines = st.text_area("A batch: one text per line", key="query_batch", height=120)
        texts = [ln.strip() for ln in lines.splitlines() if ln.strip()]
        if st.button(f"Predict {len(texts)} texts", key="predict_batch", disabled=not texts):
            _answer(predict, texts, "batch")
    _show_answers()


def _answer(predict, texts: list[str], kind: str) -> None:
    try:
        st.session_state["answers"] = (kind, predict(texts))
    except (EndpointError, RuntimeError, ValueError) as err:  # the local model raises these
        st.session_state.pop("answers", None)
        st.error(f"The prediction failed: {err}")


def _show_answers() -> None:
    kind, answers = st.session_state.get("answers", (None, []))
    if not answers:
        return
    if kind == "single":
        _show_one(answers[0])
    else:
        st.dataframe(_batch_table(answers), hide_index=True, key="batch_answers")


def _show_one(answer: Prediction) -> None:
    by = f" (trial {answer.trial_id})" if answer.trial_id else ""
    st.metric(f"label{by}", answer.label, f"{answer.score:.1%} probability", delta_color="off")
    st.plotly_chart(charts.probability_bar(answer), key="probabilities")


def _batch_table(answers: list[Prediction]) -> pd.DataFrame:
    rows = [{"text": a.text, "label": a.label, "score": a.score,
             **{f"p({label})": p for label, p in a.probabilities.items()}} for a in answers]
    return pd.DataFrame(rows)
