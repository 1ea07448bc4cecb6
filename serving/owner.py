"""The process that owns a server: it starts Ray (or joins a cluster), deploys, records its state
file, and on SIGINT or SIGTERM shuts Serve and its own Ray down. It runs in the foreground
(``sftune serve``: :func:`serve_forever`) or as a background copy (``--detach``:
:func:`start_background` runs ``python -m serving.daemon`` in its own session, log beside its
state file). Nothing runs ``ray stop``, which would kill every Ray of the user.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from search.config import ServeConfig
from serving import haproxy
from serving.ray_runtime import connect, deploy_here
from serving.resolve import ResolvedModel, as_resolved
from serving.state import (
    ServeError,
    ServerState,
    is_alive,
    read_state,
    remove_state,
    state_dir,
    write_state,
)

__all__ = ["serve_forever", "start_background", "stop_owner"]

#: Seconds a stopping server waits for Serve's own graceful shutdown before ending Ray.
SHUTDOWN_GRACE_S = 15.0


def _wait_for_signal() -> None:
    stop_event = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop_event.set())
    while not stop_event.wait(1.0):
        pass


def serve_forever(model: str | Path | ResolvedModel, cfg: ServeConfig, *,
                  address: str | None = None, on_ready=print) -> None:
    """Own a server: start Ray (or join ``address``), deploy, block until SIGINT or SIGTERM."""
    import ray

    resolved = as_resolved(model)
    if read_state(cfg.port) is not None:
        raise ServeError(f"an sftune server already runs on port {cfg.port}; "
                         "deploy() updates it in place, `sftune serve --stop` stops it")
    joined = connect(address, cfg)
    try:
        url = deploy_here(resolved, cfg)
        write_state(ServerState(
            pid=os.getpid(), address=ray.get_runtime_context().gcs_address, url=url,
            port=cfg.port, app_name=cfg.app_name, model_dir=str(resolved.model_dir),
            started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), log=os.environ.get("SFTUNE_LOG"),
            auth_mode=os.environ.get("RAY_AUTH_MODE"),
        ))
        on_ready(url)
        _wait_for_signal()
    finally:
        remove_state(cfg.port)
        _teardown(cfg, owned=joined and not address, joined=joined)


def _teardown(cfg: ServeConfig, *, owned: bool, joined: bool) -> None:
    import ray
    from ray import serve

    try:
        if not owned:
            serve.delete(cfg.app_name)  # a shared cluster keeps its other apps
        else:
            # Give in-flight requests a bounded grace; ray.shutdown below ends the rest anyway.
            graceful = threading.Thread(target=serve.shutdown, daemon=True)
            graceful.start()
            graceful.join(SHUTDOWN_GRACE_S)
    finally:
        if joined:
            ray.shutdown()
        if owned:
            haproxy.remove_private_dir()


def start_background(model: str | Path | ResolvedModel, cfg: ServeConfig, *,
                     timeout_s: float = 300.0) -> str:
    """Start a server that outlives this process (``--detach``); returns once it answers."""
    resolved = as_resolved(model)
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    spec = directory / f"serve-{cfg.port}.spec.json"
    spec.write_text(json.dumps({"model": {**asdict(resolved), "model_dir": str(resolved.model_dir)},
                                "serve": cfg.model_dump()}))
    log = directory / f"serve-{cfg.port}.log"
    with open(log, "ab") as out:
        # Own session: Ctrl-C in this terminal, or this process ending, does not reach it.
        child = subprocess.Popen(
            [sys.executable, "-m", "serving.daemon", str(spec)], stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "SFTUNE_LOG": str(log)},
        )
    return _wait_until_up(child, cfg, log, timeout_s)


def _wait_until_up(child: subprocess.Popen, cfg: ServeConfig, log: Path, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = read_state(cfg.port)
        if state is not None and state.pid == child.pid:
            return state.url
        if child.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            raise ServeError(f"the background server exited with {child.returncode}; "
                             f"log {log}:\n" + "\n".join(tail))
        time.sleep(0.5)
    child.terminate()
    raise ServeError(f"the background server did not come up within {timeout_s:.0f} s; see {log}")


def stop_owner(cfg: ServeConfig, *, timeout_s: float = 120.0) -> bool:
    """SIGTERM the owner of the server on ``cfg.port`` and wait for it; False if none ran."""
    state = read_state(cfg.port)
    if state is None:
        return False
    os.kill(state.pid, signal.SIGTERM)  # the owner shuts Serve and Ray down itself
    deadline = time.monotonic() + timeout_s
    while is_alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if is_alive(state.pid):
        raise ServeError(f"server pid {state.pid} did not stop within {timeout_s:.0f} s")
    remove_state(cfg.port)
    return True
