"""The C library's allocator controls (`mallopt`, `malloc_trim`) where they exist: glibc on Linux.

Used by the malloc policies of the tools (`tools/malloc_policy.py`) and by weight packing (`focus.modeling.packing`),
which returns the heap holes of the weights it replaces to the system.
"""
import ctypes
import ctypes.util
import functools
import platform

__all__ = ["glibc"]


@functools.lru_cache(maxsize=None)
def glibc():
    """The loaded glibc (`ctypes.CDLL`), or None on another C library (macOS, musl, Windows)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
