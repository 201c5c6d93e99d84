#!/usr/bin/env python
"""Prepare the benchmark releases that need it, without ever modifying the raw files.

    python datasets/prepare.py casia    # CASIA v2 -> CASIA/TRAIN, CASIA v1 -> CASIA/TEST ({image,gt})
    python datasets/prepare.py pascal   # PASCAL/Imgs (images and masks mixed) -> PASCAL/{img,gt}
    python datasets/prepare.py defocus  # checks DEFOCUS/dataset (.bmp is read directly: nothing to write)
    python datasets/prepare.py istd     # checks ISTD_Dataset/{train,test}/*_{A,B} (read directly)
    python datasets/prepare.py check [NAME ...]   # pairs and sizes of registered datasets (default: all present)

Root: ``--root`` or ``$DETECTRON2_DATASETS`` (default ``datasets/``). Every subcommand is idempotent.

Differences from the official ``utils/prepare/prepare_*.py`` (docs/datasets.md#preparation):
* raw masks are never overwritten (the official scripts binarise GT in place: docs/focus.md#q12); masks are
  binarised when read (``> 128``), and no COCO/semantic JSON or ``annotations_detectron2`` label files are made;
* CASIA: files are copied byte for byte under their own extension (the official script re-saves v2 images as PNG
  data under a ``.jpg`` name) and each mask is paired with its image by stem (the official script sorts the two
  lists independently: docs/focus.md#q16). Pairs whose sizes differ are skipped and listed, as officially;
* PASCAL-S: images and masks are *copied* into ``img/`` and ``gt/`` (the official script moves them).
"""
import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from focus.data.catalog import BUILTIN_DATASETS, datasets_root  # noqa: E402
from focus.data.io import IMAGE_EXTENSIONS, MASK_EXTENSIONS, list_files_by_stem, read_image_size  # noqa: E402


def _copy(src, dst):
    """Copy `src` to `dst` unless an identical-size file is already there (idempotent)."""
    dst = Path(dst)
    if dst.exists() and dst.stat().st_size == Path(src).stat().st_size:
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return True


def _need(path, what):
    if not Path(path).exists():
        sys.exit(f"{what}: expected {path} (see datasets/README.md)")
    return Path(path)


def _pair_and_copy(images, masks, out_image, out_gt, label):
    """Copy stem-matched image/mask pairs with equal sizes; report the rest. Masks go to ``<stem>_gt.png``."""
    copied, skipped, unmatched = 0, [], sorted(set(images) - set(masks))
    for stem in sorted(set(images) & set(masks)):
        if read_image_size(images[stem]) != read_image_size(masks[stem]):
            skipped.append(stem)
            continue
        _copy(images[stem], Path(out_image) / images[stem].name)
        copied += _copy(masks[stem], Path(out_gt) / f"{stem}_gt{masks[stem].suffix.lower()}")
    print(f"{label}: {len(set(images) & set(masks)) - len(skipped)} pairs in {out_image} ({copied} new masks); "
          f"{len(skipped)} skipped for a size mismatch {skipped[:5]}; {len(unmatched)} image(s) without mask "
          f"{unmatched[:5]}")


def prepare_casia(root):
    casia = _need(root / "CASIA", "CASIA")
    v2_img = _need(casia / "CASIA2.0_revised" / "Tp", "CASIA v2 tampered images")
    v2_gt = _need(casia / "CASIA2.0_Groundtruth", "CASIA v2 ground truth")
    _pair_and_copy(list_files_by_stem(v2_img, IMAGE_EXTENSIONS), list_files_by_stem(v2_gt, MASK_EXTENSIONS, "_gt"),
                   casia / "TRAIN" / "image", casia / "TRAIN" / "gt", "casia_train (CASIA v2)")
    v1 = _need(casia / "CASIA 1.0 dataset", "CASIA v1 images")
    v1_gt = _need(casia / "CASIA 1.0 groundtruth", "CASIA v1 ground truth")
    images, masks = {}, {}
    for kind in ("CM", "Sp"):  # copy-move and spliced, merged into one test set
        dirs = [d for d in v1.rglob(kind) if d.is_dir() and d.parent.name == "Tp"]
        if not dirs:
            sys.exit(f"CASIA v1: no Tp/{kind} folder under {v1}")
        images.update(list_files_by_stem(dirs[0], IMAGE_EXTENSIONS))
        masks.update(list_files_by_stem(_need(v1_gt / kind, "CASIA v1 ground truth"), MASK_EXTENSIONS, "_gt"))
    _pair_and_copy(images, masks, casia / "TEST" / "image", casia / "TEST" / "gt", "casia_val (CASIA v1)")


def prepare_pascal(root):
    src = _need(root / "PASCAL" / "Imgs", "PASCAL-S")
    images = list_files_by_stem(src, (".jpg", ".jpeg"))
    masks = list_files_by_stem(src, (".png",))
    for stem, p in images.items():
        _copy(p, root / "PASCAL" / "img" / p.name)
    for stem, p in masks.items():
        _copy(p, root / "PASCAL" / "gt" / p.name)
    print(f"pascal: {len(images)} images -> PASCAL/img, {len(masks)} masks -> PASCAL/gt "
          f"({len(set(images) - set(masks))} image(s) without mask)")


def check(names, root):
    """Load each dataset (pairs by stem) and compare image and mask sizes from the file headers."""
    from detectron2.data import DatasetCatalog

    from focus.data.catalog import register_builtin_datasets

    register_builtin_datasets(root=root)
    bad = 0
    for name in names:
        try:
            dicts = DatasetCatalog.get(name)
        except (FileNotFoundError, ValueError) as e:
            print(f"{name}: {e}")
            bad += 1
            continue
        mismatched = [d["image_id"] for d in dicts if read_image_size(d["sem_seg_file_name"]) != (d["height"], d["width"])]
        print(f"{name}: {len(dicts)} pairs, {len(mismatched)} with image/mask size mismatch {mismatched[:5]}")
        bad += bool(mismatched)
    return bad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["casia", "pascal", "defocus", "istd", "check"])
    ap.add_argument("names", nargs="*", help="datasets for `check` (default: every builtin one present)")
    ap.add_argument("--root", default=None)
    args = ap.parse_args(argv)
    root = Path(args.root or datasets_root())
    if args.command == "casia":
        prepare_casia(root)
        return check(["casia_train", "casia_val"], root)
    if args.command == "pascal":
        prepare_pascal(root)
        return check(["pascal"], root)
    if args.command == "defocus":
        return check(["defocus_train", "defocus_dut_val", "defocus_cuhk_val"], root)
    if args.command == "istd":
        return check(["istd_train", "istd_val"], root)
    names = args.names or [n for n, s in BUILTIN_DATASETS.items()
                           if s.layout == "folder" and (root / s.image_dir).is_dir()]
    return check(names, root)


if __name__ == "__main__":
    sys.exit(main())
