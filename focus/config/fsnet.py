"""Config keys of the FSNet member (``MODEL.FSNET``, ``INPUT.FSNET``); defaults reproduce the official code.

Keys that fix an official defect are named after what they change and cite their quirk in docs/fsnet.md.
"""
from detectron2.config import CfgNode as CN

__all__ = ["add_fsnet_config"]


def add_fsnet_config(cfg):
    """Add the FSNet keys to `cfg` (in place); a no-op if they exist."""
    if hasattr(cfg.MODEL, "FSNET"):
        return cfg
    cfg.MODEL.FSNET = CN()
    f = cfg.MODEL.FSNET
    f.CHANNEL = 32  # width of DimReduce, BPMs and decoders
    f.DEPTHS = [3, 4, 6, 3]  # bottlenecks per ResNet stage of each of the three trunks (released: ResNet-50)
    f.NUM_BPM = 4  # chained BPMs (released: 4)
    # what the two trunks see: "rgb+flow" (stage 3 / released), "rgb" (stage 1: the frame into both trunks),
    # "flow" (stage 2: the flow image into both trunks), docs/fsnet.md#q14
    f.STREAMS = "rgb+flow"
    f.PIXEL_MEAN = [0.485, 0.456, 0.406]  # ImageNet statistics on [0, 1] RGB, also for the flow image (#q11)
    f.PIXEL_STD = [0.229, 0.224, 0.225]
    # per-frame min-max after the sigmoid (docs/fsnet.md#q9); False: `foreground` is the sigmoid itself
    f.MINMAX_NORMALIZE = True
    f.MASK_THRESHOLD = 0.5  # U-VOS mask = foreground > threshold (on the min-max map by default: #q9)
    # run the BPMs in float32 under autocast (their five-way products overflow in 16 bit, docs/fsnet.md#q7)
    f.BPM_FP32 = True
    # training: input scales of the official multi-scale step (sizes rounded to multiples of 32, #q16)
    f.TRAIN_SCALES = [0.75, 1.0, 1.25]
    # "cycle": one scale per iteration in turn (one optimizer step per scale, as officially, but on a new
    # batch each time); "sum": every scale in one iteration, one step on the summed loss (docs/fsnet.md#q16)
    f.MULTISCALE_MODE = "cycle"
    # a local torchvision ResNet-50 ImageNet state dict copied into all three trunks at construction (#q18);
    # "" keeps torchvision's random initialisation
    f.IMAGENET_WEIGHTS = ""
    # stage-to-stage transfer (tools/train_net.py stage 3): the stage-1 and stage-2 checkpoints
    f.TRANSFER = CN()
    f.TRANSFER.APPEARANCE_WEIGHTS = ""  # stage-1 checkpoint: every key
    f.TRANSFER.MOTION_WEIGHTS = ""  # stage-2 checkpoint: the flow trunk
    # also copy the flow trunk's BN running statistics from stage 2 (official: they stay from stage 1, #q14)
    f.TRANSFER.MOTION_BN_STATS = False

    # flow estimation on the fly (test mapper / predictor when no flow image is given)
    f.FLOW = CN()
    f.FLOW.MODEL = "raft_small"  # "raft_small" or "raft_large" (torchvision)
    f.FLOW.WEIGHTS = ""  # local RAFT state dict; "" = random weights (tests only)
    f.FLOW.NUM_FLOW_UPDATES = 12  # RAFT refinement iterations
    f.FLOW.MAX_SIZE = 1024  # longest side at which flow is estimated (frames are downscaled above it)

    cfg.INPUT.FSNET = CN()
    i = cfg.INPUT.FSNET
    i.SIZE = 352  # square network input; frames and flow images are squashed to it (docs/fsnet.md#q10)
    # training targets resized bilinearly and kept soft (official, docs/fsnet.md#q15); True binarises them > 0.5
    i.BINARY_TARGETS = False
    return cfg
