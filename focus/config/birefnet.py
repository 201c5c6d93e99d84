"""`MODEL.BIREFNET` keys (docs/birefnet.md). Defaults are the released general model (Swin-V1-L, 1024x1024).

The architecture never depends on the batch size: every BatchNorm is always built (docs/birefnet.md#q1).
"""
from detectron2.config import CfgNode as CN

__all__ = ["add_birefnet_config"]


def add_birefnet_config(cfg):
    cfg.MODEL.BIREFNET = CN()
    b = cfg.MODEL.BIREFNET
    # backbone: swin_v1_{t,s,b,l} or pvt_v2_{b0,b1,b2,b5}
    b.BACKBONE = "swin_v1_l"
    b.BACKBONE_DEPTHS = []  # override of the factory's depths (the golden case: [2, 2, 1, 1])
    b.BACKBONE_EMBED_DIM = 0  # override of the factory's width (0 = factory; tiny CPU configs only)
    b.BACKBONE_NUM_HEADS = []  # override of the factory's heads
    b.DROP_PATH_RATE = -1.0  # stochastic depth of the backbone (-1 = official: 0.2 Swin, 0.1 PVT)
    b.DEC_CHANNELS_INTER = 64  # width inside every decoder block (64 in every released model)
    b.ASPP_WIDTH = 256  # width of every deformable-ASPP branch (256 in every released model)
    # network input (height, width); any multiple of 32 (1024x1024 default, 2048 `_HR`, (1440, 2560) `_lite-2K`)
    b.SIZE = (1024, 1024)
    # test path: "official" = the test script (OpenCV bilinear resize, float map resized with
    # align_corners=True); "readme" = the README / Hugging Face path (PIL antialiased resize, 8-bit map
    # resized with PIL bicubic) (docs/birefnet.md#q11)
    b.INFERENCE_PATH = "official"
    b.MASK_THRESHOLD = 0.5  # `mask = foreground > MASK_THRESHOLD`
    # eval: the stride-1 output conv folded with the image branch and moved before the final resize (the same
    # function up to float rounding, ~10x fewer stride-1 operations, no full-resolution feature map)
    b.FUSED_STRIDE1 = True
    # deformable convolutions without gradients (inference): "gather" = corner-table gathers + one matmul per
    # chunk (the same function as torchvision's up to the summation order, parallel, matmul in the weights'
    # dtype); "torchvision" = torchvision.ops.deform_conv2d (always used when gradients are needed)
    b.DEFORM_IMPL = "gather"
    b.GRAD_CHECKPOINTING = False  # recompute backbone blocks in backward (same gradients, less memory)

    # tiled high-resolution inference (not in the official code): global pass + overlapping tiles, blended
    b.TILE = CN()
    b.TILE.ENABLED = False
    b.TILE.SIZE = 0  # tile side in original pixels (0 = the network size, i.e. tiles seen at native scale)
    b.TILE.OVERLAP = 0.25  # minimum overlap between neighbouring tiles, fraction of the tile side
    b.TILE.MIN_SCALE = 1.5  # tile only images whose longer side is >= MIN_SCALE x the network's
    b.TILE.GLOBAL_WEIGHT = 0.5  # weight of the global (resized) pass in the blend, tiles get the rest
    # "uncertain": tiles replace the global map only where the global pass is between BAND[0] and BAND[1]
    # (object boundaries); "all": weighted average everywhere
    b.TILE.BLEND = "uncertain"
    b.TILE.BAND = (0.05, 0.95)

    # training (docs/birefnet.md, training)
    b.LOSS = CN()
    b.LOSS.BCE_WEIGHT = 30.0
    b.LOSS.IOU_WEIGHT = 0.5
    b.LOSS.SSIM_WEIGHT = 10.0
    b.LOSS.MAE_WEIGHT = 0.0  # 100 for the General tasks
    b.LOSS.MSE_WEIGHT = 0.0
    b.LOSS.GDT_WEIGHT = 1.0  # gradient (out_ref) supervision
    b.LOSS.IOU_REDUCTION = "sum"  # official: summed over the batch (docs/birefnet.md#q5); fix: "mean"
    b.LOSS.GDT_DETACH_LABEL = False  # official: gradient label not detached (docs/birefnet.md#q7); fix: True
    # end-of-training switch: the last FINETUNE_LAST_ITERS iterations multiply the weights
    # (bce, iou, ssim, mae, mse) by FINETUNE_FACTORS at the start of each "epoch" of ITERS_PER_EPOCH iterations
    b.LOSS.FINETUNE_LAST_ITERS = 0
    b.LOSS.ITERS_PER_EPOCH = 1
    b.LOSS.FINETUNE_FACTORS = (0.0, 0.5, 1.0, 0.9, 1.0)  # Matting: (1, 1, 0.9, 1, 0.9)
    # official: the factors compound every epoch of the window (docs/birefnet.md#q8); fix: False applies once
    b.LOSS.FINETUNE_COMPOUND = True

    # training data: images and masks resized to SIZE with OpenCV bilinear, then flip / rotate / colour /
    # pepper (docs/birefnet.md, augmentation); DYNAMIC_SIZE = (hmin, hmax, wmin, wmax) draws one size per batch
    # (multiples of 32), the `_dynamic` recipe
    b.AUG = CN()
    b.AUG.FLIP = True
    b.AUG.ROTATE_PROB = 0.2
    b.AUG.ROTATE_DEGREES = 15
    b.AUG.ENHANCE = True
    b.AUG.PEPPER = 0.0015
    b.DYNAMIC_SIZE = ()
