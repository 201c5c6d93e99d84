#!/usr/bin/env python
"""Pseudo labels from sparse labels with SAM: the WS-SAM procedure (docs/ws_sam.md#pseudo).

    python tools/make_pseudo_labels.py --images IMG_DIR --sparse SPARSE_DIR --out OUT_DIR \
        [--config-file configs/ws_sam/pseudo_labels.yaml] [--dtype fp32|bf16] [KEY VALUE ...]

    e.g.  PSEUDO_LABELS.SEGMENTER sam PSEUDO_LABELS.SAM_TYPE vit_h PSEUDO_LABELS.CHECKPOINT sam_vit_h_4b8939.pth

Sparse labels are S-COD scribble PNGs or point JSONs (`focus.data.sparse`), matched to images by stem. For each
image: point prompts, SAM on every augmented view, the masks mapped back and averaged, entropy weights and the
image's mean entropy. Writes, per image, `OUT/pseudo/<stem>.png` (round(255 y)), `OUT/weights/<stem>.png`
(round(255 w)) and `OUT/scores/<stem>.json`; at the end `OUT/scores.tsv`, `OUT/selected.txt` (the stems whose
mean entropy is below PSEUDO_LABELS.SELECT_THRESHOLD) and `OUT/summary.json`. Images already done (their score file
exists) are skipped, so an interrupted run resumes; within an image, the mask of each distinct view is kept in
`OUT/partial/<config digest>/<stem>/` until the image is done, so an image interrupted half way resumes view by
view (only under the same PSEUDO_LABELS config). `OUT` is then the `<pseudo_dir>` of a `weak:` dataset.

Cost: views that coincide (same image, same prompt) are segmented once (the default 12 views are 8 distinct
transforms), SAM embeds each distinct view image once, and `--dtype bf16` (PSEUDO_LABELS.DTYPE) runs SAM's image
encoder under bf16 autocast.

SAM weights are never downloaded: give PSEUDO_LABELS.CHECKPOINT (a local file), or PSEUDO_LABELS.RANDOM_WEIGHTS True to run with
random weights (tests, timing). PSEUDO_LABELS.SEGMENTER grabcut uses a classical stand-in that needs no weights.
"""
import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectron2.config import CfgNode  # noqa: E402

from focus.config import get_focus_cfg  # noqa: E402
from focus.data.io import IMAGE_EXTENSIONS, list_files_by_stem, read_image  # noqa: E402
from focus.data.pseudo_labels import (  # noqa: E402
    DTYPES,
    GrabCutSegmenter,
    MaskStore,
    Sam2Segmenter,
    SamSegmenter,
    build_tiny_sam,
    build_tiny_sam2,
    build_views,
    entropy_weights,
    image_score,
    prompts_from_sparse,
    pseudo_label,
    stem_seed,
)
from focus.data.sparse import read_points, read_sparse  # noqa: E402


def build_segmenter(p):
    if p.SEGMENTER == "grabcut":
        return GrabCutSegmenter(max_side=p.GRABCUT_MAX_SIDE, seed=p.SEED)
    if not p.CHECKPOINT and not p.RANDOM_WEIGHTS:
        raise SystemExit(f"PSEUDO_LABELS.SEGMENTER {p.SEGMENTER}: give PSEUDO_LABELS.CHECKPOINT (a local weights file; nothing is "
                         "downloaded), or PSEUDO_LABELS.RANDOM_WEIGHTS True for random weights")
    if p.SEGMENTER == "sam":
        if p.SAM_TYPE == "tiny":
            return SamSegmenter(build_tiny_sam(seed=p.SEED).to(p.DEVICE), p.MULTIMASK, p.DTYPE)
        return SamSegmenter.from_checkpoint(p.SAM_TYPE, p.CHECKPOINT or None, p.DEVICE, p.MULTIMASK, p.DTYPE)
    if p.SEGMENTER == "sam2":
        if p.SAM_TYPE == "tiny":
            return Sam2Segmenter(build_tiny_sam2(seed=p.SEED), p.MULTIMASK, p.DTYPE)
        return Sam2Segmenter.from_checkpoint(p.SAM_TYPE, p.CHECKPOINT or None, p.DEVICE, p.MULTIMASK, p.DTYPE)
    raise SystemExit(f"PSEUDO_LABELS.SEGMENTER must be sam, sam2 or grabcut, got {p.SEGMENTER!r}")


def _atomic_save_png(array, path):
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.png")
    Image.fromarray(array).save(tmp)
    os.replace(tmp, path)


def _atomic_write(text, path):
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def prompts_for(sparse_path, shape, p, stem):
    """Point prompts of one image: a point list's own points, or points drawn from a scribble map."""
    if str(sparse_path).lower().endswith(".json"):
        xy, labels = read_points(sparse_path)
        read_sparse(sparse_path, shape)  # bounds check, error names the file
        return xy, labels
    return prompts_from_sparse(read_sparse(sparse_path, shape), p.NUM_POINTS, p.NUM_NEGATIVE, stem_seed(p.SEED, stem))


def run(images_dir, sparse_dir, out, cfg, limit=None, progress=True):
    """Pseudo-label every image of `images_dir` with a sparse label; returns the summary dict."""
    from tqdm import tqdm

    p = cfg.PSEUDO_LABELS
    out = Path(out)
    for d in ("pseudo", "weights", "scores"):
        (out / d).mkdir(parents=True, exist_ok=True)
    dump = CfgNode({"PSEUDO_LABELS": cfg.PSEUDO_LABELS}).dump()
    _atomic_write(dump, out / "config.yaml")
    partial = out / "partial" / hashlib.sha1(dump.encode()).hexdigest()[:12]
    images = list_files_by_stem(images_dir, IMAGE_EXTENSIONS)
    sparse = {**list_files_by_stem(sparse_dir, (".png",)), **list_files_by_stem(sparse_dir, (".json",))}
    stems = sorted(set(images) & set(sparse))
    missing = sorted(set(images) - set(sparse))
    if limit:
        stems = stems[:limit]
    views = build_views(p.FLIPS, p.ROTATIONS, p.SCALES)
    segmenter = None
    todo = [s for s in stems if not (out / "scores" / f"{s}.json").is_file()]
    start, ran = time.perf_counter(), 0
    for stem in tqdm(todo, desc="pseudo labels", disable=not progress, unit="img"):
        if segmenter is None:
            segmenter = build_segmenter(p)
        image = read_image(images[stem])
        xy, labels = prompts_for(sparse[stem], image.shape[:2], p, stem)
        rec = {"stem": stem, "num_points": int(len(xy)), "num_positive": int((labels == 1).sum())}
        if rec["num_positive"] == 0:
            rec.update(score=None, status="no foreground label")
        else:
            store = MaskStore(partial / stem)
            y, _ = pseudo_label(image, xy, labels, segmenter, views, store)
            _atomic_save_png(np.round(y * 255).astype(np.uint8), out / "pseudo" / f"{stem}.png")
            _atomic_save_png(np.round(entropy_weights(y) * 255).astype(np.uint8), out / "weights" / f"{stem}.png")
            rec.update(score=image_score(y), status="ok", foreground_fraction=float((y > 0.5).mean()))
        _atomic_write(json.dumps(rec), out / "scores" / f"{stem}.json")
        if rec["status"] == "ok":
            store.clear()
        ran += 1
    records = [json.loads((out / "scores" / f"{s}.json").read_text()) for s in stems]
    scored = [r for r in records if r["score"] is not None]
    kept = [r for r in scored if r["score"] < p.SELECT_THRESHOLD]
    kept_stems = {r["stem"] for r in kept}
    lines = ["stem\tmean_entropy_bits\tkept\tstatus"]
    for r in records:
        score = "" if r["score"] is None else f"{r['score']:.6f}"
        lines.append(f"{r['stem']}\t{score}\t{int(r['stem'] in kept_stems)}\t{r['status']}")
    _atomic_write("\n".join(lines) + "\n", out / "scores.tsv")
    _atomic_write("".join(r["stem"] + "\n" for r in kept), out / "selected.txt")
    summary = {
        "images": len(stems),
        "images_without_sparse_label": len(missing),
        "no_foreground_label": len(records) - len(scored),
        "kept": len(kept),
        "threshold_bits": p.SELECT_THRESHOLD,
        "mean_entropy_all": float(np.mean([r["score"] for r in scored])) if scored else None,
        "mean_entropy_kept": float(np.mean([r["score"] for r in kept])) if kept else None,
        "views": len(views),
        "segmenter": p.SEGMENTER if p.SEGMENTER == "grabcut" else f"{p.SEGMENTER}:{p.SAM_TYPE}:{p.DTYPE}",
        "computed_this_run": ran,
        "seconds_per_image": (time.perf_counter() - start) / ran if ran else None,
    }
    _atomic_write(json.dumps(summary, indent=1), out / "summary.json")
    return summary


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True)
    ap.add_argument("--sparse", required=True, help="scribble PNGs (S-COD 0/1/2) or point JSONs, same stems")
    ap.add_argument("--out", required=True)
    ap.add_argument("--config-file", default="")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by stem)")
    ap.add_argument("--dtype", choices=DTYPES, default=None,
                    help="SAM image encoder precision (PSEUDO_LABELS.DTYPE; default fp32): bf16 = bf16 autocast")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = ap.parse_args(argv)
    opts = list(args.opts) + (["PSEUDO_LABELS.DTYPE", args.dtype] if args.dtype else [])
    cfg = get_focus_cfg(args.config_file or None, opts)
    cfg.freeze()
    s = run(args.images, args.sparse, args.out, cfg, args.limit, progress=not args.no_progress)
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"{s['images']} images ({s['computed_this_run']} computed now, {s['no_foreground_label']} without a "
          f"foreground label), {s['kept']} kept (mean entropy < {s['threshold_bits']} bit); mean entropy: all "
          f"{fmt(s['mean_entropy_all'])}, kept {fmt(s['mean_entropy_kept'])} bit; {s['views']} views, "
          f"{s['segmenter']}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
