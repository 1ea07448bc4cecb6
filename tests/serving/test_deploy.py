"""The server lifecycle's pure parts: state files, liveness, the local Ray's environment."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.config import ServeConfig
from serving import deploy, haproxy, state


@pytest.fixture(autouse=True)
def _state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SFTUNE_STATE_DIR", str(tmp_path))


def test_state_of_a_dead_owner_is_dropped(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    record = {"pid": child.pid, "address": "127.0.0.1:1", "url": "http://127.0.0.1:9",
              "port": 9, "app_name": "sftune", "model_dir": "/m", "started_at": "now"}
    (tmp_path / "serve-9.json").write_text(json.dumps(record))
    assert state.read_state(9) is None
    assert not (tmp_path / "serve-9.json").exists()
    assert deploy.stop(ServeConfig(port=9)) is False


def test_an_exited_child_server_is_not_alive_though_unreaped():
    # What a long-lived caller (dashboard, demo, bench) sees after its background server exits:
    # a zombie, which still answers kill(pid, 0).
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    time.sleep(1.0)
    assert not state.is_alive(child.pid)
    assert state.is_alive(os.getpid())


def test_haproxy_ingress_gets_its_own_ports_and_short_drain(monkeypatch, tmp_path):
    fake = tmp_path / "haproxy-bin"
    monkeypatch.setattr(haproxy, "binary", lambda: str(fake))
    env = haproxy.ingress_env(ServeConfig(request_timeout_s=12))  # HAProxy is the default
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_HAPROXY_STATS_PORT"] != env["RAY_SERVE_HAPROXY_METRICS_PORT"]
    assert int(env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"]) < 30
    assert env["RAY_SERVE_HAPROXY_TIMEOUT_SERVER_S"] == "17"
    # HAProxy's admin socket is mode 666: its directory must keep other users out
    socket_dir = Path(env["RAY_SERVE_HAPROXY_SOCKET_PATH"]).parent
    assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
    assert not env["RAY_SERVE_HAPROXY_SOCKET_PATH"].startswith("/tmp/haproxy-serve")
    for key in ("CONFIG_FILE_LOC", "METRICS_SOCKET_PATH", "SERVER_STATE_FILE", "BINARY_PATH"):
        assert Path(env[f"RAY_SERVE_HAPROXY_{key}"]).parent == socket_dir
    for key in ("SOCKET_PATH", "METRICS_SOCKET_PATH"):  # Ray adds "/<56-char node id>"
        assert len(env[f"RAY_SERVE_HAPROXY_{key}"]) + 57 <= 96  # HAProxy's socket path cap
    assert haproxy.ingress_env(ServeConfig(ingress="proxy")) == {}
    monkeypatch.setenv("RAY_SERVE_HAPROXY_SERVER_STATE_BASE", str(socket_dir))
    haproxy.remove_private_dir()  # what the owner does once its Ray is down
    assert not socket_dir.exists()
    monkeypatch.setattr(haproxy, "binary", lambda: None)
    assert haproxy.ingress_env(ServeConfig()) == {}  # no binary: the Python proxy


def test_haproxy_wrapper_moves_port_only_binds_to_loopback(tmp_path):
    # A stand-in HAProxy that prints its arguments and the config it was given.
    fake = tmp_path / "fake haproxy"
    fake.write_text('#!/bin/sh\necho "$@"\nwhile [ "$1" != -f ]; do shift; done; cat "$2"\n')
    fake.chmod(0o700)
    config = tmp_path / "haproxy.cfg"
    config.write_text("frontend prometheus\n    bind :9101\nfrontend http_frontend\n"
                      "    bind 0.0.0.0:8000\n    bind :::8001\nlisten stats\n  bind *:8404\n")
    wrapper = haproxy.loopback_wrapper(str(fake), str(tmp_path))
    assert stat.S_IMODE(os.stat(wrapper).st_mode) == 0o700
    out = subprocess.run([wrapper, "-db", "-f", str(config), "-sf", "12"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out[0] == f"-db -f {config}.loopback -sf 12"  # same arguments, the copy's path
    assert out[1:] == ["frontend prometheus", "    bind 127.0.0.1:9101", "frontend http_frontend",
                       "    bind 0.0.0.0:8000", "    bind :::8001", "listen stats",
                       "  bind 127.0.0.1:8404"]
    assert "bind :9101" in config.read_text()  # Ray's own file is left as Ray wrote it


def test_wildcard_bind_is_reached_over_loopback():
    assert state.url_for(ServeConfig(host="0.0.0.0", port=8123)) == "http://127.0.0.1:8123"
    assert state.url_for(ServeConfig(port=8124)) == "http://127.0.0.1:8124"
