"""Hyperparameter importance from Optuna's evaluators, computed from a sweep's trial table.

Ray Tune keeps its own trial records, so the dashboard rebuilds an in-memory Optuna study from
the table: one completed Optuna trial per finished sweep trial, its value the best-epoch score,
its distributions the sweep's search space. fANOVA (it needs scikit-learn) is used up to
:data:`FANOVA_MAX_TRIALS` finished trials, PED-ANOVA (pure Optuna) beyond that or without
scikit-learn. Optuna is imported only when importance is asked for.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import pandas as pd

from dashboard.space import Dimension, is_integer
from search.config import Choice
from search.results import StopReason
from search.space import distribution

__all__ = ["FANOVA_MAX_TRIALS", "MIN_TRIALS", "Importance", "importance_input", "param_importance"]

#: Below this many finished trials an importance figure is noise, so none is computed.
MIN_TRIALS = 4
#: fANOVA's random forest grows faster than linearly with the trials: on 2 cores, synthetic
#: sweeps took 2.5 s at 100 finished trials, 4.9 s at 300 and 143 s at 2,000, where the
#: Hyperparameters page timed out; PED-ANOVA took 0.2 s at 2,000 (BENCHMARKS.md, dashboard).
FANOVA_MAX_TRIALS = 300
# A trial counts as finished when it trained as long as its own rules let it. ASHA-stopped
# trials are left out like Optuna's pruned ones: their score is from a shorter budget.
_FINISHED = (StopReason.COMPLETED, StopReason.EARLY_STOPPED)


@dataclass(frozen=True)
class Importance:
    """Importance per param (summing to 1, largest first), or the reason there is none."""

    values: dict[str, float] = field(default_factory=dict)
    evaluator: str = ""
    n_trials: int = 0
    note: str = ""


def importance_input(table: pd.DataFrame, space: dict[str, Dimension]) -> pd.DataFrame:
    """Finished trials with a score, restricted to searched params, with values inside the
    space (a resumed sweep may hold trials drawn from an older, wider space)."""
    params = [p for p in space if p in table.columns]
    rows = table.loc[table["outcome"].isin(_FINISHED) & table["score"].notna(),
                     ["trial_id", *params, "score"]].dropna()
    for name in params:
        rows = rows[_inside(rows[name], space[name])]
    return rows.reset_index(drop=True)


def _inside(values: pd.Series, dim: Dimension) -> pd.Series:
    if isinstance(dim, Choice):
        return values.isin(dim.choices)
    return values.between(dim.low, dim.high)


def _study(rows: pd.DataFrame, space: dict[str, Dimension]):
    import optuna

    dists = {name: distribution(name, dim) for name, dim in space.items() if name in rows}
    study = optuna.create_study(direction="maximize")  # score is accuracy or F1
    trials = []
    for record in rows.to_dict("records"):
        params = {n: (int(record[n]) if is_integer(n) else record[n]) for n in dists}
        trials.append(optuna.trial.create_trial(
            params=params, distributions=dists, value=float(record["score"])))
    study.add_trials(trials)
    return study


def _evaluator(prefer: str, n_trials: int):
    import optuna

    fanova_ok = n_trials <= FANOVA_MAX_TRIALS and importlib.util.find_spec("sklearn") is not None
    if prefer == "fanova" and fanova_ok:
        return "fANOVA", optuna.importance.FanovaImportanceEvaluator(seed=0)
    return "PED-ANOVA", optuna.importance.PedAnovaImportanceEvaluator()


def param_importance(
    table: pd.DataFrame, space: dict[str, Dimension], *, prefer: str = "fanova",
) -> Importance:
    """Importance of each searched param for the score, from the finished trials."""
    rows = importance_input(table, space)
    if not space:
        return Importance(note="The sweep's config names no searched dimension.")
    if len(rows) < MIN_TRIALS:
        return Importance(n_trials=len(rows), note=(
            f"Importance needs at least {MIN_TRIALS} finished trials; {len(rows)} so far."))
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name, evaluator = _evaluator(prefer, len(rows))
    try:
        values = optuna.importance.get_param_importances(
            _study(rows, space), evaluator=evaluator, normalize=True)
    except (ValueError, RuntimeError) as err:  # e.g. every trial has the same score
        return Importance(evaluator=name, n_trials=len(rows),
                          note=f"{name} could not rank the params: {err}")
    return Importance(values=dict(values), evaluator=name, n_trials=len(rows))
