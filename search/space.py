"""The search space, Ray-free: its check against the model, its Optuna distributions, and the
untuned default point.

The one place a space dimension (:class:`~search.config.Range` or
:class:`~search.config.Choice`) becomes an Optuna distribution: the sweep's searcher, the
recorder's Optuna study and the dashboard's importance all use :func:`distribution`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from search.config import INT_DIMENSIONS, AppConfig, Choice, Range

__all__ = [
    "SpaceError",
    "default_point",
    "distribution",
    "fixed_params",
    "optuna_space",
    "type_for",
    "validate_space",
]


class SpaceError(ValueError):
    """The space does not fit the model (config-only checks run when the config is built)."""


def type_for(name: str) -> type:
    """The Python type of a dimension's values: integers stay integers."""
    return int if name in INT_DIMENSIONS else float


def distribution(name: str, dim: Range | Choice):
    """The Optuna distribution a dimension is sampled from."""
    import optuna.distributions as dist

    if isinstance(dim, Choice):
        return dist.CategoricalDistribution([type_for(name)(c) for c in dim.choices])
    if type_for(name) is int:
        return dist.IntDistribution(int(dim.low), int(dim.high), log=dim.log)
    return dist.FloatDistribution(dim.low, dim.high, log=dim.log)


def optuna_space(cfg: AppConfig) -> dict[str, Any]:
    """Optuna distributions of the searched dimensions."""
    return {name: distribution(name, dim) for name, dim in cfg.space.searched().items()}


def default_point(cfg: AppConfig) -> dict[str, Any]:
    """The searched dimensions at their defaults (the untuned trial), typed as Optuna's space."""
    values = cfg.default_params().model_dump()
    return {name: type_for(name)(values[name]) for name in cfg.space.searched()}


def fixed_params(cfg: AppConfig) -> dict[str, Any]:
    """The point's values that are not searched (constants, or train.* defaults)."""
    searched = cfg.space.searched()
    return {k: v for k, v in cfg.default_params().model_dump().items() if k not in searched}


def _model_layers(model_dir: Path) -> int:
    config = json.loads((model_dir / "config.json").read_text())
    return int(config["num_hidden_layers"])


def validate_space(cfg: AppConfig, model_dir: Path) -> None:
    """Checks that need the model (config-only checks already ran when the config was built)."""
    layers = _model_layers(model_dir)
    dim = cfg.space.frozen_depth
    values = [dim.low, dim.high] if isinstance(dim, Range) else getattr(dim, "choices", [dim])
    if max(values) > layers:
        raise SpaceError(
            f"space.frozen_depth reaches {max(values):g} but model {cfg.model.name!r} has "
            f"{layers} layers; allowed values are 0..{layers}"
        )
    if isinstance(cfg.space.dropout, Range) and cfg.space.dropout.high >= 1:
        raise SpaceError(f"space.dropout.high must be < 1, got {cfg.space.dropout.high}")
