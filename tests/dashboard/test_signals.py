"""`sftune dashboard` under a process supervisor: SIGTERM to the CLI (not to its process group)
ends its Streamlit child too, and the port is free again."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.dashboard.test_browser import _free_port, _stop, _wait_healthy

pytestmark = pytest.mark.slow


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_sigterm_to_the_cli_stops_the_streamlit_child_and_frees_the_port(tmp_path):
    port = _free_port()
    sftune = Path(sys.executable).with_name("sftune")
    proc = subprocess.Popen(
        [str(sftune), "dashboard", "--storage", str(tmp_path), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "the dashboard runs Streamlit as a child process"
        proc.send_signal(signal.SIGTERM)  # to the CLI alone, as a supervisor does
        assert proc.wait(timeout=30) in (0, 128 + signal.SIGTERM)
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"left running: {alive}"
        deadline = time.monotonic() + 10
        while not _port_free(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _port_free(port)
    finally:
        _stop(proc)
