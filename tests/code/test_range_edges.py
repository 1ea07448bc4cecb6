"""The edge of the range: when the best trials sit at a bound of a searched range, sftune says
so and prints the widened range to try."""

from __future__ import annotations

import json

import pytest

from search.cli import main
from search.config import SpaceConfig
from search.space import edge_of_range
from tests.dashboard import builders

SPACE = SpaceConfig.model_validate({
    "alpha": {"low": 30, "high": 3000, "log": True}, "lr": {"low": 6e-5, "high": 2.5e-4,
                                                            "log": True},
    "frozen_depth": {"low": 0, "high": 2}, "weight_decay": {"low": 0.0, "high": 0.1},
    "dropout": {"low": 0.0, "high": 0.2}})


def _point(**values):
    return {"alpha": 300.0, "lr": 1.2e-4, "frozen_depth": 1, "weight_decay": 0.05,
            "dropout": 0.1, **values}


def test_a_best_value_at_a_bound_is_flagged_with_a_widened_range():
    best = _point(lr=2.45e-4, alpha=31.0, dropout=0.0, frozen_depth=0)
    top = [best, _point(lr=2.4e-4), _point(lr=9e-5)]
    found = {f["param"]: f for f in edge_of_range(SPACE, best, top)}
    # Dropout 0 and frozen depth 0 are hard limits: nothing to widen past, so no finding.
    assert set(found) == {"lr", "alpha"}
    lr = found["lr"]
    assert (lr["bound"], lr["top_near"], lr["top"]) == ("high", 2, 3)
    # The bound moves out by half the log width: 2.5e-4 * sqrt(2.5e-4 / 6e-5).
    assert lr["suggest"] == {"low": 6e-5, "high": pytest.approx(2.5e-4 * (2.5e-4 / 6e-5) ** 0.5)}
    assert "space.lr={low: 6e-05, high: 0.00051, log: true}" in lr["message"]
    assert found["alpha"]["bound"] == "low" and found["alpha"]["suggest"]["low"] == \
        pytest.approx(3.0)


def test_best_values_inside_the_range_and_linear_walls_give_nothing():
    assert edge_of_range(SPACE, _point(), [_point()]) == []
    # weight decay at its top (0.1) widens linearly by half the width; at 0 it is a wall.
    [finding] = edge_of_range(SPACE, _point(weight_decay=0.1), [_point(weight_decay=0.1)])
    assert finding["suggest"] == {"low": 0.0, "high": pytest.approx(0.15)}
    assert edge_of_range(SPACE, _point(weight_decay=0.0), [_point()]) == []


def test_results_print_the_edge_for_a_rigged_sweep(tmp_path, capsys):
    builders.write_edge(tmp_path)
    assert main(["results", "edge", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "edge of range: lr: the best trial's 0.00029 sits at the high end of [2e-05, " \
           "0.0003] (2 of the top 3 trials in its outer tenth)" in out
    assert "dropout" not in out.split("edge of range")[1]  # 0 is a wall, not an edge
    # The follow-up: the widened range, warm-started from this sweep (its trials are history).
    assert "sftune sweep --warm-start edge --set 'space.lr={low: 2e-05, high: 0.00116, " \
           "log: true}'" in out
    assert main(["results", "edge", "--storage", str(tmp_path), "--json"]) == 0
    [edge] = json.loads(capsys.readouterr().out)["range_edges"]
    assert edge["param"] == "lr" and edge["bound"] == "high"
