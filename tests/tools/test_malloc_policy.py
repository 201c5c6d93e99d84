"""`tools/malloc_policy.py`, `configure_malloc`: "keep" stops repeated large allocations from page-faulting, "release"
returns freed large blocks to the system."""
import os
import platform
import subprocess
import sys
import textwrap

import pytest

import focus

_FOCUS_DIR = os.path.dirname(focus.__file__)
_TOOLS_DIR = os.path.join(os.path.dirname(_FOCUS_DIR), "tools")
pytestmark = pytest.mark.resources

# a child process imports tools/malloc_policy.py with `focus` as a bare package (argv[2]: its folder): no
# detectron2 import
_PREAMBLE = textwrap.dedent("""
    import sys, types
    pkg = types.ModuleType("focus")
    pkg.__path__ = [sys.argv[2]]
    sys.modules["focus"] = pkg
    sys.path.insert(0, sys.argv[3])
    from malloc_policy import configure_malloc
""")
_CHILD = _PREAMBLE + textwrap.dedent("""
    import resource, torch
    print(configure_malloc(sys.argv[1]))
    def step():
        torch.empty(16 * 2**20 // 4 * 4).fill_(1.0)  # 64 MB, above glibc's largest mmap threshold
    for _ in range(10):  # glibc's heap settles after a few rounds of 64-byte-aligned large blocks
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(policy):
    out = subprocess.run([sys.executable, "-c", _CHILD, policy, _FOCUS_DIR, _TOOLS_DIR], capture_output=True, text=True,
                         check=True)
    changed, faults = out.stdout.split()
    return changed == "True", int(faults)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_keep_policy_reuses_freed_memory():
    changed, faults = _faults("keep")
    assert changed and faults < 1000
    changed, faults = _faults("default")
    # 5 fresh 64 MB mmaps fault in 5 * 16384 pages of 4 KiB (fewer with transparent huge pages)
    assert not changed and faults > 1000


_RELEASE_CHILD = _PREAMBLE + textwrap.dedent("""
    import torch
    print(configure_malloc(sys.argv[1]))
    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20
    for _ in range(3):  # under glibc's default, freeing these raises its dynamic mmap threshold to 24 MB
        torch.empty(6 * 2**20).fill_(1.0)
    big = torch.empty(6 * 2**20).fill_(1.0)  # 24 MB
    pin = [torch.ones(256) for _ in range(64)]  # small blocks above it keep the heap from being trimmed
    before = rss_mb()
    del big
    print(before - rss_mb())
""")


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_release_policy_returns_large_blocks():
    def freed(policy):
        out = subprocess.run([sys.executable, "-c", _RELEASE_CHILD, policy, _FOCUS_DIR, _TOOLS_DIR], capture_output=True,
                             text=True, check=True)
        changed, mb = out.stdout.split()
        return changed == "True", float(mb)

    changed, mb = freed("release")
    assert changed and mb > 20
    changed, mb = freed("default")
    assert not changed and mb < 4


def test_unknown_policy_is_named(load_tool):
    with pytest.raises(ValueError, match="'fast'"):
        load_tool("malloc_policy").configure_malloc("fast")
