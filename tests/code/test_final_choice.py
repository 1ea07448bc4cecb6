"""Which configuration the final trial trains, decided from the search's results (no Ray run)."""

import pandas as pd
import pytest

from search.results import write_trials
from search.sweep import choose_final
from tests.conftest import tiny_config


def _search(tmp_path, default_score: float, best_score: float) -> str:
    rows = [
        {"trial_id": "dflt", "phase": "search", "default_point": True, "status": "TERMINATED",
         "epoch": 1.0, "examples": 64, "lr": 0.003, "frozen_depth": 0, "dropout": 0.0,
         "val_accuracy": default_score, "score": default_score},
        {"trial_id": "best", "phase": "search", "default_point": False, "status": "TERMINATED",
         "epoch": 1.0, "examples": 64, "lr": 0.001, "frozen_depth": 1, "dropout": 0.1,
         "val_accuracy": best_score, "score": best_score},
    ]
    write_trials(tmp_path, pd.DataFrame(rows))
    return str(tmp_path)


@pytest.mark.parametrize(("best_score", "chosen"), [(0.80, "best"), (0.795, "dflt"),
                                                    (0.70, "dflt")])
def test_a_trial_must_beat_the_default_by_the_margin_to_be_trained_in_full(
    tiny_model_dir, reviews_csv, tmp_path, best_score, chosen
):
    cfg = tiny_config(tiny_model_dir, reviews_csv, "tune.min_improvement=0.01",
                      "space.lr={low: 0.0005, high: 0.005, log: true, default: 0.003}",
                      "space.frozen_depth={low: 0, high: 2}")
    choice = choose_final(cfg, _search(tmp_path, default_score=0.788, best_score=best_score))
    assert choice["trial_id"] == chosen
    expected = {"best": {"lr": 0.001, "frozen_depth": 1}, "dflt": {"lr": 0.003,
                                                                   "frozen_depth": 0}}[chosen]
    assert choice["params"] == expected
    assert isinstance(choice["params"]["frozen_depth"], int)
