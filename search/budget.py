"""How a sweep spends its wall-clock budget, Ray-free: the search's fidelity (data subset, time
cap per trial), which configuration the final trial trains, and what the budget leaves it.

The Ray adapter (:mod:`search.sweep`) applies these; they are plain functions of the config, the
data and the recorded trials, so they are tested without Ray.
"""

from __future__ import annotations

import time
from typing import Any

from search.config import AppConfig
from search.data import PreparedData, subset
from search.results import read_trials, summarize_trials
from search.space import default_point, type_for

__all__ = [
    "EXPORT_RESERVE_S",
    "FINAL_MIN_S",
    "choose_final",
    "final_config",
    "search_budget",
    "search_setup",
]

#: Seconds of the budget kept for the test evaluations and the export after the final trial.
EXPORT_RESERVE_S = 30.0
#: The final trial trains at least this long, however little of the budget the search left.
FINAL_MIN_S = 60.0


def search_setup(cfg: AppConfig, data: PreparedData) -> tuple[AppConfig, PreparedData]:
    """The search's config and data: with ``tune.search_examples``, one pass over a stratified
    subset of that many training examples, scored on ``tune.search_eval_examples``. With a
    budget, a search trial also stops at half the search's share (its lr schedule fitted to
    that), so at least two waves of trials fit and every trial reports, however slow the
    machine or long the texts."""
    if cfg.tune.search_examples is None:
        return cfg, data
    small = subset(data, train=cfg.tune.search_examples,
                   validation=cfg.tune.search_eval_examples, seed=cfg.data.split_seed)
    epochs = max(1, round(cfg.tune.search_examples / len(small.train)))
    budget = search_budget(cfg)
    limit = cfg.train.time_limit_s
    if budget is not None:
        limit = min(limit or budget, budget / 2)
    return _with_train(cfg, epochs=epochs, time_limit_s=limit), small


def _with_train(cfg: AppConfig, **changes: Any) -> AppConfig:
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=changes)})


def search_budget(cfg: AppConfig) -> float | None:
    budget = cfg.tune.time_budget_s
    if budget is None or cfg.tune.search_examples is None:
        return budget
    return budget * cfg.tune.search_fraction


def final_config(cfg: AppConfig, started: float, cpus: float) -> AppConfig:
    """The final trial's config: what the budget has left (its lr schedule ends there), one
    torch thread per CPU it holds (Ray pins reused workers to the search trials' one), and one
    evaluation per epoch (and at its end) on the whole validation split: its evaluations only
    pick its best checkpoint, and each costs a pass over that split."""
    limit = cfg.train.time_limit_s
    if cfg.tune.time_budget_s is not None:
        left = cfg.tune.time_budget_s - (time.time() - started) - EXPORT_RESERVE_S
        limit = max(FINAL_MIN_S, min(left, limit or left))
    threads = cfg.train.num_threads
    if threads is None and cfg.tune.gpus_per_trial == 0:
        threads = max(1, int(cpus))
    return _with_train(cfg, time_limit_s=limit, num_threads=threads, eval_every=None)


def choose_final(cfg: AppConfig, path: str) -> dict[str, Any]:
    """Which search trial's configuration the final trial trains: the best one, unless it beats
    the untuned default by less than ``tune.min_improvement`` (then the default's), or the
    default point when no search trial was evaluated in time."""
    frame = read_trials(path)
    search = summarize_trials(frame[frame["phase"] != "final"])
    search = search[search["score"].notna()]
    if search.empty:  # the budget ran out before any evaluation: train the untuned default
        return {"trial_id": None, "params": default_point(cfg),
                "reason": "untuned default: no search trial finished an evaluation"}
    best, default = search.iloc[0], search[search["default_point"]]
    reason = "best search trial"
    if len(default) and best["score"] < default.iloc[0]["score"] + cfg.tune.min_improvement:
        if best["trial_id"] != default.iloc[0]["trial_id"]:
            reason = (f"untuned default: the best trial's lead ({best['score']:.4f} vs "
                      f"{default.iloc[0]['score']:.4f}) is under tune.min_improvement")
        best = default.iloc[0]
    return {"trial_id": best["trial_id"], "reason": reason,
            "params": {name: type_for(name)(best[name]) for name in cfg.space.searched()}}
