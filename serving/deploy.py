"""Start, update and stop the endpoint on Ray: the Python API under ``sftune serve``.

For the dashboard and ``sftune demo``::

    from serving.deploy import deploy, stop
    url = deploy("runs/best", cfg.serve)     # starts a server, or updates the running one
    stop(cfg.serve)                          # shuts it down

How a server lives. The process that starts Ray owns it (:mod:`serving.owner`): ``sftune serve``
in the foreground, or a background copy of it started by ``--detach``. The owner writes a small
state file per port (:mod:`serving.state`). A later ``deploy`` finds it, joins that Ray, and
redeploys under the same app name (:mod:`serving.ray_runtime`): Serve rolls the replicas over
with surge, so clients see no failed request. ``stop`` sends the owner SIGTERM, and the owner
shuts Serve and Ray down and removes its state file.

With ``address`` (a cluster from ``ray up`` or ``ray start --head``), the app is deployed into
that cluster, whose Serve controller outlives this process; ``stop`` then deletes the app.
"""

from __future__ import annotations

from pathlib import Path

from search.config import ServeConfig
from serving.owner import serve_forever, start_background, stop_owner
from serving.ray_runtime import delete_app, deploy_joined
from serving.resolve import ResolvedModel, as_resolved
from serving.serve_yaml import emit_config
from serving.state import ServeError, ServerState, read_state, url_for

__all__ = [
    "ServeError",
    "ServerState",
    "deploy",
    "emit_config",
    "promote",
    "read_state",
    "serve_forever",
    "start_background",
    "stop",
    "url_for",
]


def deploy(model: str | Path | ResolvedModel, cfg: ServeConfig, *,
           address: str | None = None) -> str:
    """Serve ``model`` and return its URL, updating a running server in place.

    Where it goes, first match wins: the cluster at ``address``; the Ray this process already
    joined; the ``sftune serve`` running on ``cfg.port`` (found by its state file); else a new
    background server (:func:`start_background`).
    """
    import ray

    resolved = as_resolved(model)
    if address or ray.is_initialized():
        return deploy_joined(resolved, cfg, address)
    state = read_state(cfg.port)
    if state is not None:
        return deploy_joined(resolved, cfg, state.address, state.auth_mode)
    return start_background(resolved, cfg)


def promote(model: str | Path | ResolvedModel, cfg: ServeConfig, *,
            address: str | None = None) -> str:
    """Swap ``model`` into the endpoint that already runs on ``cfg.port`` (or as ``cfg``'s app
    in the cluster at ``address``); never start one. A Ray this process joined for other work
    (a sweep's local Ray) is left first, so the model goes where the endpoint lives."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    if address:
        return deploy_joined(as_resolved(model), cfg, address)
    state = read_state(cfg.port)
    if state is None:
        raise ServeError(f"no sftune server of this machine runs on port {cfg.port}; an "
                         "endpoint in a cluster is updated with --address")
    return deploy_joined(as_resolved(model), cfg, state.address, state.auth_mode)


def stop(cfg: ServeConfig, *, address: str | None = None, timeout_s: float = 120.0) -> bool:
    """Stop the server on ``cfg.port`` (or delete the app from ``address``); False if none ran."""
    if address:
        return delete_app(cfg, address)
    return stop_owner(cfg, timeout_s=timeout_s)
