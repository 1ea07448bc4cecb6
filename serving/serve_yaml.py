"""A Serve config YAML for ``serve deploy`` or ``serve run`` on a cluster (``sftune serve
--emit-config``)."""

from __future__ import annotations

from pathlib import Path

from search.config import ServeConfig
from serving.ray_runtime import SERVE_LOGGING, app_args, http_options
from serving.resolve import ResolvedModel, as_resolved

__all__ = ["emit_config"]

#: Settings of the Ray cluster or its http_options, not of the app: kept out of the app's args.
_CLUSTER_KEYS = ("host", "port", "request_timeout_s", "ingress")


def emit_config(model: str | Path | ResolvedModel, cfg: ServeConfig, path: Path) -> Path:
    """Write a Serve config YAML with the host explicit.

    The YAML names the key's environment variable, never the key: the builder reads it where
    the app is built, so the variable must be set there. The ingress (HAProxy or Python proxy)
    is the target cluster's own setting (``RAY_SERVE_ENABLE_HA_PROXY`` where Ray starts).
    """
    import yaml

    args = {k: v for k, v in app_args(as_resolved(model), cfg).items()
            if v is not None and k not in _CLUSTER_KEYS}
    config = {
        "proxy_location": "EveryNode",
        "http_options": http_options(cfg),
        "logging_config": SERVE_LOGGING,
        "applications": [{"name": cfg.app_name, "route_prefix": "/",
                          "import_path": "serving.app:build_app", "args": args}],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
