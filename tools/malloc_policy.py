"""Process-wide CPU runtime settings for the command-line tools: the glibc malloc policy.

Why: one FOCUS-L forward at 512x512 allocates about 1 GB of short-lived activations in blocks of 5-64 MB (the
adapter's 5376x1024 prior tokens, the 1024x128x128 output pyramid). glibc serves blocks above its mmap threshold
(dynamic, at most 32 MB) with a fresh `mmap` and unmaps them on `free`, so every forward page-faults all of that
memory in again: about 250,000 minor faults, 1.5 s of a 10 s fp32 forward on the 2-core reference machine (a VM,
where a fault is expensive). The `"keep"` policy stops glibc from mmapping blocks and from trimming its heap, so
the next forward reuses the memory the previous one freed: no faults after the first image. The heap fragments in
exchange: a FOCUS-L inference process at 512 px peaked at 2654 MiB in fp32 (bf16: 1903) against 2398 (1720) with
`"release"` below, which took 22-27 % longer per forward (`tools/benchmark.py --malloc`).

Training is the opposite case: its peak is what counts. Once glibc's dynamic threshold has climbed to 32 MB,
the 4-17 MB gradients and activations of a FOCUS-L step share the heap and fragment it, and at the end of the
backward pass the process holds several hundred MB it no longer uses. The `"release"` policy fixes the mmap
threshold at 4 MB (which also stops the dynamic climb) and resets the trim threshold, so larger blocks go back to
the system when freed. A bf16 FOCUS-L training step at 512 px then peaked at 4510 MiB instead of 4823 MiB with
`"keep"` (16 MB: 4780 MiB); the price is page faults, about 12 % of the step's time on the reference machine,
and the calibration workload slows as much, so the benchmark ratio is unchanged (`tools/benchmark.py --train`).

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
