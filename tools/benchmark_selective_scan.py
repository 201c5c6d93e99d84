#!/usr/bin/env python
"""Timing of the selective-scan implementations on the shapes of the released RUN (ResNet-50, 192 channels,
384 input: the SS2D of each SOFS VSS block scans 4 x 384 channels of 12 x 12 = 144 tokens with 16 states).

    python tools/benchmark_selective_scan.py [--reps 30] [--threads 2] [--backward] [--no-cpu-kernel]

Prints one JSON line: best and median milliseconds over `reps` calls of each implementation (interleaved, so that
a loaded machine affects all alike) and each one's speed-up over "reference". The CPU kernel (forward only) is
compiled on first use (cached under build/cpu_ext).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from focus.layers.selective_scan import (  # noqa: E402
    load_cpu_extension,
    selective_scan_blocked,
    selective_scan_cpu_kernel,
    selective_scan_reference,
)

__all__ = ["RUN_R50_384", "make_inputs", "benchmark"]

# (batch, directions K, channels per direction D_in, states N, tokens L)
RUN_R50_384 = (1, 4, 384, 16, 144)


def make_inputs(batch, k, d_in, n, length, seed=0, requires_grad=False):
    """Inputs shaped and scaled like the SS2D call: (u, delta, A, B, C, D, delta_bias)."""
    g = torch.Generator().manual_seed(seed)
    d = k * d_in
    u = torch.randn(batch, d, length, generator=g)
    delta = torch.randn(batch, d, length, generator=g) * 0.1
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)
    B = torch.randn(batch, k, n, length, generator=g)
    C = torch.randn(batch, k, n, length, generator=g)
    D = torch.ones(d)
    bias = torch.log(torch.expm1(torch.empty(d).uniform_(1e-3, 1e-1, generator=g)))
    args = [u, delta, A, B, C, D, bias]
    if requires_grad:
        args = [t.requires_grad_() for t in args]
    return args


def benchmark(shape=RUN_R50_384, reps=30, backward=False, cpu_kernel=True):
    """{name: {"best_ms", "median_ms", "speedup_best", "speedup_median"}} per implementation."""
    args = make_inputs(*shape, requires_grad=backward)
    fns = {"reference": selective_scan_reference, "blocked": selective_scan_blocked}
    if cpu_kernel and not backward:
        load_cpu_extension()
        fns["cpu_kernel"] = selective_scan_cpu_kernel
    times = {name: [] for name in fns}

    def call(fn):
        if backward:
            fn(*args).sum().backward()
        else:
            with torch.no_grad():
                fn(*args)

    for fn in fns.values():
        call(fn)
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            call(fn)
            times[name].append((time.perf_counter() - start) * 1e3)
    ref_best, ref_med = min(times["reference"]), statistics.median(times["reference"])
    return {name: {"best_ms": round(min(t), 3), "median_ms": round(statistics.median(t), 3),
                   "speedup_best": round(ref_best / min(t), 2),
                   "speedup_median": round(ref_med / statistics.median(t), 2)} for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--backward", action="store_true", help="time forward + backward (no CPU kernel)")
    parser.add_argument("--no-cpu-kernel", dest="cpu_kernel", action="store_false", help="skip the compiled kernel")
    a = parser.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    res = benchmark(reps=a.reps, backward=a.backward, cpu_kernel=a.cpu_kernel)
    print(json.dumps({"shape": dict(zip(("batch", "K", "D_in", "N", "L"), RUN_R50_384)),
                      "threads": torch.get_num_threads(), "backward": a.backward, **res}))


if __name__ == "__main__":
    main()
