#!/usr/bin/env python
"""Timing of the selective-scan implementations on the shapes of the released RUN (ResNet-50, 192 channels,
384 input: the SS2D of each SOFS VSS block scans 4 x 384 channels of 12 x 12 = 144 tokens with 16 states).

    python tools/benchmark_selective_scan.py [--reps 30] [--threads 2] [--backward]

Prints one JSON line per implementation (best and median milliseconds over `reps` calls, interleaved so that
a loaded machine affects both alike) and the speed-up of "blocked" over "reference".
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from focus.layers.selective_scan import selective_scan_blocked, selective_scan_reference  # noqa: E402

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


def benchmark(shape=RUN_R50_384, reps=30, backward=False):
    """{name: {"best_ms", "median_ms"}} for both implementations plus "speedup_best"/"speedup_median"."""
    args = make_inputs(*shape, requires_grad=backward)
    fns = {"reference": selective_scan_reference, "blocked": selective_scan_blocked}
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
    out = {name: {"best_ms": round(min(t), 3), "median_ms": round(statistics.median(t), 3)}
           for name, t in times.items()}
    out["speedup_best"] = round(out["reference"]["best_ms"] / out["blocked"]["best_ms"], 2)
    out["speedup_median"] = round(out["reference"]["median_ms"] / out["blocked"]["median_ms"], 2)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--backward", action="store_true", help="time forward + backward")
    a = parser.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    res = benchmark(reps=a.reps, backward=a.backward)
    print(json.dumps({"shape": dict(zip(("batch", "K", "D_in", "N", "L"), RUN_R50_384)),
                      "threads": torch.get_num_threads(), "backward": a.backward, **res}))


if __name__ == "__main__":
    main()
