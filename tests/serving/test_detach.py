"""`sftune serve` as a user runs it: --detach, auth over HTTP, update in place, --stop.

Each command is a real subprocess; the background server owns its own Ray. Whatever happens,
the fixture kills what it started, by process group (the server is a session leader).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.serving.conftest import free_port

pytestmark = pytest.mark.slow
KEY = "detach-test-key-0123456789abcdef"


def sftune(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", "serve", *args], env=env,
                          capture_output=True, text=True, timeout=240)


def _kill_group(pid: int) -> None:
    """SIGTERM the group, then SIGKILL whatever of it is left after 5 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                os.killpg(pid, 0)  # is any of the group still alive?
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.fixture()
def env(tmp_path):
    env = {**os.environ, "SFTUNE_STATE_DIR": str(tmp_path / "state"), "SFTUNE_KEY": KEY}
    yield env
    state = tmp_path / "state"
    for path in state.glob("serve-*.json"):
        if not path.name.endswith(".spec.json"):
            _kill_group(json.loads(path.read_text())["pid"])


def test_detach_auth_update_in_place_and_stop(env, checkpoints, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    common = ["--port", str(port), "--api-key-env", "SFTUNE_KEY"]
    started = sftune("--model", str(checkpoints["A"]), "--detach", *common, env=env)
    assert started.returncode == 0, started.stderr[-2000:]
    assert url in started.stdout
    good = {"Authorization": f"Bearer {KEY}"}
    assert requests.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
    assert requests.get(f"{url}/model", timeout=10).status_code == 401
    assert requests.post(f"{url}/predict", json={"text": "good"}, timeout=10,
                         headers={"Authorization": "Bearer not-the-key-0123456789"}
                         ).status_code == 401
    assert requests.get(f"{url}/model", headers=good, timeout=10).json()["trial_id"] == "A"

    updated = sftune("--model", str(checkpoints["B"]), *common, env=env)
    assert updated.returncode == 0, updated.stderr[-2000:]
    assert "in place" in updated.stdout
    assert requests.get(f"{url}/model", headers=good, timeout=10).json()["trial_id"] == "B"

    state_file = tmp_path / "state" / f"serve-{port}.json"
    pid = int(json.loads(state_file.read_text())["pid"])
    stopped = sftune("--stop", "--port", str(port), env=env)
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert not state_file.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/healthz", timeout=5)
