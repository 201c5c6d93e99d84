"""`focus.engine.runtime.configure_malloc`: the "keep" policy stops repeated large allocations from page-faulting."""
import platform
import subprocess
import sys
import textwrap

import pytest

from focus.engine.runtime import configure_malloc

_CHILD = textwrap.dedent("""
    import resource, sys, torch
    from focus.engine.runtime import configure_malloc
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
    out = subprocess.run([sys.executable, "-c", _CHILD, policy], capture_output=True, text=True, check=True)
    changed, faults = out.stdout.split()
    return changed == "True", int(faults)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_keep_policy_reuses_freed_memory():
    changed, faults = _faults("keep")
    assert changed and faults < 1000
    changed, faults = _faults("default")
    # 5 fresh 64 MB mmaps fault in 5 * 16384 pages of 4 KiB (fewer with transparent huge pages)
    assert not changed and faults > 1000


def test_unknown_policy_is_named():
    with pytest.raises(ValueError, match="'fast'"):
        configure_malloc("fast")
