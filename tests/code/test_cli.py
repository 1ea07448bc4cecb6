import json
import subprocess
import sys
from pathlib import Path

import pytest

from search.cli import main
from tests.data.test_builtin import needs_assets

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "train" in out and "assets" in out


def test_version_names_the_installed_package(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"sftune {version('sftune')}"


def _two_sweeps(root: Path) -> None:
    from dashboard.synthetic import make_synthetic_sweep

    make_synthetic_sweep(root / "older", n_trials=4, epochs=2, seed=1)
    make_synthetic_sweep(root / "newer", n_trials=6, epochs=2, seed=2, status="running")


def test_list_shows_every_sweep_newest_first_as_a_table_and_as_json(tmp_path, capsys):
    _two_sweeps(tmp_path / "runs")
    assert main(["list", "--storage", str(tmp_path / "runs"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["newer", "older"]
    assert [r["trials"] for r in rows] == [6, 4] and rows[0]["status"] == "running"
    # The best trial's test accuracy, as `sftune best` recorded it (one point under its score
    # in the synthetic sweeps).
    assert all(r["test_accuracy"] == pytest.approx(r["best"] - 0.01, abs=1e-4) for r in rows)
    assert main(["list", "--storage", str(tmp_path / "runs")]) == 0
    table = capsys.readouterr().out
    assert table.index("newer") < table.index("older")
    assert main(["list", "--storage", str(tmp_path / "empty")]) == 0
    assert "no sweeps under" in capsys.readouterr().out


def test_results_json_is_the_sweep_and_one_row_per_trial(tmp_path, capsys):
    _two_sweeps(tmp_path / "runs")
    assert main(["results", "older", "--storage", str(tmp_path / "runs"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["sweep"]["name"] == "older" and len(record["trials"]) == 4
    scores = [t["score"] for t in record["trials"]]
    assert scores == sorted(scores, reverse=True)  # best first, as the table


def test_bad_override_is_a_clear_error_without_traceback(capsys):
    assert main(["train", "--set", "train.epochz=1"]) == 2
    err = capsys.readouterr().err
    assert "train.epochz: unknown key" in err
    assert "Traceback" not in err


def test_train_on_tiny_model_writes_checkpoint(tiny_model_dir, reviews_csv, tmp_path, capsys):
    code = main(["train", "--quiet", "--output", str(tmp_path / "out"),
                 "--set", f"model.name={tiny_model_dir}", "--set", f"data.source={reviews_csv}",
                 "--set", "data.max_length=16", "--set", "train.epochs=1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "val_accuracy" in out and "checkpoint:" in out
    assert (tmp_path / "out" / "best" / "model.safetensors").is_file()
    assert len(json.loads((tmp_path / "out" / "history.json").read_text())) == 1


@needs_assets
def test_sftune_train_smoke_config_end_to_end(tmp_path):
    """The real console script on configs/smoke.yaml with the built-in MiniLM and data."""
    sftune = Path(sys.executable).with_name("sftune")
    proc = subprocess.run(
        [str(sftune), "train", "--config", str(ROOT / "configs" / "smoke.yaml"), "--quiet",
         "--output", str(tmp_path / "smoke")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "best evaluation at epoch" in proc.stdout
    meta = json.loads((tmp_path / "smoke" / "best" / "sftune.json").read_text())
    assert meta["label_names"] == ["rotten", "fresh"]
