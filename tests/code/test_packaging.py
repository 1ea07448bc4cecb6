"""What a wheel install gets: the built-in configs and the HAProxy wrapper ship as package data,
so `sftune demo` and `--config default` work outside a checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_the_wheel_carries_the_configs_and_the_haproxy_wrapper(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True)
    wheel = next(tmp_path.glob("sftune-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (ROOT / "search" / "configs").glob("*.yaml")}
    assert {"default.yaml", "demo.yaml", "smoke.yaml"} <= shipped
    assert {f"search/configs/{name}" for name in shipped} <= names
    assert "serving/haproxy_loopback.sh" in names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
