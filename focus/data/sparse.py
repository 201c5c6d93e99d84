"""Sparse labels (scribbles, clicks) and pseudo labels as datasets, and a seeded generator of sparse labels.

Formats on disk:

* **Scribble maps**: one PNG per image, same stem, same size, in the S-COD encoding (the scribble COD set used by
  WS-SAM): 1 = foreground scribble, 2 = background scribble, 0 = unlabelled. `read_scribble` checks the value set
  and names the file otherwise (other releases store 0/255 or RGB scribbles: convert them first).
* **Point lists**: one JSON per image, same stem: ``{"points": [[x, y, label], ...]}`` with pixel coordinates
  (x = column, y = row, origin at the top-left pixel's centre) and label 1 (foreground) or 0 (background).
* **Pseudo labels** (written by `tools/make_pseudo_labels.py`): ``<dir>/pseudo/<stem>.png`` soft masks
  ``round(255 y)``, ``<dir>/weights/<stem>.png`` per-pixel weights ``round(255 w)``, ``<dir>/selected.txt`` the
  stems kept by the image selection, one per line.

Inside the pipeline a sparse label is an int64 map (H, W): 1 foreground, 0 background, -1 unlabelled.

Images, sparse labels and pseudo labels are matched **by stem**, never by sorted position: an image without a
sparse label is left out (and counted in one warning); a label without an image is reported, not shifted onto
the next image.

Datasets: `register_sparse_dataset(name, image_root, sparse_root, pseudo_dir=None)`, or the name
``weak:<image_root>:<sparse_root>[:<pseudo_dir>]`` anywhere a dataset name is accepted. Dataset dicts carry
``file_name``, ``sparse_file_name``, ``sparse_kind`` ("scribble" or "points"), and with a pseudo dir
``pseudo_file_name``, ``pseudo_weight_file_name`` (when present) and ``sem_seg_file_name`` = the pseudo mask, so
that any member's dense-mask mapper trains on the pseudo labels unchanged.
"""
import json
import logging
from functools import partial
from pathlib import Path

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from .io import IMAGE_EXTENSIONS, list_files_by_stem, read_image_size

__all__ = [
    "SCRIBBLE_VALUES",
    "read_scribble",
    "read_points",
    "write_points",
    "scribble_to_sparse",
    "sparse_to_scribble",
    "points_to_sparse",
    "read_sparse",
    "read_selection",
    "load_sparse_dataset",
    "register_sparse_dataset",
    "make_scribbles",
    "make_clicks",
]

logger = logging.getLogger(__name__)

SCRIBBLE_VALUES = (0, 1, 2)  # unlabelled, foreground, background (S-COD)


def read_scribble(path):
    """S-COD scribble map -> uint8 (H, W) with values in {0, 1, 2}; any other value is an error naming the file.

    Grey (L), palette (P: the palette indices are the values) and 16-bit maps are read as stored.
    """
    with Image.open(path) as img:
        if img.mode not in ("L", "P", "I", "I;16", "1"):
            raise ValueError(f"{path}: scribble maps must be single-channel (mode L or P) with values 0/1/2, "
                             f"got mode {img.mode}")
        arr = np.asarray(img).astype(np.int64)
    bad = sorted(set(np.unique(arr).tolist()) - set(SCRIBBLE_VALUES))
    if bad:
        raise ValueError(f"{path}: scribble values must be 0 (unlabelled), 1 (foreground), 2 (background); found "
                         f"{bad[:10]}{' ...' if len(bad) > 10 else ''} (convert 0/255 or RGB scribbles first)")
    return arr.astype(np.uint8)


def scribble_to_sparse(scribble):
    """S-COD map (0 none, 1 fg, 2 bg) -> int64 (1 fg, 0 bg, -1 none). Values outside {0, 1, 2} are kept (they
    only arise from interpolating a label map, docs/ws_sam.md#q9)."""
    out = scribble.astype(np.int64)
    out[scribble == 0] = -1
    out[scribble == 2] = 0
    return out


def sparse_to_scribble(sparse):
    """int64 (1 fg, 0 bg, -1 none) -> uint8 S-COD map (1 fg, 2 bg, 0 none)."""
    out = np.zeros(sparse.shape, np.uint8)
    out[sparse == 1] = 1
    out[sparse == 0] = 2
    return out


def read_points(path):
    """Point list JSON -> (xy float64 (N, 2), labels int64 (N,)); errors name the file."""
    with open(path) as f:
        data = json.load(f)
    pts = data.get("points") if isinstance(data, dict) else None
    if pts is None:
        raise ValueError(f"{path}: expected {{\"points\": [[x, y, label], ...]}}")
    arr = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
    labels = arr[:, 2].astype(np.int64)
    if not np.isin(labels, (0, 1)).all() or not np.array_equal(labels, arr[:, 2]):
        raise ValueError(f"{path}: point labels must be 1 (foreground) or 0 (background), got {sorted(set(arr[:, 2]))}")
    return arr[:, :2], labels


def write_points(path, xy, labels):
    """Write a point list JSON (see the module docstring)."""
    pts = [[float(x), float(y), int(lab)] for (x, y), lab in zip(np.asarray(xy), np.asarray(labels))]
    with open(path, "w") as f:
        json.dump({"points": pts}, f)


def points_to_sparse(xy, labels, shape, radius=0, path=None):
    """Rasterise points into a sparse map (H, W) int64: disks of `radius` pixels (0: the pixel itself) get their
    label, everything else -1. Points outside the image are an error (naming `path` when given)."""
    h, w = shape
    out = np.full((h, w), -1, np.int64)
    rc = np.rint(np.asarray(xy, dtype=np.float64)[:, ::-1]).astype(np.int64).reshape(-1, 2)
    outside = (rc[:, 0] < 0) | (rc[:, 0] >= h) | (rc[:, 1] < 0) | (rc[:, 1] >= w)
    if outside.any():
        where = f"{path}: " if path else ""
        raise ValueError(f"{where}{int(outside.sum())} point(s) outside the {w}x{h} image, e.g. (x, y) = "
                         f"{tuple(np.asarray(xy)[outside][0])}")
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disk = yy**2 + xx**2 <= radius**2
    for (r, c), lab in zip(rc, labels):
        r0, r1, c0, c1 = max(r - radius, 0), min(r + radius + 1, h), max(c - radius, 0), min(c + radius + 1, w)
        d = disk[r0 - r + radius:r1 - r + radius, c0 - c + radius:c1 - c + radius]
        out[r0:r1, c0:c1][d] = lab
    return out


def read_sparse(path, shape=None, point_radius=0):
    """Sparse label file (scribble PNG or point JSON) -> int64 (H, W) map (1 / 0 / -1).

    `shape` (H, W) of the image is required for point lists, and checked for scribbles (a size mismatch is an
    error naming the file, never a resize).
    """
    path = str(path)
    if path.lower().endswith(".json"):
        if shape is None:
            raise ValueError(f"{path}: the image size is needed to rasterise a point list")
        xy, labels = read_points(path)
        return points_to_sparse(xy, labels, shape, point_radius, path)
    scribble = read_scribble(path)
    if shape is not None and scribble.shape != tuple(shape):
        raise ValueError(f"{path}: scribble is {scribble.shape[1]}x{scribble.shape[0]} but its image is "
                         f"{shape[1]}x{shape[0]}")
    return scribble_to_sparse(scribble)


def read_selection(path):
    """Selection list (one name per line; a file name's extension is dropped) -> set of stems."""
    with open(path) as f:
        return {Path(line.strip()).stem for line in f if line.strip()}


def _sparse_files(sparse_root):
    scribbles = list_files_by_stem(sparse_root, (".png",))
    points = list_files_by_stem(sparse_root, (".json",))
    both = sorted(set(scribbles) & set(points))
    if both:
        raise ValueError(f"{sparse_root}: both a scribble PNG and a point JSON for {both[:5]}")
    return {**{k: (v, "scribble") for k, v in scribbles.items()}, **{k: (v, "points") for k, v in points.items()}}


def load_sparse_dataset(name, image_root, sparse_root, pseudo_dir=None, use_selection=True):
    """Dataset dicts of images with sparse labels (and pseudo labels), matched by stem; see the module docstring.

    With `pseudo_dir` and `use_selection`, only the stems of ``<pseudo_dir>/selected.txt`` are kept when that file
    exists; an image without a pseudo mask is left out.
    """
    images = list_files_by_stem(image_root, IMAGE_EXTENSIONS)
    sparse = _sparse_files(sparse_root)
    no_label = sorted(set(images) - set(sparse))
    no_image = sorted(set(sparse) - set(images))
    if no_image:
        logger.warning(f"{name}: {len(no_image)} sparse label(s) without an image in {image_root} (ignored), e.g. "
                       f"{no_image[:3]}")
    if no_label:
        logger.warning(f"{name}: {len(no_label)} image(s) without a sparse label in {sparse_root} (left out), e.g. "
                       f"{no_label[:3]}")
    stems = sorted(set(images) & set(sparse))
    pseudo = weights = None
    if pseudo_dir is not None:
        pseudo_dir = Path(pseudo_dir)
        pseudo = list_files_by_stem(pseudo_dir / "pseudo", (".png",))
        weights = list_files_by_stem(pseudo_dir / "weights", (".png",)) if (pseudo_dir / "weights").is_dir() else {}
        missing = [s for s in stems if s not in pseudo]
        if missing:
            logger.warning(f"{name}: {len(missing)} image(s) without a pseudo mask in {pseudo_dir / 'pseudo'} (left "
                           f"out), e.g. {missing[:3]}")
        stems = [s for s in stems if s in pseudo]
        sel = pseudo_dir / "selected.txt"
        if use_selection and sel.is_file():
            keep = read_selection(sel)
            stems = [s for s in stems if s in keep]
    if not stems:
        raise FileNotFoundError(f"{name}: no image of {image_root} has a sparse label in {sparse_root}"
                                + (f" and a selected pseudo mask in {pseudo_dir}" if pseudo_dir else ""))
    dicts = []
    for stem in stems:
        w, h = read_image_size(images[stem])
        d = {"file_name": str(images[stem]), "image_id": stem, "height": h, "width": w,
             "sparse_file_name": str(sparse[stem][0]), "sparse_kind": sparse[stem][1]}
        if pseudo is not None:
            d["pseudo_file_name"] = d["sem_seg_file_name"] = str(pseudo[stem])
            if stem in weights:
                d["pseudo_weight_file_name"] = str(weights[stem])
        dicts.append(d)
    return dicts


def register_sparse_dataset(name, image_root, sparse_root, pseudo_dir=None, task="cod", use_selection=True):
    """Register a weakly labelled dataset `name` (lazy: nothing is read until it is used)."""
    if name in DatasetCatalog.list():
        return name
    image_root, sparse_root = str(image_root), str(sparse_root)
    pseudo_dir = None if pseudo_dir in (None, "") else str(pseudo_dir)
    DatasetCatalog.register(name, partial(load_sparse_dataset, name, image_root, sparse_root, pseudo_dir,
                                          use_selection))
    MetadataCatalog.get(name).set(task=task, image_root=image_root, sparse_root=sparse_root, pseudo_dir=pseudo_dir,
                                  evaluator_type="sod", ignore_label=255)
    return name


# ---------------------------------------------------------------------------------------------------------------
# Generator of sparse labels from dense masks


def _erode(mask, radius):
    import cv2

    if radius <= 0:
        return mask.copy()
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.erode(mask.astype(np.uint8), k, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def _inner_region(region, fraction):
    """`region` eroded by `fraction` of the square root of its area (>= 1 px), or the region itself if that
    erases it."""
    radius = max(1, int(round(fraction * np.sqrt(region.sum()))))
    inner = _erode(region, radius)
    return inner if inner.any() else region


def _stroke(region, rng, num_vertices, thickness):
    """A polyline through `num_vertices` random pixels of `region`, ordered by a nearest-neighbour walk from a
    random start, drawn `thickness` px wide and clipped to `region`: a bool map."""
    import cv2

    rr, cc = np.nonzero(region)
    idx = rng.choice(len(rr), size=min(num_vertices, len(rr)), replace=False)
    pts = np.stack([cc[idx], rr[idx]], axis=1)
    order = [0]
    left = list(range(1, len(pts)))
    while left:
        last = pts[order[-1]]
        j = min(left, key=lambda i: (pts[i][0] - last[0]) ** 2 + (pts[i][1] - last[1]) ** 2)
        order.append(j)
        left.remove(j)
    canvas = np.zeros(region.shape, np.uint8)
    cv2.polylines(canvas, [pts[order].astype(np.int32).reshape(-1, 1, 2)], False, 1, thickness=thickness)
    if len(pts) == 1:
        canvas[pts[0][1], pts[0][0]] = 1
    return canvas.astype(bool) & region


def make_scribbles(mask, seed=0, fg_strokes=1, bg_strokes=1, vertices=4, thickness=None, margin=0.1):
    """Simulated scribbles from a dense mask, in the S-COD encoding.

    Each stroke is a polyline through `vertices` pixels drawn uniformly from the *inner* part of the region
    (foreground, or background), i.e. the region eroded by `margin` x sqrt(region area), visited in
    nearest-neighbour order from a random start, `thickness` px wide (default: 1/150 of the image diagonal, at
    least 2) and clipped to the inner region, so that a scribble never crosses the true boundary.
    Deterministic given `seed`.

    Args:
        mask: (H, W) bool (or 0/255) dense mask.
    Returns:
        uint8 (H, W): 1 foreground scribble, 2 background scribble, 0 elsewhere (a region that is empty gets
        no stroke).
    """
    mask = np.asarray(mask) > (127 if np.asarray(mask).dtype == np.uint8 and np.asarray(mask).max() > 1 else 0)
    rng = np.random.default_rng(seed)
    h, w = mask.shape
    if thickness is None:
        thickness = max(2, int(round(np.hypot(h, w) / 150)))
    out = np.zeros((h, w), np.uint8)
    for region, value, n in ((~mask, 2, bg_strokes), (mask, 1, fg_strokes)):
        if not region.any() or n <= 0:
            continue
        inner = _inner_region(region, margin)
        for _ in range(n):
            out[_stroke(inner, rng, vertices, thickness)] = value
    return out


def make_clicks(mask, seed=0, num_fg=1, num_bg=0, margin=0.1):
    """Simulated clicks from a dense mask: (xy float64 (N, 2), labels int64 (N,)), foreground first.

    The first foreground click is the foreground pixel farthest from the boundary (maximum of the distance
    transform; ties broken by the first in raster order), as an annotator clicks the middle of an object; the
    others are drawn uniformly, without replacement, from the inner region (eroded by `margin` x sqrt(area)).
    Background clicks are drawn the same way from the inner background. Deterministic given `seed`.
    """
    import cv2

    mask = np.asarray(mask) > (127 if np.asarray(mask).dtype == np.uint8 and np.asarray(mask).max() > 1 else 0)
    rng = np.random.default_rng(seed)
    xy, labels = [], []
    for region, label, n in ((mask, 1, num_fg), (~mask, 0, num_bg)):
        if not region.any() or n <= 0:
            continue
        if label == 1:
            dist = cv2.distanceTransform(np.pad(region, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
            r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
            xy.append((c, r))
            labels.append(1)
            n -= 1
        if n > 0:
            inner = _inner_region(region, margin)
            rr, cc = np.nonzero(inner)
            idx = rng.choice(len(rr), size=min(n, len(rr)), replace=False)
            xy += [(cc[i], rr[i]) for i in idx]
            labels += [label] * len(idx)
    return np.asarray(xy, np.float64).reshape(-1, 2), np.asarray(labels, np.int64)
