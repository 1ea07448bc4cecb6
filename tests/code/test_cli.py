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
