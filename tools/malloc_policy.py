"""Process-wide CPU runtime settings for the command-line tools: the glibc malloc policy.

Why: a FOCUS-L forward at 512x512 allocates a large amount of short-lived activations in blocks of several MB
(the adapter's prior tokens, the stride-4 output pyramid). glibc serves blocks above its mmap threshold (dynamic,
at most 32 MB) with a fresh `mmap` and unmaps them on `free`, so every forward page-faults all of that memory in
again, which is expensive on a VM. The `"keep"` policy stops glibc from mmapping blocks and from trimming its heap,
so the next forward reuses the memory the previous one freed: no faults after the first image. The heap fragments
in exchange (a higher peak RSS than with `"release"`, which is slower per forward).

Training is the opposite case: its peak is what counts. Once glibc's dynamic threshold has climbed to 32 MB, the
gradients and activations of a FOCUS-L step share the heap and fragment it, and at the end of the backward pass
the process holds memory it no longer uses. The `"release"` policy fixes the mmap threshold at 4 MB (which also
stops the dynamic climb) and resets the trim threshold, so larger blocks go back to the system when freed: a lower
peak, paid for with page faults. Measured trade-offs of both policies: docs/speed_memory.md#malloc.

The setting is process-wide and irreversible, so the library never applies it on its own: the command-line tools
do (`--malloc`: `"keep"` for inference, `"release"` for training), and user code may call `configure_malloc`.
"""
from focus.libc import glibc

__all__ = ["MALLOC_POLICIES", "configure_malloc", "default_malloc_policy"]

MALLOC_POLICIES = ("default", "keep", "release")

# mallopt parameters from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_TRIM_DEFAULT = 128 * 1024  # glibc's initial value (its dynamic mmap threshold may have raised it since)
_TRIM_NEVER = 2**31 - 1  # largest int: the heap is only trimmed when more than 2 GB at its top are free
_SETTINGS = {
    "keep": ((_M_MMAP_MAX, 0, "M_MMAP_MAX"), (_M_TRIM_THRESHOLD, _TRIM_NEVER, "M_TRIM_THRESHOLD")),
    "release": (
        (_M_MMAP_THRESHOLD, 4 * 2**20, "M_MMAP_THRESHOLD"),
        (_M_TRIM_THRESHOLD, _TRIM_DEFAULT, "M_TRIM_THRESHOLD"),
    ),
}


def default_malloc_policy(training):
    """The tools' policy when `--malloc` is not given: `"release"` for training, `"keep"` for inference."""
    return "release" if training else "keep"


def configure_malloc(policy="keep"):
    """Apply a glibc malloc `policy` to this process; returns whether anything was changed.

    `"default"` leaves glibc's behaviour alone. `"keep"` sets `M_MMAP_MAX=0` (no mmap-backed blocks: large tensors
    come from the heap) and `M_TRIM_THRESHOLD=2**31-1` (freed memory stays in the process for reuse), so repeated
    forward passes stop page-faulting. `"release"` sets `M_MMAP_THRESHOLD` to 4 MB (and `M_TRIM_THRESHOLD` back to
    glibc's 128 KB): larger blocks are mmapped and unmapped on free, so the peak RSS of a training step stays close
    to the memory it actually uses. On a C library other than glibc (macOS, musl, Windows) the policies are no-ops
    and return False: those allocators have their own.
    """
    if policy not in MALLOC_POLICIES:
        raise ValueError(f"malloc policy must be one of {MALLOC_POLICIES}, got {policy!r}")
    libc = glibc()
    if policy == "default" or libc is None:
        return False
    for param, value, name in _SETTINGS[policy]:
        if not libc.mallopt(param, value):  # 1 on success, 0 on error
            raise RuntimeError(f"glibc mallopt refused {name}={value} of the {policy!r} malloc policy")
    return True
