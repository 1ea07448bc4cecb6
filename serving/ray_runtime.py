"""Joining Ray and deploying the app on it: a local Ray this process starts (with the HAProxy
ingress), or a cluster's at ``address``; deploy or update in place, or delete the app."""

from __future__ import annotations

import logging
import os
from typing import Any

from search.config import ServeConfig
from serving import haproxy
from serving.resolve import ResolvedModel
from serving.sizing import replica_count
from serving.state import url_for

__all__ = ["SERVE_LOGGING", "app_args", "connect", "delete_app", "deploy_here", "http_options"]

#: Ray's object store holds only request batches here; a small one saves memory on small hosts.
OBJECT_STORE_BYTES = 200 * 1024**2
SERVE_LOGGING = {"log_level": "WARNING", "enable_access_log": False}


def app_args(model: ResolvedModel, cfg: ServeConfig) -> dict[str, Any]:
    """The arguments of :func:`serving.app.build_app` for ``model`` under ``cfg``."""
    return {**cfg.model_dump(), "model": str(model.model_dir), "source": model.source,
            "test_metrics": model.test_metrics}


def http_options(cfg: ServeConfig) -> dict[str, Any]:
    # Set explicitly: Serve's own default host differs between its Python API and YAML configs,
    # and its request timeout defaults to none (a stuck request would hang its client).
    return {"host": cfg.host, "port": cfg.port, "request_timeout_s": cfg.request_timeout_s}


def _local_cpus(cfg: ServeConfig) -> int:
    # Logical CPUs, not threads: room for every replica twice over, because a model swap starts
    # the new replicas before it stops the old ones.
    replicas = cfg.max_replicas if cfg.autoscaling else replica_count(cfg)
    return max(os.cpu_count() or 1, int(2 * replicas * cfg.cpus_per_replica + 0.999))


def connect(address: str | None, cfg: ServeConfig, auth_mode: str | None = None) -> bool:
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
        os.environ.update(haproxy.ingress_env(cfg))  # before ray.init: its processes inherit it
        # No dashboard: the endpoint does not need it, and it costs ~0.3 GB and CPU at idle.
        # "local": a Ray of its own, never one a `ray start` on this machine left behind.
        ray.init(address="local", num_cpus=_local_cpus(cfg), include_dashboard=False,
                 object_store_memory=OBJECT_STORE_BYTES, **quiet)
    return True


def deploy_here(model: ResolvedModel, cfg: ServeConfig) -> str:
    """Deploy, or update in place, on the Ray this process has joined; returns the URL."""
    from ray import serve

    from serving.app import build_app

    serve.start(http_options=http_options(cfg), logging_config=SERVE_LOGGING)
    serve.run(build_app(app_args(model, cfg)), name=cfg.app_name, route_prefix="/",
              logging_config=SERVE_LOGGING)
    return url_for(cfg)


def deploy_joined(model: ResolvedModel, cfg: ServeConfig, address: str | None,
                  auth_mode: str | None = None) -> str:
    """Join ``address`` (or the Ray already joined), deploy, then leave it serving."""
    import ray

    joined = connect(address, cfg, auth_mode)
    try:
        return deploy_here(model, cfg)
    finally:
        if joined:
            ray.shutdown()  # only disconnects this driver; the cluster keeps serving


def delete_app(cfg: ServeConfig, address: str) -> bool:
    """Delete the app from the cluster at ``address``; False if it was not there."""
    import ray
    from ray import serve

    joined = connect(address, cfg)
    try:
        present = cfg.app_name in serve.status().applications
        if present:
            serve.delete(cfg.app_name)
        return present
    finally:
        if joined:
            ray.shutdown()
