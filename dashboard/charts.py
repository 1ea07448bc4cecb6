"""Plotly figures for the dashboard, built from the loaders' DataFrames (pure: no Streamlit).

Scatter plots use WebGL traces (``Scattergl``) and parallel coordinates are WebGL already, so a
sweep of thousands of trials still draws in the browser without stalling.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from dashboard.client import Prediction
from dashboard.loaders import OUTCOME_LABELS
from search.results import StopReason

__all__ = [
    "confusion_heatmap",
    "curves_figure",
    "importance_bar",
    "parallel_coordinates",
    "param_scatter",
    "probability_bar",
    "score_distributions",
]

_OUTCOME_COLORS = {
    StopReason.COMPLETED: "#2a9d8f", StopReason.EARLY_STOPPED: "#e9c46a",
    StopReason.ASHA_STOPPED: "#f4a261", StopReason.BUDGET_STOPPED: "#b5838d",
    StopReason.DIVERGED: "#e76f51",
    StopReason.ERROR: "#9b2226", StopReason.RUNNING: "#457b9d", "pending": "#a8dadc",
}
# Trials that ended before their budget get an X on their last epoch and a note in the legend.
_STOPPED_EARLY = {StopReason.EARLY_STOPPED: "early stopped",
                  StopReason.ASHA_STOPPED: "ASHA-stopped",
                  StopReason.BUDGET_STOPPED: "stopped at the budget",
                  StopReason.DIVERGED: "diverged", StopReason.ERROR: "error"}


def _log_ticks(lo: float, hi: float) -> np.ndarray:
    """1-2-5 ticks inside [lo, hi] (log10 units); the ends themselves if fewer than two fit."""
    decades = np.arange(np.floor(lo), np.ceil(hi) + 1)
    ticks = np.log10(np.outer(10.0 ** decades, [1, 2, 5]).ravel())
    inside = ticks[(ticks >= lo - 1e-9) & (ticks <= hi + 1e-9)]
    return inside if len(inside) >= 2 else np.array([lo, hi])


def _log_axis(values: pd.Series, name: str) -> dict:
    """Parcoords has no log axis, so a log-scaled param is drawn as log10 with real-value ticks."""
    logs = np.log10(values.clip(lower=np.finfo(float).tiny))
    ticks = _log_ticks(float(logs.min()), float(logs.max()))
    return {"label": f"{name} (log)", "values": logs, "tickvals": ticks,
            "ticktext": [f"{10 ** t:.3g}" for t in ticks]}


def parallel_coordinates(table: pd.DataFrame, params: list[str], log_params: set[str],
                         metric: str) -> go.Figure:
    """One line per scored trial across the params and the metric, coloured by the metric."""
    scored = table[table["score"].notna()]
    dims = [_log_axis(scored[p], p) if p in log_params else {"label": p, "values": scored[p]}
            for p in params]
    dims.append({"label": metric, "values": scored["score"]})
    line = {"color": scored["score"], "colorscale": "Viridis", "showscale": True,
            "colorbar": {"title": {"text": metric}}}
    figure = go.Figure(go.Parcoords(line=line, dimensions=dims))
    figure.update_layout(title=f"Params vs {metric} ({len(scored)} scored trials)",
                         margin={"l": 60, "r": 60, "t": 80, "b": 30})
    return figure


def param_scatter(table: pd.DataFrame, param: str, *, log: bool, metric: str) -> go.Figure:
    """The metric against one param, one WebGL trace per outcome; a log x axis when ``log``."""
    scored = table[table["score"].notna()]
    figure = go.Figure()
    for outcome, rows in scored.groupby("outcome", sort=True):
        figure.add_trace(go.Scattergl(
            x=rows[param], y=rows["score"], mode="markers",
            name=OUTCOME_LABELS.get(str(outcome), str(outcome)),
            marker={"size": 6, "opacity": 0.7, "color": _OUTCOME_COLORS.get(str(outcome))},
            text=rows["trial_id"], hovertemplate="%{text}<br>%{x:.4g} → %{y:.4f}<extra></extra>",
        ))
    figure.update_xaxes(title_text=param, type="log" if log else "linear")
    figure.update_yaxes(title_text=metric)
    figure.update_layout(title=f"{metric} vs {param}", height=340,
                         legend={"orientation": "h", "y": -0.3},
                         margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return figure


def importance_bar(values: dict[str, float], evaluator: str) -> go.Figure:
    """Horizontal bars, most important on top."""
    names = list(values)[::-1]
    figure = go.Figure(go.Bar(x=[values[n] for n in names], y=names, orientation="h",
                              marker_color="#457b9d"))
    figure.update_layout(title=f"Hyperparameter importance ({evaluator})", height=300,
                         xaxis_title="share of the score's variance",
                         margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return figure


def _curve_name(trial_id: str, outcome: str) -> str:
    return f"{trial_id} ({_STOPPED_EARLY[outcome]})" if outcome in _STOPPED_EARLY else trial_id


def curves_figure(long: pd.DataFrame, metric: str) -> go.Figure:
    """Losses (train solid, val dashed) on the left, the val metric on the right, one colour per
    trial. Trials stopped early end with an X and say so in the legend."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("loss per epoch", f"{metric} per epoch"))
    palette = qualitative.Plotly
    for i, (trial_id, rows) in enumerate(long.groupby("trial_id", sort=False)):
        color, outcome = palette[i % len(palette)], str(rows["outcome"].iloc[0])
        name = _curve_name(str(trial_id), outcome)
        series = [("train_task_loss", 1, "solid"), ("val_loss", 1, "dash"), (metric, 2, "solid")]
        for s, col, dash in series:
            part = rows[rows["series"] == s]
            if part.empty:
                continue
            symbols = ["circle"] * (len(part) - 1) + [
                "x" if outcome in _STOPPED_EARLY else "circle"]
            figure.add_trace(go.Scatter(
                x=part["epoch"], y=part["value"], mode="lines+markers", legendgroup=name,
                name=name, showlegend=(s == "train_task_loss"),
                line={"color": color, "dash": dash},
                marker={"symbol": symbols, "size": [6] * (len(part) - 1) + [11]},
                hovertemplate=f"{name}<br>{s} epoch %{{x}}: %{{y:.4f}}<extra></extra>",
            ), row=1, col=col)
    figure.update_xaxes(title_text="epoch", dtick=1)
    figure.update_layout(height=420, margin={"l": 40, "r": 10, "t": 50, "b": 40},
                         title="solid: train, dashed: validation; X: stopped early")
    return figure


def probability_bar(prediction: Prediction) -> go.Figure:
    """Every label's probability for one text; the predicted label is highlighted."""
    labels = list(prediction.probabilities)
    colors = ["#2a9d8f" if lab == prediction.label else "#adb5bd" for lab in labels]
    figure = go.Figure(go.Bar(x=labels, y=[prediction.probabilities[lab] for lab in labels],
                              marker_color=colors, text=[
                                  f"{prediction.probabilities[lab]:.1%}" for lab in labels]))
    figure.update_layout(title="probability per label", yaxis={"range": [0, 1]}, height=280,
                         margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return figure


def score_distributions(tables: dict[str, pd.DataFrame], metric: str) -> go.Figure:
    """The best-epoch score of every trial of each sweep, as box plots side by side."""
    figure = go.Figure()
    for name, table in tables.items():
        figure.add_trace(go.Box(y=table["score"].dropna(), name=name, boxpoints="outliers"))
    figure.update_layout(title=f"{metric} of every trial", yaxis_title=metric, height=360,
                         margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return figure


def confusion_heatmap(confusion: pd.DataFrame) -> go.Figure:
    """Counts of true (rows) against predicted (columns) labels; each row shaded by its share,
    so a rare class's errors stand out as much as a common one's."""
    counts = confusion.to_numpy()
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    figure = go.Figure(go.Heatmap(
        z=shares, x=list(confusion.columns), y=list(confusion.index), text=counts,
        texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1,
        hovertemplate="true %{y}, predicted %{x}: %{text} (%{z:.0%} of the row)<extra></extra>",
        colorbar={"title": "share of row"},
    ))
    figure.update_layout(xaxis_title="predicted", yaxis_title="true", height=320,
                         yaxis={"autorange": "reversed"}, margin={"t": 30})
    return figure
