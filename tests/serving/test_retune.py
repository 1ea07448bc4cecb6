"""`sftune retune` as a user runs it, every step a real subprocess: a sweep, its model served in
the background, then new labelled data. A better model is promoted to the running endpoint, a
worse one is refused, and the endpoint's ``/model`` says which model serves after each."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import requests

from tests.conftest import make_reviews
from tests.serving.conftest import free_port
from tests.serving.test_detach import _kill_group

pytestmark = pytest.mark.slow


def sftune(*args: str, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "search.cli", *args], env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    return done


@pytest.fixture()
def env(tmp_path):
    env = {**os.environ, "SFTUNE_STATE_DIR": str(tmp_path / "state")}
    yield env
    for path in (tmp_path / "state").glob("serve-*.json"):
        if not path.name.endswith(".spec.json"):
            _kill_group(json.loads(path.read_text())["pid"])


def _meta(storage, name: str) -> dict:
    return json.loads((storage / name / "sftune" / "sweep.json").read_text())


def test_retune_promotes_a_better_model_and_refuses_a_worse_one(env, tiny_model_dir, tmp_path,
                                                               capsys):
    from search.cli import main

    storage, port = tmp_path / "runs", free_port()
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    first = make_reviews(30, seed=1)
    first.to_csv(old, index=False)
    # The new data: the old rows and many new ones (a later export of the same source).
    pd.concat([first, make_reviews(270, seed=2)]).to_csv(new, index=False)
    common = [f"model.name={tiny_model_dir}", "data.max_length=16", "train.batch_size=8",
              "train.epochs=1", "tune.num_samples=2", "tune.finalists=0", "space.alpha=1",
              "space.frozen_depth=0", "space.weight_decay=0.01", "space.joint_epochs=0",
              "space.dropout={low: 0.0, high: 0.1}", f"tune.storage_path={storage}",
              f"serve.port={port}", "serve.replicas=1",
              # The toy label is one word: a lexical layer would make every model perfect, and
              # this test is about the decision between two transformers.
              "train.lexical=off"]
    # The served model learnt next to nothing: a tiny lr, a random head, 30 rows.
    poor = ["train.head_init=random", "space.lr={low: 1e-7, high: 2e-7, log: true}"]
    sweep = ["sweep", *[a for s in [*common, f"data.source={old}", *poor] for a in ("--set", s)]]
    sftune(*sweep, "--name", "v1", env=env)
    sftune("serve", "v1", "--detach", "--storage", str(storage), "--port", str(port),
           "--replicas", "1", env=env)
    url = f"http://127.0.0.1:{port}"
    served = requests.get(f"{url}/model", timeout=10).json()
    assert served["trial_id"] == _meta(storage, "v1")["best"]["trial_id"]

    # New data and a space that can learn: the new model wins and replaces the served one.
    better = sftune("retune", "v1", "--storage", str(storage), "--new-name", "v2",
                    "--set", f"data.source={new}", "--set", "train.head_init=probe",
                    "--set", "train.epochs=3",
                    "--set", "space.lr={low: 0.002, high: 0.005, log: true}", env=env)
    decision = _meta(storage, "v2")["retune"]
    assert decision["promote"] and decision["lead"] > decision["margin"] == 0.01, better.stdout
    assert decision["candidate"]["accuracy"] > decision["served"]["accuracy"]
    # Only test rows the served model never trained or was selected on are scored.
    assert 0 < decision["held_out_rows"] < decision["test_rows"]
    now = requests.get(f"{url}/model", timeout=10).json()
    assert now["trial_id"] == decision["candidate"]["trial_id"] != served["trial_id"]
    assert decision["promoted_to"]["model_id"] == now["model_id"]
    assert "promoted" in better.stdout
    # The new sweep started from the old one: its configurations first (the data changed).
    lineage = _meta(storage, "v2")["warm_start"]
    assert lineage["from"] == "v1" and lineage["mode"] == "prior"

    # A worse model (back to the tiny lr and a random head) is refused: the endpoint keeps v2's.
    worse = sftune("retune", "v2", "--storage", str(storage), "--new-name", "v3",
                   *[a for s in [*poor, "train.epochs=1"] for a in ("--set", s)], env=env)
    decision = _meta(storage, "v3")["retune"]
    assert not decision["promote"] and decision["lead"] < 0, worse.stdout
    assert requests.get(f"{url}/model", timeout=10).json()["model_id"] == now["model_id"]
    assert "kept the served model" in worse.stdout and decision["promoted_to"] is None
    assert main(["results", "v3", "--storage", str(storage)]) == 0
    shown = capsys.readouterr().out
    assert "re-tune of v2: the served model was kept" in shown
    assert "warm-started from v2" in shown
