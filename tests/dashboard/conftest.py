"""Fixtures of the dashboard tests: sweep directories and a fake Serve endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.launch import APP_PATH
from dashboard.synthetic import make_synthetic_sweep
from tests.dashboard import builders
from tests.dashboard.fake_serve import FakeEndpoint


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> Path:
    return builders.write_tiny(tmp_path_factory.mktemp("storage-tiny"))


@pytest.fixture(scope="session")
def large_sweep(tmp_path_factory) -> Path:
    """2,000 trials of up to 10 epochs, with every outcome."""
    return make_synthetic_sweep(tmp_path_factory.mktemp("storage-large") / "large")


@pytest.fixture(scope="session")
def storage(tmp_path_factory) -> Path:
    """A storage path holding a tiny finished sweep, a running one, one with no results yet
    and a corrupt one."""
    root = tmp_path_factory.mktemp("storage")
    builders.write_corrupt(root)
    builders.write_running_empty(root)
    builders.write_running(root)
    builders.write_tiny(root)  # written last: newest first, so the app selects it by default
    return root


@pytest.fixture()
def endpoint():
    fake = FakeEndpoint()
    with fake:
        yield fake


@pytest.fixture()
def locked_endpoint():
    fake = FakeEndpoint(api_key="s3cret")
    with fake:
        yield fake


@pytest.fixture()
def open_app(monkeypatch):
    """``open_app(storage, page=..., sweep=..., serve_url=...)``: a run app, checked clean."""

    def run(storage: Path, *, page: str = "sweeps", sweep: str | None = None,
            serve_url: str = "http://127.0.0.1:9", **env: str) -> AppTest:
        monkeypatch.setenv("SFTUNE_DASHBOARD_STORAGE", str(storage))
        monkeypatch.setenv("SFTUNE_DASHBOARD_SERVE_URL", serve_url)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        at = AppTest.from_file(str(APP_PATH), default_timeout=60)
        at.query_params["page"] = page
        if sweep:
            at.query_params["sweep"] = sweep
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return run
