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

from search.config import INT_DIMENSIONS, AppConfig, Choice, Range, SpaceConfig

__all__ = [
    "EDGE_SHARE",
    "SpaceError",
    "default_point",
    "edge_of_range",
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


#: A best value this close to a bound, as a share of the range's (log) width, is "at the edge".
EDGE_SHARE = 0.05
#: Dimensions that cannot go below 0 (a bound at 0 is a wall, not an edge to widen past).
_NON_NEGATIVE = ("alpha", "frozen_depth", "weight_decay", "dropout", "warmup_ratio",
                 "batch_size", "joint_epochs")
_UPPER_LIMITS = {"dropout": 0.9, "warmup_ratio": 0.5}


def edge_of_range(space: SpaceConfig, best: dict[str, Any], top: list[dict[str, Any]]
                  ) -> list[dict[str, Any]]:
    """The searched ranges whose best value sits at a bound: the optimum may lie outside.

    ``best`` is the best search trial's params, ``top`` the best few trials' (best included).
    Each finding names the param, the bound, the value, how many of the top trials sit in the
    outer tenth on that side, and a widened range to try (the bound moved out by half the (log)
    width; a bound at a hard limit such as dropout 0 is not an edge).
    """
    findings = []
    for name, dim in space.searched().items():
        if not isinstance(dim, Range) or best.get(name) is None:
            continue
        side = _edge_side(dim, float(best[name]))
        widened = _widened(name, dim, side) if side else None
        if widened is None:
            continue
        near = sum(1 for t in top if t.get(name) is not None
                   and _edge_side(dim, float(t[name]), share=0.1) == side)
        findings.append({
            "param": name, "bound": side, "value": float(best[name]),
            "range": [dim.low, dim.high], "top_near": near, "top": len(top),
            "suggest": widened, "set": f"space.{name}={_range_text(widened, dim)}",
            "message": (f"{name}: the best trial's {float(best[name]):.3g} sits at the {side} "
                        f"end of [{dim.low:g}, {dim.high:g}] ({near} of the top {len(top)} "
                        f"trials in its outer tenth); try --set 'space.{name}="
                        f"{_range_text(widened, dim)}'"),
        })
    return findings


def _position(dim: Range, value: float) -> float:
    import math

    if dim.log:
        return (math.log(value) - math.log(dim.low)) / (math.log(dim.high) - math.log(dim.low))
    return (value - dim.low) / (dim.high - dim.low)


def _edge_side(dim: Range, value: float, share: float = EDGE_SHARE) -> str | None:
    position = _position(dim, value)
    return "low" if position <= share else "high" if position >= 1 - share else None


def _widened(name: str, dim: Range, side: str) -> dict[str, float] | None:
    """The range with ``side`` moved out by half its (log) width, or None at a hard limit."""
    if dim.log:
        factor = (dim.high / dim.low) ** 0.5
        low, high = (dim.low / factor, dim.high) if side == "low" else (dim.low,
                                                                         dim.high * factor)
    else:
        step = (dim.high - dim.low) / 2
        low, high = (dim.low - step, dim.high) if side == "low" else (dim.low, dim.high + step)
    if name in _NON_NEGATIVE:
        low = max(low, 0.0)
    high = min(high, _UPPER_LIMITS.get(name, high))
    if type_for(name) is int:
        low, high = float(int(low)), float(round(high))
    if (low, high) == (dim.low, dim.high):
        return None
    return {"low": low, "high": high}


def _range_text(widened: dict[str, float], dim: Range) -> str:
    log = ", log: true" if dim.log else ""
    return f"{{low: {widened['low']:.3g}, high: {widened['high']:.3g}{log}}}"
