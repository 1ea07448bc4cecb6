"""A real multi-node Ray cluster on this machine for the cluster tests: a head and worker nodes,
each started with ``ray start --block`` as its own process (its own raylet, object store and
resources), bound to 127.0.0.1, and stopped by pid. The head runs the Jobs API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

#: Node death is noticed in about 3 s instead of Ray's default 15-25 s.
FAST_HEALTH_CHECKS = {"health_check_initial_delay_ms": 1000, "health_check_period_ms": 1000,
                      "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _node_ports() -> list[str]:
    """Ports each node's agents would otherwise share (two nodes on one machine clash)."""
    return [f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"]


@dataclass
class Node:
    """One ``ray start --block`` process; its raylet and agents are its children."""

    name: str
    proc: subprocess.Popen
    log: Path

    def raylet(self) -> psutil.Process:
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            if child.name() == "raylet":
                return child
        raise LookupError(f"no raylet under pid {self.proc.pid}; log: {self.log}")

    def stop(self) -> None:
        family = [self.proc]
        try:
            family = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(
                recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        for process in family:
            try:
                process.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                continue
        _, alive = psutil.wait_procs(family, timeout=15)
        for process in alive:
            process.kill()
        self.proc.wait(timeout=15)


@dataclass
class LocalCluster:
    """A head (no CPUs: it trains nothing, as in cluster.yaml) and worker nodes."""

    workdir: Path
    #: Ray 2.60's `ray start --head` turns token authentication on; every node and client
    #: needs the token (RAY_AUTH_MODE=token and RAY_AUTH_TOKEN, see :meth:`auth_env`).
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)
    node_ids: dict[str, str] = field(default_factory=dict)  # name -> Ray node id, once up
    temp_dirs: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def jobs_address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def auth_env(self) -> dict[str, str]:
        """What a process needs in its environment to join or call this cluster."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def start_head(self) -> Node:
        return self._start("head", [
            "--head", f"--port={self.gcs_port}", "--num-cpus=0", '--resources={"head": 1}',
            "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={free_port()}",
            f"--system-config={json.dumps(FAST_HEALTH_CHECKS)}"])

    def add_worker(self, num_cpus: int, name: str) -> Node:
        return self._start(name, [f"--address={self.address}", f"--num-cpus={num_cpus}",
                                  f"--resources={json.dumps({name: 1})}"])

    def _start(self, name: str, args: list[str]) -> Node:
        log = self.workdir / f"{name}.log"
        # Each node its own temp dir, as on separate machines: nodes sharing one would share
        # its files (one node's clean-up of a job's working dir deleted the driver's cwd). Short
        # paths, since Ray's Unix sockets live under it (a socket path has at most 107 bytes).
        temp_dir = tempfile.mkdtemp(prefix=f"ray-{name}-", dir="/tmp")
        self.temp_dirs.append(temp_dir)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [_ray(), "start", "--block", "--node-ip-address=127.0.0.1",
                 f"--temp-dir={temp_dir}",
                 "--object-store-memory=100000000", "--disable-usage-stats", *_node_ports(),
                 *args],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **self.auth_env()})
        node = Node(name=name, proc=proc, log=log)
        self.nodes.append(node)
        return node

    def wait_for_nodes(self, timeout_s: float = 120.0) -> dict[str, str]:
        """Wait until every started node is alive; returns {node name: Ray node id}."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.proc.poll() is not None:
                    raise RuntimeError(f"a Ray node exited: {node.log.read_text()[-2000:]}")
            alive = self.alive_nodes()
            if len(alive) == len(self.nodes):
                return alive
            time.sleep(0.5)
        raise TimeoutError(f"{len(self.nodes)} Ray nodes did not come up in {timeout_s} s")

    def alive_nodes(self) -> dict[str, str]:
        """{node name: node id} of the nodes alive, from the head's state API (so this test
        process never joins the cluster). A node's name is its one custom resource."""
        request = urllib.request.Request(
            f"{self.jobs_address}/api/v0/nodes?limit=100&detail=true",
            headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                nodes = json.load(response)["data"]["result"]["result"]
        except (OSError, ValueError, KeyError):
            return {}  # the head's API is not up yet
        names = {n.name for n in self.nodes}
        return {name: node["node_id"] for node in nodes if node["state"] == "ALIVE"
                for name in node.get("resources_total", {}) if name in names}

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        for temp_dir in self.temp_dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)
        # `ray start --head` records its address for a bare ray.init() to join; stopped by pid,
        # it leaves the file behind, and later tests' ray.init() would try the dead cluster.
        address_file = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if address_file.is_file() and address_file.read_text().strip().endswith(
                f":{self.gcs_port}"):
            address_file.unlink()
