"""Shared pytest fixtures and options.

* `load_cfg(config, *opts, **overrides)`: `focus.config.get_focus_cfg`, the one config loader of the package and
  the tests (a repository config, path relative to `configs/` or absolute, with `KEY VALUE` overrides; unfrozen).
  Module-level helpers of test files call `get_focus_cfg` itself.
* `load_tool(name)`: a script of `tools/` (or any repository script by relative path) imported as a module, its
  `main(argv)` callable in-process; the one script loader of the tests.
* `shared_data` / `shared_reference`: the real benchmark samples and the official reference material outside the
  project (`FOCUS_SHARED_DATA`, `FOCUS_SHARED_REFERENCE`, default `../shared/{data,reference}`). Tests that need
  them skip with the reason on a user's machine, where the folder is absent, and fail under CI (`CI=true`),
  where it must be present. The skips are summarised at the end of the run.

Markers: `slow` (full-size models, compilation; `--run-slow`), `resources` (assertions about the allocator,
import cost and heap peaks of this platform; `--run-resources`, always on under CI).
"""
import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
_IN_CI = os.environ.get("CI", "").lower() == "true"
_SHARED_SKIP = "needs ../shared"


def _shared(env, default):
    path = Path(os.environ.get(env, ROOT.parent / "shared" / default)).resolve()
    if not path.is_dir():
        msg = f"{_SHARED_SKIP}: {path} not found (set {env})"
        if _IN_CI:
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


@pytest.fixture(scope="session")
def golden_weights_file(shared_reference, tmp_path_factory):
    """`golden_weights_file(member, prefix="")` -> path of the member's golden weights (expanded from
    `<member>/golden_dev/recipe.pth` of the reference) saved as its authors release them: a bare fp32 state dict,
    each key prefixed with `prefix` (e.g. "module." for DataParallel snapshots)."""
    import torch

    def save(member, prefix=""):
        sys.path.insert(0, str(shared_reference))
        try:
            from golden_weights import expand
        finally:
            sys.path.remove(str(shared_reference))
        sd = expand(str(shared_reference / member / "golden_dev" / "recipe.pth"))
        path = tmp_path_factory.mktemp(f"{member}_golden") / f"{member}_golden.pth"
        torch.save({prefix + k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}, path)
        return path

    return save


def _load_cfg(config, *opts, **overrides):
    from focus.config import get_focus_cfg

    pairs = list(opts)
    for key, value in overrides.items():
        pairs += [key, value]
    return get_focus_cfg(config, pairs)


@pytest.fixture(scope="session")
def load_cfg():
    """`load_cfg("tiny/focus_tiny.yaml", "MODEL.DEVICE", "cpu", **{"SOLVER.MAX_ITER": 2})` -> config."""
    return _load_cfg


def _load_tool(name):
    path = ROOT / name if "/" in name else TOOLS / f"{name}.py"
    module = "focus_script_" + "_".join(path.relative_to(ROOT).with_suffix("").parts)
    if module in sys.modules:
        return sys.modules[module]
    if str(TOOLS) not in sys.path:  # the tools import their shared modules (malloc_policy) as siblings
        sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location(module, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def load_tool():
    """`load_tool("demo")` -> `tools/demo.py` as a module; `load_tool("datasets/prepare.py")`: any repository script."""
    return _load_tool


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")
    parser.addoption("--run-resources", action="store_true",
                     help="also run tests marked resources (always on under CI=true)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: builds full-size models or compiles; run with --run-slow")
    config.addinivalue_line(
        "markers", "resources: asserts allocator, import-cost or heap-peak behaviour of this platform; run with "
        "--run-resources (CI runs them)"
    )


def pytest_collection_modifyitems(config, items):
    skips = {}
    if not config.getoption("--run-slow"):
        skips["slow"] = pytest.mark.skip(reason="slow: run with `make test-slow` (--run-slow)")
    if not (config.getoption("--run-resources") or _IN_CI):
        skips["resources"] = pytest.mark.skip(reason="resources: platform-specific; run with --run-resources")
    for item in items:
        for marker, skip in skips.items():
            if marker in item.keywords:
                item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    skipped = terminalreporter.stats.get("skipped", [])
    shared = [r for r in skipped if _SHARED_SKIP in str(r.longrepr)]
    if shared:
        terminalreporter.write_line(
            f"{len(shared)} tests skipped because ../shared is absent (they run where it exists, and in CI):"
        )
        for report in shared:
            terminalreporter.write_line(f"  {report.nodeid}")


@pytest.fixture(scope="module")
def single_thread():
    """Run a module's tiny models on one thread (they are ~10x faster so on busy shared cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
