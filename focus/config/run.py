"""Config keys of the RUN member (`MODEL.RUN.*`). Defaults are the official code's behaviour; every key that
fixes an official defect is named after what it changes and cites its docs/run.md anchor."""
from detectron2.config import CfgNode as CN

__all__ = ["add_run_config", "check_input_size"]


def add_run_config(cfg):
    """Add `MODEL.RUN` to `cfg` (in place)."""
    if hasattr(cfg.MODEL, "RUN"):
        return cfg
    cfg.MODEL.RUN = CN()
    r = cfg.MODEL.RUN
    r.CHANNELS = 192  # C: width of GCM3/IAF/CAF/REM11/SOFS (released model: 192)
    r.BACKBONE_LAYERS = [3, 4, 6, 3]  # ResNet-50 blocks per stage (reduced only for golden/tiny models)
    # local timm ResNet-50 state dict to start training from (official: timm "resnet50" = resnet50.a1_in1k);
    # "" = random. Never downloaded. Ignored when MODEL.WEIGHTS is loaded afterwards.
    r.BACKBONE_WEIGHTS = ""
    # square side the image is squashed to (official 384); a multiple of 64, >= 384 (docs/run.md#q10)
    r.INPUT_SIZE = 384
    r.PIXEL_MEAN = [0.485, 0.456, 0.406]  # ImageNet normalisation of the [0, 1] image
    r.PIXEL_STD = [0.229, 0.224, 0.225]
    r.SCAN_BACKEND = ""  # selective scan: "" = by device, "reference" or "blocked"
    # eval: "prediction" computes only what the evaluated map depends on (bit-identical, docs/run.md#q1);
    # "all" also returns every official output under "run_outputs"
    r.TEST_OUTPUTS = "prediction"
    r.TEST_MINMAX = True  # per-image min-max stretch of the saved map (official; docs/run.md#q15)
    # train the registered SOFS block; False = frozen at its initialisation, like the official per-call random
    # block that no optimizer sees (docs/run.md#q1)
    r.TRAIN_SOFS = False
    r.LOSS = CN()
    r.LOSS.WEIGHTED_BCE = False  # True: pixel-weighted BCE of the structure loss (fix of docs/run.md#q6)
    r.LOSS.ADD_RECONSTRUCTION = False  # True: add the ROBE reconstruction loss to the total (fix of docs/run.md#q2)
    r.LOSS.RECONSTRUCTION_WEIGHTS = [0.125, 0.25, 0.5, 1.0]  # stages 4, 3, 2, 1
    r.LOSS.UAL_WEIGHT = 2.0
    # "epoch": the UAL ramp (1 - cos(pi i / n)) / 2 restarts every UAL_RAMP_ITERS iterations (official: n = the
    # iterations of one epoch, docs/run.md#q9); "global": one ramp over SOLVER.MAX_ITER
    r.LOSS.UAL_RAMP = "epoch"
    r.LOSS.UAL_RAMP_ITERS = 289  # iterations per epoch: 4040 images / (2 GPUs x batch 7), rounded up
    return cfg


def check_input_size(size, key="MODEL.RUN.INPUT_SIZE"):
    """Raise a ValueError naming `key` unless `size` is a multiple of 64 and at least 384 (docs/run.md#q10)."""
    if not isinstance(size, int) or size < 384 or size % 64:
        raise ValueError(
            f"{key} = {size!r}: RUN only takes square inputs whose side is a multiple of 64 and at least 384 "
            f"(384, 448, 512, ...; the official architecture fails on other sizes, docs/run.md#q10)"
        )
    return size
