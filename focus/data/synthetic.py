"""Deterministic synthetic image/mask pairs for every task family (tests and the quick start).

Each task has a visual cue that a tiny model can learn in minutes but that is not a single-pixel rule:

* ``sod``: a textured object (ellipse, star polygon or blob, varying position/scale) whose colour and texture
  contrast with a textured background;
* ``cod``: the same, camouflaged: the object reuses the background palette with a small colour shift and a
  different texture scale (low contrast);
* ``sd``: cast shadows: a region of a textured scene darkened by a factor 0.35-0.65 with soft edges, often
  attached to an occluding object (the object itself is *not* in the mask);
* ``dbd``: a finely textured scene where one region is Gaussian-blurred (mask 255 = blurred, the DBD
  convention of docs/datasets.md#registration);
* ``fd``: a patch spliced from another synthetic image, or copy-moved within the image, with a different
  noise level (mask 255 = tampered).

`generate_pair(task, seed, size)` returns ``(image uint8 (H, W, 3) RGB, mask uint8 (H, W) 0/255)``;
`generate_dataset(root, task, n_train, n_test, size, seed)` writes ``root/<task>/<split>/{images,masks}``
(JPEG images, PNG for ``fd`` where compression would blur the tampering cue; PNG masks). Output depends only
on the arguments.
"""
from pathlib import Path

import cv2
import numpy as np

__all__ = ["SYNTHETIC_TASKS", "generate_pair", "generate_dataset"]

SYNTHETIC_TASKS = ("sod", "cod", "sd", "dbd", "fd")
_TASK_IDS = {t: i for i, t in enumerate(SYNTHETIC_TASKS)}


def _rng(seed, task, split, index):
    return np.random.default_rng([int(seed), _TASK_IDS[task], {"train": 0, "test": 1}.get(split, 2), int(index)])


def _texture(rng, h, w, base=None, spread=60.0, fine=False):
    """A colour texture: smooth noise at a random scale plus oriented stripes, float32 ``(h, w, 3)`` in 0..255."""
    base = rng.uniform(40, 215, size=3) if base is None else np.asarray(base, np.float64)
    cell = int(rng.integers(2, 5) if fine else rng.integers(6, 24))
    low = rng.normal(0, 1, size=(max(2, h // cell), max(2, w // cell), 3)).astype(np.float32)
    noise = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta, freq = rng.uniform(0, np.pi), rng.uniform(0.05, 0.35 if fine else 0.15)
    stripes = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * freq + rng.uniform(0, 2 * np.pi))
    amp = rng.uniform(0.2, 0.6)
    tex = base[None, None, :] + spread * (0.5 * noise + amp * stripes[..., None] * rng.uniform(0.3, 1.0, 3))
    if fine:
        tex += rng.normal(0, 12, size=tex.shape)
    return np.clip(tex, 0, 255).astype(np.float32)


def _shape(rng, h, w, scale=(0.15, 0.4)):
    """A random filled shape (ellipse, star polygon or blob) as float32 ``(h, w)`` in {0, 1}."""
    m = np.zeros((h, w), np.uint8)
    r = rng.uniform(*scale) * min(h, w)
    cx, cy = rng.uniform(r * 0.6, w - r * 0.6), rng.uniform(r * 0.6, h - r * 0.6)
    kind = rng.integers(3)
    if kind == 0:
        axes = (int(r), int(r * rng.uniform(0.4, 1.0)))
        cv2.ellipse(m, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 1, -1)
    elif kind == 1:
        n = int(rng.integers(5, 12))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = r * rng.uniform(0.45, 1.0, n)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(m, [pts], 1)
    else:
        low = rng.normal(0, 1, size=(8, 8)).astype(np.float32)
        blob = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
        yy, xx = np.mgrid[0:h, 0:w]
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / r
        m = ((1.0 - d) + 0.35 * blob > 0.15).astype(np.uint8)
    if m.sum() < 16:  # degenerate draw: fall back to a disc
        cv2.circle(m, (int(cx), int(cy)), max(4, int(r)), 1, -1)
    return m.astype(np.float32)


def _soft(mask, sigma=1.0):
    return cv2.GaussianBlur(mask, (0, 0), sigma)[..., None]


def _sod(rng, h, w, camouflaged=False):
    bg = _texture(rng, h, w)
    mask = _shape(rng, h, w)
    if camouflaged:
        base = bg.reshape(-1, 3).mean(0) + rng.uniform(-28, 28, 3)
        obj = _texture(rng, h, w, base=base, spread=rng.uniform(30, 60))
    else:
        base = 255 - bg.reshape(-1, 3).mean(0) + rng.uniform(-30, 30, 3)  # contrasting colour
        obj = _texture(rng, h, w, base=np.clip(base, 20, 235), spread=rng.uniform(20, 50))
    a = _soft(mask, 0.8)
    return bg * (1 - a) + obj * a, mask


def _sd(rng, h, w):
    img = _texture(rng, h, w, spread=rng.uniform(30, 60))
    occluder = _shape(rng, h, w, scale=(0.1, 0.25))
    if rng.random() < 0.7:  # shadow cast by a visible object: sheared, offset copy of its shape
        dx, dy = rng.uniform(-0.35, 0.35) * w, rng.uniform(0.1, 0.35) * h
        shear = rng.uniform(-0.5, 0.5)
        mat = np.float32([[1, shear, dx - shear * h / 2], [0, rng.uniform(0.6, 1.3), dy]])
        shadow = cv2.warpAffine(occluder, mat, (w, h), flags=cv2.INTER_NEAREST)
        shadow = shadow * (1 - occluder)
        obj = _texture(rng, h, w, spread=40)
    else:  # shadow of something outside the frame
        shadow, occluder, obj = _shape(rng, h, w, scale=(0.2, 0.45)), np.zeros((h, w), np.float32), None
    if shadow.sum() < 16:
        shadow = _shape(rng, h, w, scale=(0.15, 0.3)) * (1 - occluder)
    dark = rng.uniform(0.35, 0.65) * np.array([1.0, 1.0, rng.uniform(1.0, 1.15)])  # slightly bluish shadows
    s = _soft(shadow, rng.uniform(0.8, 2.0))
    img = img * (1 - s) + img * dark[None, None, :] * s
    if obj is not None:
        a = _soft(occluder, 0.8)
        img = img * (1 - a) + obj * a
    return img, (shadow > 0.5).astype(np.float32)


def _dbd(rng, h, w):
    img = _texture(rng, h, w, fine=True, spread=70)
    mask = _shape(rng, h, w, scale=(0.2, 0.5)) if rng.random() < 0.6 else None
    if mask is None:  # out-of-focus background band (a half plane with a smooth border)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        theta = rng.uniform(0, 2 * np.pi)
        proj = (xx - w / 2) * np.cos(theta) + (yy - h / 2) * np.sin(theta)
        mask = (proj > rng.uniform(-0.25, 0.25) * min(h, w)).astype(np.float32)
    blurred = cv2.GaussianBlur(img, (0, 0), rng.uniform(2.0, 4.5))
    a = _soft(mask, 1.5)
    return img * (1 - a) + blurred * a, mask


def _fd(rng, h, w):
    img = _texture(rng, h, w, spread=60)
    if rng.random() < 0.5:  # a few authentic objects so that "object" alone is not the cue
        for _ in range(int(rng.integers(1, 3))):
            m = _soft(_shape(rng, h, w, scale=(0.08, 0.2)), 0.8)
            img = img * (1 - m) + _texture(rng, h, w, spread=40) * m
    img += rng.normal(0, 2.0, img.shape)  # "sensor" noise of the authentic image
    mask = _shape(rng, h, w, scale=(0.12, 0.3))
    if rng.random() < 0.7:  # splicing: content from another image
        donor = _texture(rng, h, w, spread=60)
    else:  # copy-move: content from elsewhere in the same image
        shift = (int(rng.integers(-w // 3, w // 3)), int(rng.integers(-h // 3, h // 3)))
        donor = np.roll(img, shift, axis=(1, 0))
    donor = donor + rng.normal(0, rng.uniform(7.0, 12.0), img.shape)  # inconsistent noise level
    a = mask[..., None]
    return img * (1 - a) + donor * a, mask


_GENERATORS = {
    "sod": lambda rng, h, w: _sod(rng, h, w, camouflaged=False),
    "cod": lambda rng, h, w: _sod(rng, h, w, camouflaged=True),
    "sd": _sd,
    "dbd": _dbd,
    "fd": _fd,
}


def _size(size):
    return (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))


def generate_pair(task, seed=0, size=(256, 256), split="train", index=0):
    """One deterministic ``(image uint8 (H, W, 3) RGB, mask uint8 (H, W) 0/255)`` pair of `task`."""
    if task not in _GENERATORS:
        raise ValueError(f"Unknown synthetic task {task!r}; expected one of {SYNTHETIC_TASKS}")
    h, w = _size(size)
    img, mask = _GENERATORS[task](_rng(seed, task, split, index), h, w)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), ((mask > 0.5) * 255).astype(np.uint8)


def generate_dataset(root, task, n_train, n_test, size=(256, 256), seed=0):
    """Write ``root/<task>/{train,test}/{images,masks}`` with `n_train` / `n_test` pairs; return the split dirs.

    Files are named ``<task>_<split>_<index:05d>``; re-running with the same arguments rewrites identical
    files (idempotent). Images are JPEG (quality 95) except ``fd`` (PNG); masks are PNG 0/255.
    """
    ext = ".png" if task == "fd" else ".jpg"
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        img_dir, mask_dir = Path(root) / task / split / "images", Path(root) / task / split / "masks"
        img_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, mask = generate_pair(task, seed, size, split, i)
            stem = f"{task}_{split}_{i:05d}"
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == ".jpg" else []
            cv2.imwrite(str(img_dir / f"{stem}{ext}"), img[:, :, ::-1], params)
            cv2.imwrite(str(mask_dir / f"{stem}.png"), mask)
        out[split] = img_dir.parent
    return out
