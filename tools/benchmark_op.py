#!/usr/bin/env python
"""Median CPU times of multi-scale deformable attention: PyTorch reference vs the CPU kernel, forward and
forward+backward, on the FOCUS-L shapes at 512x512 (pixel decoder, adapter injector, adapter extractor).

    python tools/benchmark_op.py [--threads 2] [--repeats 5] [--dtype fp32|bf16]
Compiles the CPU extension on first use (cached under build/cpu_ext). `tools/benchmark.py --op` reports the same
comparison beside a model's figures.
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from focus.layers.ms_deform_attn import load_cpu_extension  # noqa: E402
from focus.layers.ms_deform_attn.functions import MSDeformAttnFunction, ms_deform_attn_pytorch  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp64": torch.float64}

# name -> (value levels (H, W), Lq, heads M, points P, per-head channels Dh)
FOCUS_L_512_CASES = {
    "pixel_decoder": ([(16, 16), (32, 32), (64, 64)], 5376, 8, 4, 32),
    "adapter_injector": ([(64, 64), (32, 32), (16, 16)], (512 // 14) ** 2, 16, 4, 32),
    "adapter_extractor": ([(36, 36)], 21 * 16 * 16, 16, 4, 32),
}


def make_case_inputs(levels, len_q, heads, points, head_dim, batch=1, dtype=torch.float32, seed=0):
    """Random inputs of one case: (value, spatial_shapes, level_start_index, sampling_locations, weights)."""
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(levels, dtype=torch.long)
    areas = shapes[:, 0] * shapes[:, 1]
    start = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    acc = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    value = torch.randn(batch, int(areas.sum()), heads, head_dim, generator=g).to(dtype)
    loc = torch.rand(batch, len_q, heads, len(levels), points, 2, generator=g).to(acc)
    weights = torch.rand(batch, len_q, heads, len(levels), points, generator=g).to(acc)
    weights = weights / weights.sum((-1, -2), keepdim=True)
    return value, shapes, start, loc, weights


def _median_time(fn, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def benchmark_cases(extension, cases=None, threads=2, repeats=5, dtype=torch.float32):
    """Median seconds of the PyTorch reference and of `extension`'s CPU kernel, forward and forward+backward.

    Returns {case: {"ref_fwd", "ext_fwd", "ref_fwdbwd", "ext_fwdbwd", "max_abs_diff"}}."""
    torch.set_num_threads(threads)
    results = {}
    for name, spec in (cases or FOCUS_L_512_CASES).items():
        value, shapes, start, loc, weights = make_case_inputs(*spec, dtype=dtype)
        grad = torch.randn(value.shape[0], loc.shape[1], value.shape[2] * value.shape[3]).to(dtype)

        def ref_fwd():
            return ms_deform_attn_pytorch(value, shapes, start, loc, weights)

        def ext_fwd():
            return MSDeformAttnFunction.apply(extension, value, shapes, start, loc, weights)

        def fwdbwd(fn):
            def run():
                inputs = [t.detach().requires_grad_(True) for t in (value, loc, weights)]
                out = (ms_deform_attn_pytorch if fn is ref_fwd else
                       lambda v, s, i, l, a: MSDeformAttnFunction.apply(extension, v, s, i, l, a))(
                    inputs[0], shapes, start, inputs[1], inputs[2])
                out.backward(grad)
            return run

        with torch.no_grad():
            diff = (ref_fwd().float() - ext_fwd().float()).abs().max().item()
            r = {"ref_fwd": _median_time(ref_fwd, repeats), "ext_fwd": _median_time(ext_fwd, repeats)}
        r["ref_fwdbwd"] = _median_time(fwdbwd(ref_fwd), repeats)
        r["ext_fwdbwd"] = _median_time(fwdbwd(ext_fwd), repeats)
        r["max_abs_diff"] = diff
        results[name] = r
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    args = parser.parse_args(argv)
    ext = load_cpu_extension()
    results = benchmark_cases(ext, threads=args.threads, repeats=args.repeats, dtype=DTYPES[args.dtype])
    print(f"ms_deform_attn CPU, {args.dtype}, {args.threads} threads, median of {args.repeats} (ms)")
    print(f"{'case':<18} {'Lq':>5} {'ref fwd':>9} {'ext fwd':>9} {'x':>6} {'ref f+b':>9} {'ext f+b':>9} {'x':>6}"
          f" {'max|diff|':>10}")
    for name, r in results.items():
        print(f"{name:<18} {FOCUS_L_512_CASES[name][1]:>5} {r['ref_fwd'] * 1e3:9.1f} {r['ext_fwd'] * 1e3:9.1f} "
              f"{r['ref_fwd'] / r['ext_fwd']:6.2f} {r['ref_fwdbwd'] * 1e3:9.1f} {r['ext_fwdbwd'] * 1e3:9.1f} "
              f"{r['ref_fwdbwd'] / r['ext_fwdbwd']:6.2f} {r['max_abs_diff']:10.2e}")
    return results


if __name__ == "__main__":
    main()
