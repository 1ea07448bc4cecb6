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


def _with_wall_times(tmp_path, seconds: float, trials: int = 4) -> str:
    rows = [{"trial_id": f"t{i}", "phase": "search", "default_point": i == 0,
             "status": "TERMINATED", "epoch": 1.0, "examples": 64, "lr": 0.001 * (i + 1),
             "val_accuracy": 0.8 - 0.01 * i, "score": 0.8 - 0.01 * i, "wall_time_s": seconds}
            for i in range(trials)]
    write_trials(tmp_path, pd.DataFrame(rows))
    return str(tmp_path)


@pytest.mark.parametrize(("left_s", "finalists", "seeds"), [
    (None, 3, 2),   # no budget: all of them
    (480, 3, 2),    # half of 480 s = 240 s: 4 waves of 60 s x 2 lanes = 8 runs >= 6
    (300, 3, 1),    # 150 s: 2 waves x 2 lanes = 4 runs: one seed each for the 3
    (180, 2, 1),    # 90 s: 1 wave x 2 lanes = 2 runs: the top 2, one seed each
    (100, 0, 0),    # 50 s: not one run fits: no finalists
])
def test_finalists_take_at_most_half_of_what_the_search_left(
    tiny_model_dir, reviews_csv, tmp_path, left_s, finalists, seeds
):
    from search.budget import finalist_runs

    cfg = tiny_config(tiny_model_dir, reviews_csv, "tune.search_examples=64",
                      "tune.finalists=3", "tune.finalist_seeds=2",
                      "tune.max_concurrent_trials=2",
                      "space.lr={low: 0.0005, high: 0.005, log: true}")
    runs = finalist_runs(cfg, _with_wall_times(tmp_path, seconds=60.0), left_s)
    assert len({r["finalist_of"] for r in runs}) == finalists
    assert len(runs) == finalists * seeds
    assert [r["finalist_of"] for r in runs[::max(seeds, 1)]] == ["t0", "t1", "t2"][:finalists]
    assert all(r["seed"] in range(1, seeds + 1) and r["lr"] > 0 for r in runs)


def test_a_full_fidelity_sweeps_finalists_keep_their_checkpoints_and_all_the_time_left(
    tiny_model_dir, reviews_csv, tmp_path
):
    from search.budget import finalist_runs

    # No search_examples: the model is a finalist's own search run, so only trials that keep
    # their checkpoints qualify, and with no final trial to come they may use all the time left.
    cfg = tiny_config(tiny_model_dir, reviews_csv, "tune.finalists=3", "tune.finalist_seeds=1",
                      "tune.keep_checkpoints=2", "tune.max_concurrent_trials=2",
                      "space.lr={low: 0.0005, high: 0.005, log: true}")
    runs = finalist_runs(cfg, _with_wall_times(tmp_path, seconds=60.0), left_s=70)
    assert [r["finalist_of"] for r in runs] == ["t0", "t1"]


def test_the_choice_follows_the_finalists_mean_or_lower_bound(tiny_model_dir, reviews_csv,
                                                             tmp_path):
    # "lucky" won the search by a hair; its re-runs fall short. "steady" reproduces.
    rows = [
        {"trial_id": "lucky", "score": 0.86}, {"trial_id": "steady", "score": 0.85},
        {"trial_id": "l1", "finalist_of": "lucky", "seed": 1, "score": 0.80},
        {"trial_id": "l2", "finalist_of": "lucky", "seed": 2, "score": 0.81},
        {"trial_id": "s1", "finalist_of": "steady", "seed": 1, "score": 0.84},
        {"trial_id": "s2", "finalist_of": "steady", "seed": 2, "score": 0.85},
    ]
    frame = pd.DataFrame([{**r, "phase": "finalist" if "seed" in r else "search",
                           "default_point": False, "status": "TERMINATED", "epoch": 1.0,
                           "examples": 64, "lr": 0.001 if r["trial_id"][0] == "l" else 0.002,
                           "val_accuracy": r["score"]} for r in rows])
    write_trials(tmp_path, frame)
    for rule in ("mean", "lcb"):
        cfg = tiny_config(tiny_model_dir, reviews_csv, f"tune.finalist_choice={rule}",
                          "space.lr={low: 0.0005, high: 0.005, log: true}")
        choice = choose_final(cfg, str(tmp_path))
        assert choice["trial_id"] == "steady" and choice["params"] == {"lr": 0.002}
        by_id = {f["trial_id"]: f for f in choice["finalists"]}
        assert by_id["lucky"]["mean"] == pytest.approx((0.86 + 0.80 + 0.81) / 3)
        assert not by_id["lucky"]["reproducible"] and by_id["steady"]["reproducible"]


def test_no_tuning_gain_when_the_chosen_search_trial_has_no_checkpoint(tiny_model_dir,
                                                                     reviews_csv, tmp_path):
    # A search trial whose last evaluation came as the search's time ran out has a score but no
    # checkpoint (Tune stopped it first): the export must not fail on it (a debates benchmark
    # run did, before this), and nothing is evaluated.
    from search.best import tuning_gain
    from search.results import write_sweep_meta

    kept = tmp_path / "default-checkpoint"
    kept.mkdir()
    rows = [{"trial_id": "dflt", "default_point": True, "score": 0.60, "checkpoint": str(kept)},
            {"trial_id": "late", "default_point": False, "score": 0.65, "checkpoint": None}]
    write_trials(tmp_path, pd.DataFrame([{**r, "phase": "search", "status": "TERMINATED",
                                          "epoch": 0.3, "examples": 256, "lr": 0.001,
                                          "val_accuracy": r["score"]} for r in rows]))
    write_sweep_meta(tmp_path, {"name": "t", "final_source": {"trial_id": "late"}})
    cfg = tiny_config(tiny_model_dir, reviews_csv)
    assert tuning_gain(str(tmp_path), cfg) is None


def test_what_tuning_bought_compares_the_transformers_without_the_lexical_layer(
    tiny_model_dir, reviews_csv, tmp_path
):
    # A full-fidelity sweep exports its chosen search trial, whose recorded test figures then
    # include its lexical layer; a later `sftune best` must still compare the two transformers.
    from search.best import tuning_gain
    from search.results import write_sweep_meta

    rows = []
    for trial_id, default in (("dflt", True), ("tuned", False)):
        (tmp_path / trial_id).mkdir()
        rows.append({"trial_id": trial_id, "default_point": default, "checkpoint":
                     str(tmp_path / trial_id), "score": 0.7 if default else 0.8})
    write_trials(tmp_path, pd.DataFrame([{**r, "phase": "search", "status": "TERMINATED",
                                          "epoch": 1.0, "examples": 64, "lr": 0.001,
                                          "val_accuracy": r["score"]} for r in rows]))
    plain = {"test_accuracy": 0.70, "test_f1_macro": 0.68}
    fused = {"test_accuracy": 0.90, "test_f1_macro": 0.89, "lexical_weight": 0.65,
             "test_accuracy_model_only": 0.75, "test_f1_macro_model_only": 0.74}
    write_sweep_meta(tmp_path, {"name": "t", "test": {"dflt": plain, "tuned": fused}})
    gain = tuning_gain(str(tmp_path), tiny_config(tiny_model_dir, reviews_csv))
    assert gain["tuned_accuracy"] == 0.75 and gain["default_accuracy"] == 0.70
    assert gain["gain_accuracy"] == pytest.approx(0.05)
    assert gain["gain_f1_macro"] == pytest.approx(0.06)
