"""Fixtures of the dashboard tests: sweep directories and a fake Serve endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

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
