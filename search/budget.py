"""How a sweep spends its wall-clock budget, Ray-free: the search's fidelity (data subset, time
cap per trial), which configuration the final trial trains, and what the budget leaves it.

The Ray adapter (:mod:`search.sweep`) applies these; they are plain functions of the config, the
data and the recorded trials, so they are tested without Ray.
"""

from __future__ import annotations

import json
import time
from typing import Any

from search.config import AppConfig
from search.data import PreparedData, subset
from search.results import finalist_summary, read_trials, search_rows, summarize_trials
from search.space import default_point, type_for

__all__ = [
    "EXPORT_RESERVE_S",
    "FINAL_MIN_S",
    "choose_final",
    "finalist_runs",
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
    """Which search trial's configuration the final trial trains: the best one (by its
    finalists' seed-mean or lower bound when finalists ran, else by its search score), unless
    it beats the untuned default by less than ``tune.min_improvement`` (then the default's), or
    the default point when no search trial was evaluated in time."""
    frame = read_trials(path)
    search = summarize_trials(search_rows(frame))
    search = search[search["score"].notna()]
    if search.empty:  # the budget ran out before any evaluation: train the untuned default
        return {"trial_id": None, "params": default_point(cfg),
                "reason": "untuned default: no search trial finished an evaluation"}
    finalists = finalist_summary(frame, choice=cfg.tune.finalist_choice,
                                 margin=cfg.tune.reproducibility_margin)
    ranked, stat, what = search, "score", "search score"
    if not finalists.empty:
        ranked = finalists.merge(search.drop(columns="default_point"), on="trial_id")
        stat, what = cfg.tune.finalist_choice, f"finalists' {cfg.tune.finalist_choice}"
    best, default = ranked.iloc[0], ranked[ranked["default_point"]]
    reason = f"best {what}"
    if len(default) and best[stat] < default.iloc[0][stat] + cfg.tune.min_improvement:
        if best["trial_id"] != default.iloc[0]["trial_id"]:
            reason = (f"untuned default: the best trial's lead ({what} {best[stat]:.4f} vs "
                      f"{default.iloc[0][stat]:.4f}) is under tune.min_improvement")
        best = default.iloc[0]
    choice = {"trial_id": best["trial_id"], "reason": reason,
              "params": {name: type_for(name)(best[name]) for name in cfg.space.searched()}}
    if not finalists.empty:
        choice["finalists"] = json.loads(finalists.to_json(orient="records"))
    return choice


def finalist_runs(cfg: AppConfig, path: str, left_s: float | None) -> list[dict[str, Any]]:
    """The re-runs of the finalist phase: the top ``tune.finalists`` search trials (at most
    ``tune.keep_checkpoints`` in a full-fidelity sweep, whose model is one of their search
    runs), each with ``tune.finalist_seeds`` new seeds. With a budget they may take at most
    half of the ``left_s`` seconds left (the final trial keeps the rest; a full-fidelity sweep
    has none, so all of it): seeds are cut first, then finalists, judged by how long the
    search's trials took; fewer than two finalists with one seed each are not worth running."""
    if not cfg.tune.finalists:
        return []
    search = summarize_trials(search_rows(read_trials(path)))
    search = search[search["score"].notna()]
    finalists, seeds = min(cfg.tune.finalists, len(search)), cfg.tune.finalist_seeds
    if cfg.tune.search_examples is None:  # the model is a search run: it must keep its weights
        finalists = min(finalists, cfg.tune.keep_checkpoints)
    if left_s is not None:  # half for a final trial; all of it when there is none
        share = left_s / 2 if cfg.tune.search_examples is not None else left_s
        fits = _runs_that_fit(cfg, path, share)
        while finalists * seeds > fits and seeds > 1:
            seeds -= 1
        finalists = min(finalists, fits // seeds)
    if finalists < 2:
        return []
    return [{**{name: type_for(name)(row[name]) for name in cfg.space.searched()},
             "seed": cfg.train.seed + offset, "finalist_of": row["trial_id"]}
            for _, row in search.head(finalists).iterrows() for offset in range(1, seeds + 1)]


def _runs_that_fit(cfg: AppConfig, path: str, seconds: float) -> int:
    """How many search-fidelity runs fit in ``seconds`` on the search's lanes, judged by the
    slowest completed search trial (a re-run sees the same data, so it takes as long)."""
    frame = search_rows(read_trials(path))
    took = frame.groupby("trial_id")["wall_time_s"].max().dropna()
    if took.empty:
        return 0
    return int(seconds // float(took.max())) * cfg.tune.max_concurrent_trials
