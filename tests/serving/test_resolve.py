"""NAME / --trial / --model to a checkpoint, through the results format."""

from __future__ import annotations

import pytest

from search.artifacts import CheckpointError
from search.results import ResultsError
from serving.resolve import resolve_model
from tests.serving.conftest import write_sweep


def _row(trial_id, epoch, score, checkpoint):
    return {"trial_id": trial_id, "status": "TERMINATED", "epoch": epoch, "val_accuracy": score,
            "score": score, "checkpoint": str(checkpoint) if checkpoint else None}


@pytest.fixture()
def storage(tmp_path, checkpoints):
    rows = [
        _row("A", 1, 0.60, checkpoints["A"]), _row("A", 2, 0.55, None),  # best epoch is 1
        _row("B", 1, 0.58, checkpoints["B"]),
        _row("C", 1, 0.70, tmp_path / "deleted"),  # best score, but its checkpoint was pruned
    ]
    write_sweep(tmp_path, "sw", rows, test={"B": {"test_accuracy": 0.61}})
    write_sweep(tmp_path, "ok", rows[:3])
    return tmp_path


def test_name_serves_the_best_trial_by_its_best_epoch(storage, checkpoints):
    model = resolve_model(name="ok", storage_path=str(storage))
    assert (model.model_dir, model.trial_id, model.source) == (checkpoints["A"], "A", "ok")


def test_trial_promotes_another_with_its_recorded_test_metrics(storage, checkpoints):
    model = resolve_model(name="sw", trial="B", storage_path=str(storage))
    assert model.model_dir == checkpoints["B"]
    assert model.test_metrics == {"test_accuracy": 0.61}


def test_trial_alone_must_be_in_exactly_one_sweep(storage):
    with pytest.raises(ResultsError, match="several sweeps"):
        resolve_model(trial="B", storage_path=str(storage))
    with pytest.raises(ResultsError, match="no sweep"):
        resolve_model(trial="Z", storage_path=str(storage))


def test_clear_errors_for_pruned_checkpoint_unknown_trial_and_sweep(storage):
    with pytest.raises(ResultsError, match="no checkpoint left"):
        resolve_model(name="sw", storage_path=str(storage))
    with pytest.raises(ResultsError, match="no trial 'Z' in sweep sw") as caught:
        resolve_model(name="sw", trial="Z", storage_path=str(storage))
    assert all(trial in str(caught.value) for trial in ("A", "B", "C"))
    with pytest.raises(ResultsError, match="no sweep 'nope'.*sw"):
        resolve_model(name="nope", storage_path=str(storage))


def test_model_dir_is_served_as_is(checkpoints, tmp_path):
    model = resolve_model(model=str(checkpoints["B"]))
    assert model.model_dir == checkpoints["B"] and model.trial_id == "B"
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_model(model=str(tmp_path / "missing"))
    with pytest.raises(ResultsError, match="not both"):
        resolve_model(name="sw", model=str(checkpoints["B"]))
