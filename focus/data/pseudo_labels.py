"""Pseudo labels from sparse labels with a prompted segmenter (SAM): the WS-SAM procedure (docs/ws_sam.md#pseudo).

1. **Prompts** (`prompts_from_sparse`, docs/ws_sam.md#r1): `num_points` positive points drawn uniformly without
   replacement from the foreground-labelled pixels (all of them if fewer), plus `num_negative` negative points
   from the background-labelled pixels, seeded per image.
2. **Views** (`View`, docs/ws_sam.md#r3): every combination of a flip, a rotation by a multiple of 90 degrees and
   a scale. Flips and rotations are exact permutations of the pixel grid, inverted exactly; a scale resizes the
   image (bilinear) and the predicted mask back to the original size (bilinear on 0/1, then > 0.5). Prompt
   points go through the same map.
3. **Ensemble** (`ensemble`): the soft pseudo mask is the mean of the K binary masks mapped back,
   `y = (1/K) sum_k T_k^-1(M_k)`, in [0, 1].
4. **Pixel weights** (`entropy_weights`, docs/ws_sam.md#r4): `w = 1 - H(y)`, `H` the binary entropy in bits.
5. **Image score and selection** (docs/ws_sam.md#r5): mean of `H(y)` over the image at its original size; an image
   is kept iff its score is below the threshold.

A *segmenter* is any callable `segmenter(image, xy, labels) -> bool (H, W)` with `image` RGB uint8 (H, W, 3),
`xy` float (N, 2) pixel coordinates (x = column), `labels` int (N,) 1 positive / 0 negative. It must be a function
of its inputs: `pseudo_label` calls it once per *distinct* (view image, prompt) pair and reuses the mask for
views that coincide (the default 12 views hold 8 distinct transforms: a vertical flip is a horizontal flip turned
by 180 degrees), which leaves the ensemble unchanged.
`SamSegmenter` drives SAM through the `segment-anything` package, `Sam2Segmenter` SAM 2 through `sam2`,
`GrabCutSegmenter` is a classical stand-in (OpenCV GrabCut seeded by the points) for machines without SAM weights.
"""
import hashlib
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = [
    "View",
    "build_views",
    "prompts_from_sparse",
    "ensemble",
    "entropy_bits",
    "entropy_weights",
    "image_score",
    "pseudo_label",
    "call_key",
    "stem_seed",
    "MaskStore",
    "DTYPES",
    "SamSegmenter",
    "Sam2Segmenter",
    "GrabCutSegmenter",
    "build_tiny_sam",
    "build_tiny_sam2",
]


def stem_seed(seed, stem):
    """Per-image seed: `seed` + CRC32 of the stem (stable across runs, platforms and dataset orderings)."""
    return (int(seed) + zlib.crc32(str(stem).encode("utf-8"))) % (2**32)


@dataclass(frozen=True)
class View:
    """One augmentation: `flip` ("none", "h", "v"), then `rot90` quarter turns counter-clockwise (as `np.rot90`),
    then a resize by `scale`."""

    flip: str = "none"
    rot90: int = 0
    scale: float = 1.0

    def __post_init__(self):
        if self.flip not in ("none", "h", "v"):
            raise ValueError(f"flip must be 'none', 'h' or 'v', got {self.flip!r}")
        if self.scale <= 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")

    def _grid(self, a, inverse=False):
        k = self.rot90 % 4
        if not inverse:
            if self.flip == "h":
                a = a[:, ::-1]
            elif self.flip == "v":
                a = a[::-1]
            return np.rot90(a, k)
        a = np.rot90(a, -k)
        if self.flip == "h":
            a = a[:, ::-1]
        elif self.flip == "v":
            a = a[::-1]
        return a

    def apply_image(self, image):
        """(H, W[, C]) -> the augmented image (a copy)."""
        import cv2

        out = np.ascontiguousarray(self._grid(image))
        if self.scale != 1.0:
            h, w = out.shape[:2]
            size = (max(1, int(round(w * self.scale))), max(1, int(round(h * self.scale))))
            out = cv2.resize(out, size, interpolation=cv2.INTER_LINEAR)
        return out

    def apply_points(self, xy, shape):
        """Point coordinates (N, 2) (x, y) in the original (H, W) image -> coordinates in the augmented image."""
        h, w = shape
        x, y = np.asarray(xy, np.float64).T.copy()
        if self.flip == "h":
            x = w - 1 - x
        elif self.flip == "v":
            y = h - 1 - y
        for _ in range(self.rot90 % 4):  # np.rot90 (counter-clockwise): (x, y) -> (y, W - 1 - x), then W <-> H
            x, y = y, w - 1 - x
            h, w = w, h
        if self.scale != 1.0:
            sx, sy = round(w * self.scale) / w, round(h * self.scale) / h
            x, y = (x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5
        return np.stack([x, y], axis=1)

    def invert_mask(self, mask, shape):
        """A mask predicted on the augmented image -> float32 0/1 mask on the original (H, W) grid."""
        import cv2

        m = np.asarray(mask, np.float32)
        if self.scale != 1.0:
            h, w = shape if self.rot90 % 2 == 0 else shape[::-1]
            m = (cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5).astype(np.float32)
        return np.ascontiguousarray(self._grid(m, inverse=True))


def build_views(flips=("none", "h", "v"), rotations=(0, 90, 180, 270), scales=(1.0,)):
    """All combinations, identity first when present. Rotations in degrees, multiples of 90."""
    bad = [r for r in rotations if r % 90]
    if bad:
        raise ValueError(f"rotations must be multiples of 90 degrees (exactly invertible), got {bad}")
    views = [View(f, (r // 90) % 4, float(s)) for s in scales for f in flips for r in rotations]
    return sorted(views, key=lambda v: v != View())


def prompts_from_sparse(sparse, num_points=10, num_negative=0, seed=0):
    """Point prompts from a sparse map (1 fg, 0 bg, -1 none): (xy float64 (N, 2), labels int64 (N,)).

    `num_points` positives drawn uniformly without replacement from the foreground pixels (all if fewer), then
    `num_negative` negatives from the background pixels; deterministic given `seed`. No foreground pixel: no
    positive point.
    """
    rng = np.random.default_rng(seed)
    xy, labels = [], []
    for value, n in ((1, num_points), (0, num_negative)):
        rr, cc = np.nonzero(sparse == value)
        if n <= 0 or len(rr) == 0:
            continue
        idx = np.sort(rng.choice(len(rr), size=min(n, len(rr)), replace=False))
        xy += list(zip(cc[idx], rr[idx]))
        labels += [value] * len(idx)
    return np.asarray(xy, np.float64).reshape(-1, 2), np.asarray(labels, np.int64)


def ensemble(masks):
    """Mean of K binary masks (K, H, W) (already on the original grid) -> float32 (H, W) in [0, 1]."""
    return np.mean(np.asarray(masks, np.float32), axis=0)


def entropy_bits(y, eps=1e-10):
    """Binary entropy in bits of `y` in [0, 1], elementwise (0 at 0 and 1, 1 at 0.5)."""
    y = np.clip(np.asarray(y, np.float64), 0.0, 1.0)
    h = -(y * np.log2(y + eps) + (1 - y) * np.log2(1 - y + eps))
    return np.clip(h, 0.0, 1.0)


def entropy_weights(y):
    """Per-pixel weights `1 - H(y)` in [0, 1] (1 where all views agree, 0 where they split evenly)."""
    return (1.0 - entropy_bits(y)).astype(np.float32)


def image_score(y):
    """Mean pixel entropy (bits) of a soft pseudo mask: the image-level uncertainty used for selection."""
    return float(entropy_bits(y).mean())


def call_key(image, xy, labels):
    """Digest of one segmenter call's inputs (the view image with its shape, the prompt points and labels): two
    views with the same key get the same mask from a deterministic segmenter."""
    h = hashlib.blake2b(digest_size=16)
    for a in (np.ascontiguousarray(image), np.asarray(xy, np.float64), np.asarray(labels, np.int64)):
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def pseudo_label(image, xy, labels, segmenter, views, store=None):
    """Run `segmenter` on every view and fuse: returns (soft mask float32 (H, W), the K masks on the original grid).

    Views whose (image, prompt) coincide are computed once and counted as often as they occur. `store`, if
    given, is a persistent mapping `call_key -> mask on the original grid` (e.g. `MaskStore`): masks found there
    are not recomputed and new ones are put there at once, so an interrupted image resumes view by view.
    With no prompt point the result is all zeros and the K masks are empty.
    """
    h, w = image.shape[:2]
    if len(xy) == 0:
        return np.zeros((h, w), np.float32), np.zeros((0, h, w), np.float32)
    done, masks = {}, []
    for view in views:
        aug = view.apply_image(image)
        pts = view.apply_points(xy, (h, w))
        key = call_key(aug, pts, labels)
        if key not in done:
            m = store.get(key) if store is not None else None
            if m is None:
                m = view.invert_mask(segmenter(aug, pts, labels), (h, w))
                if store is not None:
                    store[key] = m
            done[key] = m
        masks.append(done[key])
    masks = np.stack(masks)
    return ensemble(masks), masks


class MaskStore:
    """A folder of binary masks keyed by `call_key` (PNG, 0/255), for resuming an image view by view."""

    def __init__(self, root):
        from pathlib import Path

        self.root = Path(root)

    def get(self, key):
        from PIL import Image

        path = self.root / f"{key}.png"
        if not path.is_file():
            return None
        with Image.open(path) as img:
            return (np.asarray(img) > 127).astype(np.float32)

    def __setitem__(self, key, mask):
        import os

        from PIL import Image

        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{key}.tmp{os.getpid()}.png"
        Image.fromarray((np.asarray(mask) > 0.5).astype(np.uint8) * 255).save(tmp)
        os.replace(tmp, self.root / f"{key}.png")

    def clear(self):
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)


DTYPES = ("fp32", "bf16")


class SamSegmenter:
    """SAM through `segment_anything.SamPredictor`.

    Mask choice (docs/ws_sam.md#r6): with one point, `multimask_output=True` and the mask of highest predicted IoU;
    with several points, one output (`multimask="auto"`); "always" / "never" force either.
    `dtype="bf16"` runs the image encoder (nearly all of the cost) under bf16 autocast and casts its embedding back
    to fp32 for the prompt encoder and mask decoder; "fp32" (default) is the plain model. The embedding of the
    last image is kept, so prompting the same image again does not recompute it.
    """

    def __init__(self, sam, multimask="auto", dtype="fp32"):
        from segment_anything import SamPredictor

        self._check(multimask, dtype)
        self.predictor = SamPredictor(sam)
        self.multimask, self.dtype = multimask, dtype
        self._image_key = None

    @staticmethod
    def _check(multimask, dtype):
        if multimask not in ("auto", "always", "never"):
            raise ValueError(f"multimask must be 'auto', 'always' or 'never', got {multimask!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")

    @classmethod
    def from_checkpoint(cls, model_type, checkpoint, device="cpu", multimask="auto", dtype="fp32"):
        """`model_type` in segment_anything's `sam_model_registry` ("vit_h", "vit_l", "vit_b"); `checkpoint` a
        local file (None: random weights, for tests and timing only)."""
        from segment_anything import sam_model_registry

        if model_type not in sam_model_registry:
            raise ValueError(f"SAM type {model_type!r} unknown; one of {sorted(sam_model_registry)}")
        sam = sam_model_registry[model_type](checkpoint=None)
        if checkpoint:
            import torch

            sam.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        return cls(sam.to(device).eval(), multimask, dtype)

    def _encode(self, image):
        """Image embedding into the predictor (`SamPredictor.set_image`)."""
        self.predictor.set_image(image, image_format="RGB")
        self.predictor.features = self.predictor.features.float()

    def set_image(self, image):
        """Embed `image` (RGB uint8 (H, W, 3)) unless it is the image embedded last."""
        import torch

        key = call_key(image, (), ())
        if key == self._image_key:
            return
        self._image_key = None
        device = self.predictor.model.device
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.dtype == "bf16"):
            self._encode(np.ascontiguousarray(image))
        self._image_key = key

    def __call__(self, image, xy, labels):
        import torch

        multi = self.multimask == "always" or (self.multimask == "auto" and len(xy) == 1)
        self.set_image(image)
        with torch.inference_mode():
            masks, iou, _ = self.predictor.predict(point_coords=np.asarray(xy, np.float32),
                                                   point_labels=np.asarray(labels, np.int64), multimask_output=multi)
        return np.asarray(masks[int(np.argmax(iou))] if multi else masks[0]) > 0.5


class Sam2Segmenter(SamSegmenter):
    """SAM 2 through `sam2.sam2_image_predictor.SAM2ImagePredictor` (same prompting, mask choice and `dtype` as
    `SamSegmenter`)."""

    def __init__(self, predictor, multimask="auto", dtype="fp32"):
        self._check(multimask, dtype)
        self.predictor = predictor
        self.multimask, self.dtype = multimask, dtype
        self._image_key = None

    @staticmethod
    def _import():
        try:
            from sam2.build_sam import build_sam2
            from sam2.sam2_image_predictor import SAM2ImagePredictor
        except ImportError as e:
            raise ImportError("PSEUDO_LABELS.SEGMENTER sam2 needs the `sam2` package: "
                              "SAM2_BUILD_CUDA=0 pip install --no-deps --no-build-isolation sam2==1.1.0") from e
        return build_sam2, SAM2ImagePredictor

    @classmethod
    def from_checkpoint(cls, model_cfg, checkpoint, device="cpu", multimask="auto", dtype="fp32"):
        """`model_cfg` a sam2 config name (e.g. "configs/sam2.1/sam2.1_hiera_b+.yaml"), `checkpoint` a local file
        (None: random weights, for tests and timing only)."""
        build_sam2, predictor = cls._import()
        return cls(predictor(build_sam2(model_cfg, checkpoint or None, device=device)), multimask, dtype)

    def _encode(self, image):
        self.predictor.set_image(np.array(image))  # a writable copy for its torchvision transforms
        f = self.predictor._features
        self.predictor._features = {"image_embed": f["image_embed"].float(),
                                    "high_res_feats": [t.float() for t in f["high_res_feats"]]}


class GrabCutSegmenter:
    """A classical prompted segmenter standing in for SAM where no SAM weights are available (OpenCV GrabCut).

    The image is shrunk to at most `max_side` px; every pixel starts as "probably background", the bounding box of
    the positive points grown by `box_margin` x the image diagonal (at least `radius` px) as "probably
    foreground", disks of `radius` px around positive / negative points as sure foreground / background; then
    `iters` GrabCut iterations, the result resized back (nearest). Deterministic (OpenCV's RNG seeded per call).
    """

    def __init__(self, max_side=256, radius=4, box_margin=0.15, iters=4, seed=0):
        self.max_side, self.radius, self.box_margin, self.iters, self.seed = max_side, radius, box_margin, iters, seed

    def __call__(self, image, xy, labels):
        import cv2

        h, w = image.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        pts = np.rint((np.asarray(xy, np.float64) + 0.5) * [sw / w, sh / h] - 0.5).astype(int)
        pts = np.clip(pts, 0, [sw - 1, sh - 1])
        labels = np.asarray(labels)
        mask = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
        pos = pts[labels == 1]
        if len(pos) == 0:
            return np.zeros((h, w), bool)
        m = max(self.radius, int(self.box_margin * np.hypot(sh, sw)))
        x0, y0 = np.maximum(pos.min(0) - m, 0)
        x1, y1 = np.minimum(pos.max(0) + m, [sw - 1, sh - 1])
        mask[y0:y1 + 1, x0:x1 + 1] = cv2.GC_PR_FGD
        for (x, y), lab in zip(pts, labels):
            cv2.circle(mask, (int(x), int(y)), self.radius, int(cv2.GC_FGD if lab == 1 else cv2.GC_BGD), -1)
        cv2.setRNGSeed(self.seed)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(np.ascontiguousarray(small[:, :, ::-1]), mask, None, bgd, fgd, self.iters, cv2.GC_INIT_WITH_MASK)
        fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
        return cv2.resize(fg, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def build_tiny_sam(image_size=256, embed_dim=64, depth=2, num_heads=2, seed=0):
    """A randomly initialised SAM of the `segment-anything` package at a small size (tests): the package's own
    image encoder, prompt encoder and mask decoder classes, `image_size` px input, 16-px patches."""
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    prompt_dim, patch = 32, 16
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=depth, embed_dim=embed_dim, img_size=image_size, mlp_ratio=2,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=num_heads, patch_size=patch, qkv_bias=True,
            use_rel_pos=True, global_attn_indexes=[depth - 1], window_size=4, out_chans=prompt_dim),
        prompt_encoder=PromptEncoder(embed_dim=prompt_dim, image_embedding_size=(image_size // patch,) * 2,
                                     input_image_size=(image_size, image_size), mask_in_chans=4),
        mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                 transformer=TwoWayTransformer(depth=1, embedding_dim=prompt_dim, mlp_dim=64, num_heads=2),
                                 transformer_dim=prompt_dim, iou_head_depth=2, iou_head_hidden_dim=32),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def build_tiny_sam2(image_size=256, seed=0):
    """A randomly initialised SAM 2 of the `sam2` package at a small size (tests), wrapped in its
    `SAM2ImagePredictor`: SAM 2.1 Hiera-T's config with a 32-channel, 5-block trunk, one memory-attention layer
    and `image_size` px input (the predictor's feature sizes follow it)."""
    import torch

    build_sam2, predictor_cls = Sam2Segmenter._import()
    torch.manual_seed(seed)
    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu", hydra_overrides_extra=[
        f"++model.image_size={image_size}", "++model.image_encoder.trunk.embed_dim=32",
        "++model.image_encoder.trunk.stages=[1,1,2,1]", "++model.image_encoder.trunk.global_att_blocks=[3]",
        "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]", "++model.memory_attention.num_layers=1"])
    predictor = predictor_cls(model)
    predictor._bb_feat_sizes = [(image_size // s,) * 2 for s in (4, 8, 16)]  # hard-coded for 1024 px in sam2
    return predictor
