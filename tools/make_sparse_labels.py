#!/usr/bin/env python
"""Turn a dense-mask dataset into a weakly labelled one: simulated scribbles (S-COD PNGs) or clicks (JSON).

    python tools/make_sparse_labels.py --masks MASK_DIR --out OUT_DIR [--kind scribble|points] [--seed 0]

One output per mask, same stem (`focus.data.sparse.make_scribbles` / `make_clicks` say how they are drawn). The
seed of each image is `seed` + a hash of its stem, so one image's labels do not depend on the others.
"""
import argparse
import sys
import zlib
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from focus.data.io import MASK_EXTENSIONS, binarize_mask, list_files_by_stem, read_mask  # noqa: E402
from focus.data.sparse import make_clicks, make_scribbles, write_points  # noqa: E402


def stem_seed(seed, stem):
    """Per-image seed: `seed` + CRC32 of the stem (stable across runs and platforms)."""
    return (int(seed) + zlib.crc32(stem.encode("utf-8"))) % (2**32)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--masks", required=True, help="folder of dense masks (> 128 = foreground)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--kind", choices=("scribble", "points"), default="scribble")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fg", type=int, default=1, help="foreground strokes (scribble) or clicks (points)")
    p.add_argument("--bg", type=int, default=1, help="background strokes (scribble) or clicks (points)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    masks = list_files_by_stem(args.masks, MASK_EXTENSIONS)
    for stem, path in masks.items():
        mask = binarize_mask(read_mask(path))
        seed = stem_seed(args.seed, stem)
        if args.kind == "scribble":
            Image.fromarray(make_scribbles(mask, seed, args.fg, args.bg)).save(out / f"{stem}.png")
        else:
            xy, labels = make_clicks(mask, seed, args.fg, args.bg)
            write_points(out / f"{stem}.json", xy, labels)
    print(f"{len(masks)} {args.kind} label files written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
