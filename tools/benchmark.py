#!/usr/bin/env python
"""Benchmark a FOCUS model: latency as a ratio to a calibration workload, peak RSS, reduced-precision agreement.

    tools/benchmark.py --config-file configs/cod/focus_dinov2_large.yaml [--size 512] [--dtype fp32|bf16|fp16]
        [--threads 2] [--runs 5] [--train] [--json OUT] [KEY VALUE ...]

See `focus.engine.benchmark` for what is measured and how.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from focus.engine.benchmark import main  # noqa: E402
from focus.engine.cli import run_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_main(main))
