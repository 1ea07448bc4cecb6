"""Fixtures of the dashboard tests: sweep directories and a fake Serve endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.launch import APP_PATH
from dashboard.synthetic import make_synthetic_sweep
from tests.conftest import tiny_config
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


@pytest.fixture(scope="session")
def real_sweep(tmp_path_factory, tiny_model_dir, reviews_csv) -> Path:
    """A real sweep on a local Ray: the tiny model, 3 trials of up to 2 epochs, best exported.

    Session-scoped, because it costs most of a minute on 2 cores; Ray is shut down as soon as the
    sweep ends, since the dashboard only reads the files it leaves.
    """
    import ray

    from search.best import export_best
    from search.sweep import run_sweep

    cfg = tiny_config(
        tiny_model_dir, reviews_csv, f"tune.storage_path={tmp_path_factory.mktemp('runs')}",
        "tune.num_samples=3", "tune.max_concurrent_trials=2",
        "space.lr={low: 0.0005, high: 0.005, log: true}", "space.frozen_depth={low: 0, high: 2}",
        "space.dropout={low: 0.0, high: 0.1}",
    )
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False,
             log_to_driver=False)
    try:
        path = run_sweep(cfg, name="tiny-real")
    finally:
        ray.shutdown()
    export_best(path)
    return Path(path)


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
