"""A real S3-compatible server on 127.0.0.1 for the storage tests: moto's server mode, started
as its own process and stopped by pid. No traffic leaves the machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

#: The standard variables the AWS SDK (and so pyarrow and Ray Tune) reads.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "sftune-test", "AWS_SECRET_ACCESS_KEY": "sftune-test",
               "AWS_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_listening(port: int, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the S3 server exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"the S3 server did not listen on 127.0.0.1:{port} in {timeout_s} s")


@contextmanager
def s3_server(log: Path):
    """Start the server; yield the environment (endpoint and credentials) that reaches it."""
    port = _free_port()
    server = Path(sys.executable).with_name("moto_server")
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until_listening(port, proc)
        yield {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", **CREDENTIALS}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def create_bucket(env: dict[str, str], name: str) -> str:
    """Create bucket ``name`` on the server; returns its ``s3://`` URI."""
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"],
                           access_key=env["AWS_ACCESS_KEY_ID"],
                           secret_key=env["AWS_SECRET_ACCESS_KEY"], region=env["AWS_REGION"],
                           allow_bucket_creation=True)
    fs.create_dir(name)
    return f"s3://{name}"


@contextmanager
def environment(values: dict[str, str]):
    """Set environment variables for the block (child processes such as Ray inherit them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
