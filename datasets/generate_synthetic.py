#!/usr/bin/env python
"""Generate the synthetic datasets `synthetic_{task}_{train,test}` (deterministic, seconds on a CPU).

    python datasets/generate_synthetic.py [--root $DETECTRON2_DATASETS] [--tasks sod cod sd dbd fd]
                                          [--n-train 200] [--n-test 50] [--size 256] [--seed 0]

Writes ``<root>/synthetic/<task>/<split>/{images,masks}``; re-running rewrites identical files.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from focus.data.catalog import datasets_root  # noqa: E402
from focus.data.synthetic import SYNTHETIC_TASKS, generate_dataset  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=None, help="dataset root (default: $DETECTRON2_DATASETS or datasets/)")
    ap.add_argument("--tasks", nargs="+", default=list(SYNTHETIC_TASKS), choices=list(SYNTHETIC_TASKS))
    ap.add_argument("--n-train", type=int, default=200)
    ap.add_argument("--n-test", type=int, default=50)
    ap.add_argument("--size", type=int, nargs="+", default=[256], help="H [W]")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    root = Path(args.root or datasets_root()) / "synthetic"
    size = tuple(args.size) if len(args.size) == 2 else (args.size[0], args.size[0])
    for task in args.tasks:
        t = time.time()
        generate_dataset(root, task, args.n_train, args.n_test, size=size, seed=args.seed)
        print(f"{task}: {args.n_train} train + {args.n_test} test pairs of {size[0]}x{size[1]} in {root / task} "
              f"({time.time() - t:.1f} s)")


if __name__ == "__main__":
    main()
