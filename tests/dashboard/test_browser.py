"""A real browser on the real dashboard: `sftune dashboard` serving a real tiny sweep, driven by
Debian's headless Chromium through Playwright. Screenshots land in test-artifacts/."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# Streamlit renders over a websocket after the page loads; on a busy 2-core box that takes a while.
WAIT_MS = 90_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"`sftune dashboard` exited with {proc.returncode}")
        try:
            if requests.get(f"{url}/_stcore/health", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the dashboard at {url} did not come up in {timeout_s} s")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the CLI and its streamlit child: they share the session this test started."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def dashboard_url(real_sweep, tmp_path_factory):
    port = _free_port()
    log = (tmp_path_factory.mktemp("dashboard-log") / "streamlit.log").open("w")
    sftune = Path(sys.executable).with_name("sftune")
    proc = subprocess.Popen(
        [str(sftune), "dashboard", "--storage", str(real_sweep.parent), "--port", str(port),
         "--serve-url", f"http://127.0.0.1:{_free_port()}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        _stop(proc)
        log.close()


def _open(browser, url: str, selector: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.wait_for_selector(selector, timeout=WAIT_MS)
    page.wait_for_load_state("networkidle")
    return page


def _assert_clean(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at "
                    "/usr/bin/chromium (apt-get install -y chromium; .ci/run installs it)")
def test_browser_renders_the_trial_table_and_plots_without_errors(dashboard_url):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = _open(browser, f"{dashboard_url}/?page=overview&sweep=tiny-real",
                         '[data-testid="stDataFrame"]')
            page.wait_for_selector("text=Best trial:", timeout=WAIT_MS)
            _assert_clean(page)
            assert page.get_by_text("Sweep tiny-real").count() >= 1
            page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)
            page = _open(browser, f"{dashboard_url}/?page=hyperparameters&sweep=tiny-real",
                         ".js-plotly-plot .parcoords")
            _assert_clean(page)
            page.screenshot(path=str(ARTIFACTS / "dashboard-hyperparameters.png"),
                            full_page=True)
        finally:
            browser.close()
