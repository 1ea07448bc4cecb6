"""The server-state registry: one small JSON file per port, written by the process that owns
the server (pid, Ray address, URL), so that a later ``sftune serve`` or ``deploy()`` finds it.

The files live under ``$SFTUNE_STATE_DIR`` (default ``~/.sftune/serve``). A file whose owner
died is dropped when read.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from search.atomic import write_json_atomically
from search.config import ServeConfig

__all__ = [
    "STATE_ENV",
    "ServeError",
    "ServerState",
    "is_alive",
    "read_state",
    "remove_state",
    "running_servers",
    "state_dir",
    "url_for",
    "write_state",
]

STATE_ENV = "SFTUNE_STATE_DIR"


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


def state_dir() -> Path:
    return Path(os.environ.get(STATE_ENV) or Path.home() / ".sftune" / "serve")


def _state_path(port: int) -> Path:
    return state_dir() / f"serve-{port}.json"


def is_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (an exited child that was never reaped does not)."""
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
    if not is_alive(state.pid):
        path.unlink(missing_ok=True)
        return None
    return state


def running_servers() -> list[ServerState]:
    """Every live server in this machine's registry, foreground or background, by port."""
    stems = (path.stem.removeprefix("serve-") for path in state_dir().glob("serve-*.json"))
    states = (read_state(int(stem)) for stem in stems if stem.isdigit())
    return sorted((s for s in states if s is not None), key=lambda s: s.port)


def write_state(state: ServerState) -> None:
    write_json_atomically(_state_path(state.port), asdict(state), indent=2)


def remove_state(port: int) -> None:
    _state_path(port).unlink(missing_ok=True)
