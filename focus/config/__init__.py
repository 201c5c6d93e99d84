"""Configuration keys of `focus`: FOCUS's (and the shared ones) here, each other member's in
`focus/config/<member>.py`.

`add_focus_config(cfg)` is the only config function a caller needs: it adds every member's keys, and detectron2's DeepLab keys
(`SOLVER.POLY_LR_*`) and every key used by the official FOCUS YAMLs, under their official names
(docs/focus.md#config-keys, docs/focus.md#backbone-config), so that an official YAML and official command-line overrides
merge unchanged. Keys that exist only in `focus` (fixes of official defects, protocol choices, speed
options) are grouped at the end of each section and named after what they change.

Defaults are the official *code* defaults (which differ from every shipped YAML, docs/focus.md#q22);
the values that the shipped models use live in `configs/Base-FOCUS.yaml` and its leaves.
"""
import os

from detectron2.config import CfgNode as CN

from .birefnet import add_birefnet_config
from .fsnet import add_fsnet_config
from .run import add_run_config
from .ws_sam import add_ws_sam_config

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

__all__ = ["add_focus_config", "get_focus_cfg", "inference_config"]


def _add_deeplab_config(cfg):
    """Keys of `detectron2.projects.deeplab.add_deeplab_config` that FOCUS uses (WarmupPolyLR)."""
    try:
        from detectron2.projects.deeplab import add_deeplab_config
    except ImportError:  # a detectron2 installed without its `projects` package
        add_deeplab_config = None
    if add_deeplab_config is not None:
        add_deeplab_config(cfg)
        return
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0
    cfg.SOLVER.POLY_LR_POWER = 0.9
    cfg.SOLVER.POLY_LR_CONSTANT_ENDING = 0.0
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "hard_pixel_mining"
    cfg.MODEL.SEM_SEG_HEAD.PROJECT_FEATURES = ["res2"]
    cfg.MODEL.SEM_SEG_HEAD.PROJECT_CHANNELS = [48]
    cfg.MODEL.SEM_SEG_HEAD.ASPP_CHANNELS = 256
    cfg.MODEL.SEM_SEG_HEAD.ASPP_DILATIONS = [6, 12, 18]
    cfg.MODEL.SEM_SEG_HEAD.ASPP_DROPOUT = 0.1
    cfg.MODEL.SEM_SEG_HEAD.USE_DEPTHWISE_SEPARABLE_CONV = False
    cfg.MODEL.RESNETS.RES5_MULTI_GRID = [1, 2, 4]
    cfg.MODEL.RESNETS.STEM_TYPE = "deeplab"


def _add_mask_former_config(cfg):
    """`MODEL.MASK_FORMER`, `MODEL.SEM_SEG_HEAD`, `INPUT`, `SOLVER`, `WANDB` keys (docs/focus.md#config-keys)."""
    # data
    cfg.INPUT.DATASET_MAPPER_NAME = "focus_dataset_mapper"  # training mapper, a name in focus.data.MAPPER_REGISTRY
    cfg.INPUT.TEST_MAPPER_NAME = "focus_test_mapper"  # inference mapper (evaluation, predictor, demo)
    cfg.INPUT.COLOR_AUG_SSD = False  # SSD-style colour augmentation in the training mapper
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0  # 1.0 makes the category-constrained crop a plain crop
    # official mapper: a fixed pad/crop *target size* (512), docs/datasets.md#train-mapper step 5
    cfg.INPUT.SIZE_DIVISIBILITY = -1
    cfg.INPUT.IMAGE_SIZE = 1024  # unused (Mask2Former LSJ leftover)
    cfg.INPUT.MIN_SCALE = 0.1  # unused
    cfg.INPUT.MAX_SCALE = 2.0  # unused
    # focus: "fixed" pads/crops every sample to exactly SIZE_DIVISIBILITY (official, docs/focus.md#q6);
    # "divisible" pads up to the next multiple instead and never crops
    cfg.INPUT.SIZE_DIVISIBILITY_MODE = "fixed"

    # solver
    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0  # weight decay of nn.Embedding parameters
    cfg.SOLVER.OPTIMIZER = "ADAMW"  # "ADAMW" or "SGD"
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1  # lr multiplier of every parameter under `backbone`
    # focus: autocast dtype when SOLVER.AMP.ENABLED: "auto" = fp16 on CUDA, bf16 on CPU
    cfg.SOLVER.AMP.DTYPE = "auto"

    # experiment tracking
    cfg.WANDB = CN()
    cfg.WANDB.PROJECT = "FOCUS"  # Weights & Biases project (only used if wandb is installed and enabled)
    cfg.WANDB.NAME = None  # run name
    cfg.TEST.WANDBENABLE = False  # log to Weights & Biases

    # meta-architecture
    cfg.MODEL.IS_TRAIN = True  # unused (official leftover)
    cfg.MODEL.IS_DEMO = False  # unused (official leftover)
    cfg.MODEL.MASK_FORMER = CN()
    mf = cfg.MODEL.MASK_FORMER
    mf.DEEP_SUPERVISION = True  # losses on every intermediate decoder prediction
    mf.NO_OBJECT_WEIGHT = 0.1  # class weight of the no-object class in loss_ce
    mf.CLASS_WEIGHT = 1.0  # loss_ce weight and matcher class cost
    mf.DICE_WEIGHT = 5.0  # loss_dice weight and matcher dice cost
    mf.MASK_WEIGHT = 5.0  # loss_mask (BCE) weight and matcher mask cost
    mf.CLIP_WEIGHT = 5.0  # loss_clip weight (CLIP contrastive distillation)
    mf.L2_WEIGHT = 5.0  # weight of the disabled loss_l2 (dead in the official code)
    mf.COS_WEIGHT = 3.0  # weight of the disabled loss_cosine (dead in the official code)
    mf.BBOX_WEIGHT = 3.0  # loss_bbox (L1) weight
    mf.GIOU_WEIGHT = 3.0  # loss_giou weight
    mf.NHEADS = 8  # attention heads of the decoder and of the pixel-decoder encoder
    mf.DROPOUT = 0.1  # dropout of decoder and pixel-decoder encoder
    mf.DIM_FEEDFORWARD = 2048  # decoder FFN width
    mf.ENC_LAYERS = 0  # unused
    mf.DEC_LAYERS = 6  # number of predictions; DEC_LAYERS - 1 decoder layers
    mf.PRE_NORM = False  # pre-norm decoder layers (unused by the shipped configs)
    mf.HIDDEN_DIM = 256  # decoder width
    mf.NUM_OBJECT_QUERIES = 100  # number of queries (FOCUS uses 2)
    mf.TEXT_FEATURE = []  # unused
    mf.TRANSFORMER_IN_FEATURE = "res5"  # "multi_scale_pixel_decoder" for FOCUS
    mf.ENFORCE_INPUT_PROJ = False  # force a 1x1 projection in front of the decoder
    mf.TRANSFORMER_DECODER_NAME = "MultiScaleMaskedTransformerDecoder"  # TRANSFORMER_DECODER_REGISTRY name
    mf.SIZE_DIVISIBILITY = 32  # ignored: the backbone's size_divisibility (32) is used (docs/focus.md#inference step 3)
    mf.TRAIN_NUM_POINTS = 112 * 112  # points sampled for the mask losses and the matcher
    mf.OVERSAMPLE_RATIO = 3.0  # PointRend importance sampling: oversampling
    mf.IMPORTANCE_SAMPLE_RATIO = 0.75  # PointRend importance sampling: fraction of uncertain points
    mf.TEST = CN()
    mf.TEST.SEMANTIC_ON = True  # return `sem_seg`
    mf.TEST.INSTANCE_ON = False  # return `instances` (merged binary mask); forces the two-step resize
    mf.TEST.PANOPTIC_ON = False  # unused (Mask2Former leftover)
    mf.TEST.DETECTIONS_PER_IMAGE = 100  # top-k entries in instance inference (FOCUS: 4 = all)
    mf.TEST.OBJECT_MASK_THRESHOLD = 0.0  # panoptic only (unused)
    mf.TEST.OVERLAP_THRESHOLD = 0.0  # panoptic only (unused)
    mf.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE = False  # resize logits before inference (forced by INSTANCE_ON)

    # pixel decoder
    sh = cfg.MODEL.SEM_SEG_HEAD
    sh.MASK_DIM = 256  # mask-feature width
    sh.TRANSFORMER_ENC_LAYERS = 0  # deformable encoder layers of the pixel decoder
    sh.PIXEL_DECODER_NAME = "BasePixelDecoder"  # PIXEL_DECODER_REGISTRY name
    sh.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES = ["res3", "res4", "res5"]  # encoder input levels
    sh.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS = 4  # not read (hard-coded 4), kept for YAML compatibility
    sh.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS = 8  # not read (NHEADS is used), kept for YAML compatibility
    # focus: gradient checkpointing of the pixel-decoder encoder layers (same values and gradients, less memory)
    sh.WITH_CP = False
    # focus: FFN width of the pixel-decoder encoder (hard-coded 1024 in the official code)
    sh.DEFORMABLE_TRANSFORMER_ENCODER_DIM_FEEDFORWARD = 1024


def _add_dinov2_config(cfg):
    """`MODEL.DINOV2`: the DINOv2 ViT-Adapter backbone with edge prior (docs/focus.md#backbone-config)."""
    cfg.MODEL.DINOV2 = CN()
    d = cfg.MODEL.DINOV2
    d.EMBED_DIM = 64  # ViT width D (1024 L, 1536 G)
    d.NUM_HEADS = 12  # ViT attention heads
    d.DEPTH = 40  # ViT blocks
    d.FFN_TYPE = "swiglu"  # "mlp" (L) or "swiglu" (G)
    d.IN_PATCH_SIZE = 4  # patch size (14 for DINOv2)
    d.PRETRAIN_IMG_SIZE = 224  # only used to reshape the pos-embed grid (518 -> 37x37)
    d.DEFORM_NUM_HEADS = 6  # heads of the adapter's deformable attention
    d.N_POINTS = 4  # sampling points of the adapter's deformable attention
    d.DEFORM_RATIO = 1.0  # value-projection width ratio of the adapter's deformable attention
    d.INIT_VALUES = 0.0  # initial injector gamma
    d.WITH_CFFN = True  # ConvFFN in the extractors
    d.CFFN_RATIO = 0.25  # ConvFFN hidden-width ratio
    d.INTERACTION_INDEXES = [[0, 9], [10, 19], [20, 29], [30, 39]]  # ViT block ranges per interaction
    d.USE_EXTRA_EXTRATOR = True  # (sic) two extra extractors in the last interaction
    d.ADD_VIT_FEATURE = True  # add resized ViT outputs to the adapter pyramid
    d.USE_CLS = True  # keep the cls token through the blocks
    d.WITH_CP = False  # gradient checkpointing of ViT blocks, injectors and extractors
    d.FREEZE_VIT = False  # freeze the ViT parameters
    d.CONV_INPLANE = 64  # unused (the edge ResNet hard-codes 64)
    d.PRETRAINED = None  # unused
    d.DEPTHS = [3, 3, 27, 3]  # unused
    d.OUT_FEATURES = ["res2", "res3", "res4", "res5"]  # returned pyramid levels
    # focus: compute the Canny edge overlay from the un-normalised RGB image instead of the normalised,
    # contrast-clipped BGR tensor (docs/focus.md#q4). Not checkpoint-equivalent.
    d.EDGE_FROM_RGB = False
    d.DROP_PATH_RATE = 0.4  # stochastic depth (hard-coded 0.4 in the official code)
    # focus: size of the edge-prior ResNet (official: ResNet-50 = [3, 4, 6, 3] blocks, stem width 64);
    # smaller values only for tiny CPU configs (not checkpoint-compatible)
    d.EDGE_DEPTHS = [3, 4, 6, 3]
    d.EDGE_WIDTH = 64


def _add_cliprefiner_config(cfg):
    """`MODEL.CLIP_REFINER`: frozen CLIP ViT-B/16 distillation, training only (docs/focus.md#clip)."""
    cfg.MODEL.CLIP_REFINER = CN()
    c = cfg.MODEL.CLIP_REFINER
    c.TEXT_TEMPLATES = "vild"  # prompt templates: "vild", "imagenet" or "predefined"
    c.PREDEFINED_PROMPT_TEMPLATES = ["a photo of a {}."]  # templates for TEXT_TEMPLATES="predefined"
    c.PROMPT_CHECKPOINT = ""  # unused
    c.CLIP_MODEL_NAME = "ViT-B/16"  # CLIP architecture (built offline with random weights unless loaded)
    c.MASK_FILL = "mean"  # unused
    c.MASK_EXPAND_RATIO = 1.0  # unused
    c.MASK_THR = 0.4  # unused (discarded binary mask)
    c.MASK_MATTING = False  # unused
    c.REGION_RESIZED = True  # resize regions to the CLIP input size
    c.CLIP_ENSEMBLE = True  # stored, never used (CLIP is not used at inference, docs/focus.md#clip-training-only)
    c.CLIP_ENSEMBLE_WEIGHT = 0.7  # stored, never used
    c.MASK_PROMPT_DEPTH = 3  # CLIP blocks that receive the mask-prompt embedding
    c.MASK_PROMPT_FWD = False  # feed region masks as mask prompts
    c.PROMPTS = []  # [foreground prompt, background prompt]
    # focus: build the CLIP tower (training only; inference never needs it)
    c.ENABLED = False
    # focus: fix the inert mask prompt (single sigmoid, CLIP statistics on the RGB image, docs/focus.md#q7).
    # Changes training only.
    c.FIX_REGION_INPUTS = False
    # focus: divide (not multiply) the contrastive target similarity by the temperature (docs/focus.md#q8)
    c.FIX_LOSS_TARGET = False
    # focus: a local CLIP state dict (OpenAI or open_clip layout) to initialise the tower; "" = random
    c.WEIGHTS = ""
    # focus: accept a CLIP tower with random weights in training (tests, the quick start); otherwise training with
    # CLIP enabled stops unless WEIGHTS or MODEL.WEIGHTS provides the tower
    c.ALLOW_RANDOM_WEIGHTS = False
    # focus: compute loss_clip in fp32 under mixed precision (official: in the autocast dtype, whose rounding of
    # logits up to ~7e3 is coarse); no effect without autocast
    c.LOSS_FP32 = False


def _add_focus_extras(cfg):
    """Keys that exist only in `focus`: evaluation protocol, datasets from folders, inference options."""
    # "standard" (pysodmetrics on soft maps), "focus" (official FOCUS), "both", "dis" (DIS5K suite with HCE, mBA,
    # boundary IoU) or "vos" (DAVIS-2016 J&F + V-SOD per sequence); docs/evaluation.md
    cfg.TEST.EVAL_PROTOCOL = "standard"
    # vos: exact decay bin boundaries; False reproduces the official uint8 ones (docs/evaluation.md#vos-decay)
    cfg.TEST.VOS_EXACT_DECAY_BINS = False
    cfg.TEST.SAVE_PER_IMAGE = True  # write per-image metrics next to the summary
    # Inference preparation (`focus.modeling.inference.prepare_for_inference`, applied by the predictor, the demo,
    # --eval-only and the benchmark; never by a forward). dtype: "fp32", "bf16" or "fp16" (weights stored in it)
    cfg.TEST.INFERENCE_DTYPE = "fp32"
    # how a reduced INFERENCE_DTYPE applies: "autocast" (matmul weights in the dtype, the rest fp32: the fp32
    # model's numerics under autocast) or "full" (every weight and activation in the dtype)
    cfg.TEST.INFERENCE_CAST = "autocast"
    # on CPU: nn.Linear weights packed once for oneDNN (faster matrix products than F.linear;
    # docs/speed_memory.md#packing)
    cfg.TEST.INFERENCE_PACK = True
    # training skips samples with an unreadable image or a mask that does not fit it (one warning each, reported
    # at the end) and stops only when more than this share of the training samples is bad (focus.data.faults)
    cfg.DATALOADER.MAX_BAD_SAMPLE_FRACTION = 0.2
    for key in ("INFERENCE_DTYPE", "INFERENCE_CAST", "INFERENCE_PACK"):
        cfg.register_renamed_key(f"MODEL.FOCUS.{key}", f"TEST.{key}")
    # solver options some members' official recipes need (focus.engine.lr_scheduler, build_optimizer):
    # clip (SOLVER.CLIP_GRADIENTS) *after* optimizer.step instead of before, i.e. without effect on the update
    cfg.SOLVER.CLIP_GRADIENTS.AFTER_STEP = False
    # "EpochStepDecayRecursiveCosineLR": per epoch of EPOCH_ITERS iterations, lr = BASE_LR * GAMMA^(epoch //
    # STEP_DECAY) then one recursive CosineAnnealingLR(T_MAX, ETA_MIN) step on it (PyTorch's closed recursion)
    cfg.SOLVER.EPOCH_ITERS = 0
    cfg.SOLVER.EPOCH_STEP_DECAY = 80
    cfg.SOLVER.EPOCH_STEP_GAMMA = 0.1
    cfg.SOLVER.EPOCH_COSINE_T_MAX = 20
    cfg.SOLVER.EPOCH_COSINE_ETA_MIN = 0.0
    # "PeriodicCosineLR": CosineAnnealingLR(EPOCH_COSINE_T_MAX, EPOCH_COSINE_ETA_MIN) stepped before every epoch of
    # EPOCH_ITERS iterations and continued past T_max (periodic), without step decay (docs/ws_sam.md#q7)
    # training-time budget in seconds (0: none): training ends after the iteration at which the time spent in
    # iterations (data, forward, backward, update; not checkpoints nor evaluations; cumulative over --resume) exceeds
    # it, with model_final.pth and the final evaluation; the lr schedule stays that of MAX_ITER
    # (focus.engine.hooks.TimeBudget, docs/focus.md#training-options)
    cfg.SOLVER.MAX_TIME = 0  # whole seconds
    # keep the weights of the evaluation with the best value of this metric of the first DATASETS.TEST entry (a name
    # of the evaluation table, e.g. "Smeasure"; "": off) in OUTPUT_DIR/model_best.pth; BEST_MODE "max" or "min"
    cfg.TEST.BEST_METRIC = ""
    cfg.TEST.BEST_MODE = "max"


def get_focus_cfg(config_file=None, opts=()):
    """A new (unfrozen) config: detectron2's defaults, every `focus` key, then `config_file` (a path; a relative
    path that does not exist is looked up under the repository's `configs/`) and `KEY VALUE` `opts`."""
    from detectron2.config import get_cfg

    import yaml

    from ..errors import MissingFileError

    cfg = add_focus_config(get_cfg())
    if config_file is not None:
        path = str(config_file)
        if not os.path.isfile(path):
            candidate = os.path.join(_REPO_ROOT, "configs", path)
            if not os.path.isfile(candidate):
                raise MissingFileError(f"config file not found: {config_file}; check --config-file", config_file)
            path = candidate
        try:
            cfg.merge_from_file(path)
        except (KeyError, ValueError, AssertionError, TypeError, yaml.YAMLError) as e:
            raise _config_error(e, f"config file {path}") from None
    try:
        cfg.merge_from_list([str(o) if not isinstance(o, str) else o for o in opts])
    except (KeyError, ValueError, AssertionError, TypeError) as e:
        raise _config_error(e, "the command-line overrides") from None
    return cfg


def _config_error(e, where):
    """One-line `UserError` for a yacs/YAML failure `e` (unknown key, wrong type, odd override list, bad YAML)
    naming the key or file and what to do."""
    from ..errors import UserError

    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    msg = " ".join(msg.split())
    if "Non-existent" in msg:
        key = msg.split(":", 1)[-1].strip()
        return UserError(f"unknown config key {key} in {where}; check its spelling (keys are listed in "
                         f"focus/config.py, the members' config.py and detectron2's defaults)")
    if msg.startswith("Type mismatch"):
        return UserError(f"config value of the wrong type in {where}: {msg}")
    if "odd length" in msg:
        return UserError(f"config overrides must be KEY VALUE pairs: {msg}")
    return UserError(f"cannot read {where}: {msg}")


def inference_config(cfg):
    """A frozen copy of `cfg` for inference: training-only parts are not built (FOCUS's CLIP tower,
    docs/focus.md#clip-training-only)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.CLIP_REFINER.ENABLED = False
    cfg.freeze()
    return cfg


def add_focus_config(cfg):
    """Add every `focus` key to a detectron2 config `cfg` (in place) and return it.

    Call it once on `detectron2.config.get_cfg()` before merging a `focus` or official FOCUS YAML.
    """
    if hasattr(cfg.MODEL, "DINOV2"):
        return cfg
    _add_deeplab_config(cfg)
    _add_mask_former_config(cfg)
    _add_dinov2_config(cfg)
    _add_cliprefiner_config(cfg)
    _add_focus_extras(cfg)
    add_birefnet_config(cfg)
    add_fsnet_config(cfg)
    add_run_config(cfg)
    add_ws_sam_config(cfg)
    return cfg
