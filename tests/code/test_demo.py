"""`sftune demo` end to end: a real sweep, the best model behind Ray Serve, the dashboard, and a
browser that types a review into the dashboard and gets the served model's prediction."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _demo_config(tmp_path: Path, model_dir: Path, data: Path) -> Path:
    config = {
        "model": {"name": str(model_dir)},
        "data": {"source": str(data), "max_length": 16},
        "train": {"epochs": 2, "batch_size": 8},
        "space": {"alpha": 1, "lr": {"low": 0.001, "high": 0.004, "log": True},
                  "frozen_depth": {"low": 0, "high": 1}, "dropout": 0.0},
        "tune": {"num_samples": 2, "max_concurrent_trials": 2, "num_cpus": 2,
                 "storage_path": str(tmp_path / "runs")},
        "serve": {"port": _free_port(), "max_batch_size": 8, "max_ongoing_requests": 16,
                  "max_texts": 8},
        "dashboard": {"port": _free_port()},
    }
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _wait_for_line(proc: subprocess.Popen, log: Path, pattern: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = re.search(pattern, log.read_text(errors="replace"))
        if match:
            return match.group(1)
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"{pattern!r} not printed in {timeout_s} s:\n{log.read_text()[-3000:]}")


def _type_a_review(dashboard: str) -> str:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{dashboard}/?page=try", timeout=90_000)
            box = page.get_by_label("A review")
            box.wait_for(timeout=90_000)
            box.fill("a great fun movie")
            box.press("Enter")
            page.get_by_role("button", name="Predict", exact=True).click()
            metric = page.locator('[data-testid="stMetricValue"]').first
            metric.wait_for(timeout=90_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=90_000)  # probability bars
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "demo-try-the-model.png"), full_page=True)
            assert page.locator('[data-testid="stException"]').count() == 0
            return metric.inner_text()
        finally:
            browser.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed")
def test_demo_sweeps_serves_and_answers_a_typed_review(tiny_model_dir, reviews_csv, tmp_path):
    config = _demo_config(tmp_path, tiny_model_dir, reviews_csv)
    log = tmp_path / "demo.log"
    env = {**os.environ, "SFTUNE_STATE_DIR": str(tmp_path / "state")}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("sftune")), "demo", "--config", str(config),
             "--name", "demo"], stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
    try:
        serve_url = _wait_for_line(proc, log, r"serving:\s+(\S+)/predict", 300)
        dashboard = _wait_for_line(proc, log, r"sftune dashboard: (http://\S+)", 60)
        answer = requests.post(f"{serve_url}/predict", json={"text": "a great fun movie"},
                               timeout=30).json()
        label = answer["predictions"][0]["label"]
        assert label in {"neg", "pos"}
        shown = _type_a_review(dashboard)
        assert shown == label  # the dashboard shows the served model's answer
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the demo stops the dashboard and Serve
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{serve_url}/healthz", timeout=5)
