"""Which configuration the final trial trains, decided from the search's results (no Ray run)."""

import pandas as pd
import pytest

from search.budget import choose_final
from search.results import write_trials
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


def test_with_no_evaluated_search_trial_the_final_trains_the_default_point(
    tiny_model_dir, reviews_csv, tmp_path
):
    cfg = tiny_config(tiny_model_dir, reviews_csv,
                      "space.lr={low: 0.0005, high: 0.005, log: true, default: 0.003}")
    write_trials(tmp_path, pd.DataFrame([{"trial_id": "slow", "phase": "search",
                                          "status": "TERMINATED", "epoch": 0.0}]))
    choice = choose_final(cfg, str(tmp_path))
    assert choice["trial_id"] is None and choice["params"] == {"lr": 0.003}


def test_search_trials_stop_at_half_the_searchs_share_of_the_budget(tiny_model_dir,
                                                                    reviews_csv):
    from search.budget import search_setup
    from tests.conftest import tiny_data

    cfg = tiny_config(tiny_model_dir, reviews_csv, "tune.time_budget_s=100",
                      "tune.search_fraction=0.4", "tune.search_examples=64")
    search_cfg, small = search_setup(cfg, tiny_data(cfg))
    assert search_cfg.train.time_limit_s == pytest.approx(20.0)
    assert len(small.train) == 64 and search_cfg.train.epochs == 1
    unbudgeted, _ = search_setup(tiny_config(tiny_model_dir, reviews_csv,
                                             "tune.search_examples=64"), tiny_data(cfg))
    assert unbudgeted.train.time_limit_s is None


def test_the_gain_sentence_states_both_scores_and_the_points_between_them():
    from search.results import describe_gain

    text = describe_gain({"fidelity": "subset", "search_examples": 2000,
                          "tuned_accuracy": 0.79, "default_accuracy": 0.767,
                          "gain_accuracy": 0.023, "gain_f1_macro": -0.004})
    assert "+2.3 test accuracy points (0.7900 vs 0.7670" in text
    assert "-0.4 macro-F1 points" in text and "2,000 training examples" in text
