"""Config keys of the WS-SAM member (`MODEL.WS_SAM`, `INPUT.WS_SAM`).

Defaults are the released model and its official training (docs/ws_sam.md); keys that fix an official
defect are named after what they change, default off.
"""
from detectron2.config import CfgNode as CN

__all__ = ["add_ws_sam_config", "add_pseudo_label_config"]


def add_ws_sam_config(cfg):
    """Add the WS-SAM keys to `cfg` (idempotent)."""
    if "WS_SAM" in cfg.MODEL:
        return
    add_pseudo_label_config(cfg)
    cfg.MODEL.WS_SAM = CN()
    m = cfg.MODEL.WS_SAM
    # architecture (released: ResNet-50, 128 channels, MFG with 4 and 2 slots on a 12x12 grid)
    m.BACKBONE_DEPTHS = [3, 4, 6, 3]
    m.CHANNELS = 128
    m.SLOT_RESOLUTION = 12  # side of the MFG positional grid = network input side / 32 (docs/ws_sam.md#q1)
    m.NUM_SLOTS = [4, 2]
    m.SLOT_ITERS = 3
    m.PIXEL_MEAN = [0.485, 0.456, 0.406]  # on 0..1 RGB
    m.PIXEL_STD = [0.229, 0.224, 0.225]
    # inference
    m.TEST_MINMAX = True  # per-image min-max of the soft map, as the official test script (docs/ws_sam.md#q6)
    m.MASK_THRESHOLD = 0.5  # `mask = foreground > MASK_THRESHOLD`
    # losses (docs/ws_sam.md#losses)
    m.DEEP_SUPERVISION_WEIGHTS = [0.0625, 0.125, 0.25, 0.5, 1.0]  # (prior, p4, p3, p2, p1)
    m.PSEUDO_WEIGHT = 1.0  # structure loss against the soft pseudo mask
    m.SCRIBBLE_WEIGHT = 3.0  # partial cross-entropy on the sparse labels
    m.UAL_WEIGHT = 2.0  # uncertainty-aware term on p1, times the cosine ramp
    m.PIXEL_WEIGHTING = "none"  # "none" (released), "hard" (official 0.3/0.7 variant), "entropy" (paper, R4)
    m.FIX_STRUCTURE_BCE = False  # True: the structure loss BCE really uses its edge weights (docs/ws_sam.md#q4)
    m.UAL_RAMP = "epoch"  # "epoch": the ramp restarts every epoch (official, docs/ws_sam.md#q5); "global": once
    m.ITERS_PER_EPOCH = 113  # length of one ramp period with UAL_RAMP "epoch" (S-COD 4040 / batch 36 -> 113)

    cfg.INPUT.WS_SAM = CN()
    i = cfg.INPUT.WS_SAM
    i.SIZE = 384  # network input side for training and test (images are squashed, docs/ws_sam.md#q2)
    # training augmentation (docs/ws_sam.md#training-data)
    i.CROP_BORDER = 30
    i.ROTATE_PROB = 0.2
    i.ROTATE_DEGREES = 15
    i.LABEL_ROTATE_NEAREST = False  # True: rotate scribble maps with nearest instead of bicubic (docs/ws_sam.md#q9)
    i.COLOR_JITTER = True
    i.PEPPER_FRACTION = 0.0015  # fraction of pseudo-mask pixels set to 0/255 (salt-and-pepper)


def add_pseudo_label_config(cfg):
    """`PSEUDO_LABELS.*`: the pseudo-labelling procedure of `tools/make_pseudo_labels.py` (docs/ws_sam.md#pseudo).

    Defaults are the reference recommendations where the authors left a constant open; the docs say which
    constants are theirs and which are ours.
    """
    cfg.PSEUDO_LABELS = CN()
    p = cfg.PSEUDO_LABELS
    p.SEGMENTER = "sam"  # "sam" (segment-anything), "sam2" (sam2), "grabcut" (classical stand-in, no weights)
    p.SAM_TYPE = "vit_h"  # sam_model_registry key; sam2: its config name; "tiny": a small random SAM / SAM 2 (tests)
    p.CHECKPOINT = ""  # local SAM / SAM 2 weights (nothing is downloaded)
    p.RANDOM_WEIGHTS = False  # allow running without a checkpoint (random weights: tests and timing only)
    p.DEVICE = "cpu"
    p.DTYPE = "fp32"  # "bf16": the SAM / SAM 2 image encoder under bf16 autocast (faster on CPUs with bf16 units)
    p.MULTIMASK = "auto"  # one point: best of 3 by predicted IoU; several points: one output (docs/ws_sam.md#r6)
    p.NUM_POINTS = 10  # positive points per image drawn from the foreground scribble (docs/ws_sam.md#r1)
    p.NUM_NEGATIVE = 0  # negative points drawn from the background scribble
    p.SEED = 0  # per-image seed = SEED + crc32(stem)
    p.FLIPS = ["none", "h", "v"]  # views = FLIPS x ROTATIONS x SCALES (docs/ws_sam.md#r3)
    p.ROTATIONS = [0, 90, 180, 270]
    p.SCALES = [1.0]
    p.SELECT_THRESHOLD = 0.03  # keep an image iff its mean pixel entropy (bits) < this (docs/ws_sam.md#r5)
    p.GRABCUT_MAX_SIDE = 256  # the stand-in segmenter works at this size
