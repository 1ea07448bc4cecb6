"""The search space a sweep ran with, read back from its ``sweep.json``.

The dashboard needs it twice: to draw a log axis where a dimension was sampled log-uniformly,
and to give Optuna's importance evaluators the distributions the trials were drawn from.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from pydantic import ValidationError

from search.config import CORE_DIMENSIONS, INT_DIMENSIONS, Choice, Range, SpaceConfig

__all__ = [
    "Dimension", "fixed_params", "is_integer", "log_scaled", "plot_params", "search_space",
]

Dimension = Range | Choice


def search_space(meta: dict[str, Any]) -> dict[str, Dimension]:
    """The searched (not fixed) dimensions of the sweep's config, in display order.

    A sweep written by another version may carry a space this one cannot validate; then each
    dimension that still parses is kept and the rest are dropped, rather than failing the page.
    """
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    raw = config.get("space") if isinstance(config.get("space"), dict) else {}
    if not raw:  # unknown, not the defaults: claiming the default space would mislabel axes
        return {}
    try:
        return SpaceConfig.model_validate(raw).searched()
    except ValidationError:
        return _parse_each(raw)


def _parse_each(raw: dict[str, Any]) -> dict[str, Dimension]:
    space: dict[str, Dimension] = {}
    for name, value in raw.items():
        if not isinstance(value, dict):
            continue
        try:
            space[name] = (Choice if "choices" in value else Range).model_validate(value)
        except ValidationError:
            continue
    return space


def log_scaled(space: dict[str, Dimension]) -> set[str]:
    """Names of the dimensions sampled log-uniformly: their axes are drawn in log scale."""
    return {name for name, dim in space.items() if isinstance(dim, Range) and dim.log}


def plot_params(table: pd.DataFrame, space: dict[str, Dimension]) -> list[str]:
    """Params to plot: the five core dimensions and any other searched one, each when the
    table holds it and it varies (or was searched); a constant axis tells nothing."""
    names = list(CORE_DIMENSIONS) + [n for n in space if n not in CORE_DIMENSIONS]
    return [n for n in names if n in table.columns and table[n].notna().any()
            and (n in space or table[n].nunique() > 1)]


def fixed_params(table: pd.DataFrame, space: dict[str, Dimension]) -> dict[str, object]:
    """Core params held at one value in this sweep (the caption names them instead)."""
    plotted = set(plot_params(table, space))
    return {n: table[n].dropna().iloc[0] for n in CORE_DIMENSIONS
            if n in table.columns and n not in plotted and table[n].notna().any()}


def is_integer(name: str) -> bool:
    return name in INT_DIMENSIONS
