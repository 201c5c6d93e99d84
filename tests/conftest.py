"""Shared pytest fixtures and options.

Real benchmark samples live outside the project (`FOCUS_SHARED_DATA`, default `../shared/data`); tests that
need them use `shared_data` / `shared_reference`, which skip when the folder is absent on a user's machine
and fail under CI (`CI=true`), where it must be present.
"""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _shared(env, default):
    path = Path(os.environ.get(env, ROOT.parent / "shared" / default)).resolve()
    if not path.is_dir():
        msg = f"{path} not found (set {env})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " -- required under CI")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def shared_data():
    """Path of the real benchmark samples (`../shared/data`)."""
    return _shared("FOCUS_SHARED_DATA", "data")


@pytest.fixture(scope="session")
def shared_reference():
    """Path of the official reference material (`../shared/reference`)."""
    return _shared("FOCUS_SHARED_REFERENCE", "reference")


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: builds full-size models or compiles; run with --run-slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with `make test-slow` (--run-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def single_thread():
    """Run a module's tiny models on one thread (they are ~10x faster so on busy shared cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
