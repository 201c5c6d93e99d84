"""Median CPU times of multi-scale deformable attention: PyTorch reference vs the CPU kernel, forward and
forward+backward, on the FOCUS-L shapes at 512x512 (pixel decoder, adapter injector, adapter extractor).

    python tools/benchmark_op.py [--threads 2] [--repeats 5] [--dtype fp32|bf16]
Compiles the CPU extension on first use (cached under build/cpu_ext).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from focus.layers.ms_deform_attn import load_cpu_extension  # noqa: E402
from focus.layers.ms_deform_attn.benchmark import FOCUS_L_512_CASES, benchmark_cases  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp64": torch.float64}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    args = parser.parse_args()
    ext = load_cpu_extension()
    results = benchmark_cases(ext, threads=args.threads, repeats=args.repeats, dtype=DTYPES[args.dtype])
    print(f"ms_deform_attn CPU, {args.dtype}, {args.threads} threads, median of {args.repeats} (ms)")
    print(f"{'case':<18} {'Lq':>5} {'ref fwd':>9} {'ext fwd':>9} {'x':>6} {'ref f+b':>9} {'ext f+b':>9} {'x':>6}"
          f" {'max|diff|':>10}")
    for name, r in results.items():
        print(f"{name:<18} {FOCUS_L_512_CASES[name][1]:>5} {r['ref_fwd'] * 1e3:9.1f} {r['ext_fwd'] * 1e3:9.1f} "
              f"{r['ref_fwd'] / r['ext_fwd']:6.2f} {r['ref_fwdbwd'] * 1e3:9.1f} {r['ext_fwdbwd'] * 1e3:9.1f} "
              f"{r['ref_fwdbwd'] / r['ext_fwdbwd']:6.2f} {r['max_abs_diff']:10.2e}")


if __name__ == "__main__":
    main()
