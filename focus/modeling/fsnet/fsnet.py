"""FSNet (Full-Duplex Strategy Network, ICCV 2021) as a `focus` meta-architecture with the official names.

Three torchvision ResNet-50 trunks under ``resnet.*`` (RGB ``*_rgb``, flow ``*_flow``, and a merge trunk without
suffix whose stem is never used: docs/fsnet.md#q1), RCAM channel attention ``atten_{rgb,flow}_{0..4}``, DimReduce
``reduce_{a,m}{1..4}``, four BPMs, two decoders ``output_s``/``output_e`` and the unused ``RGBF_conv3``
(docs/fsnet.md#q2), so the released snapshot loads strictly once ``module.`` is stripped (`checkpoint_filter_fn`).

Input per sample: ``image`` and ``flow`` uint8 (3, S, S) (the test mapper squashes both to S = 352,
docs/fsnet.md#q10), ``height``/``width`` of the original frame. Both are normalised with ImageNet statistics
(docs/fsnet.md#q11).
"""
import contextlib
import logging

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F

from ..backbone.resnet import ResNetFeatures
from ..checkpoint import strip_prefixes
from .transfer import transfer_stage_weights
from .layers import BPM, BasicConv2d, Decoder, DimReduce, channel_attention, resize_as

__all__ = ["FSNet", "FSNetResNet", "minmax_normalize", "bytescale", "multiscale_size", "STREAM_MODES"]

logger = logging.getLogger(__name__)

STREAM_MODES = ("rgb+flow", "rgb", "flow")
_STREAMS = ("_rgb", "_flow", "")
_TRUNK_PARTS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class FSNetResNet(nn.Module):
    """The official three-trunk ``ResNet50`` container: the stems and stages of three shared `ResNetFeatures`
    (timm's ResNet-50, torchvision's names and function) registered as ``{conv1,bn1,relu,maxpool,layer1..4}``
    + ``_rgb`` / ``_flow`` / no suffix (the official key names and order)."""

    def __init__(self, depths=(3, 4, 6, 3)):
        super().__init__()
        for suffix in _STREAMS:
            net = ResNetFeatures(depths)
            for name in _TRUNK_PARTS:
                setattr(self, name + suffix, getattr(net, "act1" if name == "relu" else name))

    def trunk(self, suffix):
        """torchvision name -> module of one trunk (``"_rgb"``, ``"_flow"`` or ``""``)."""
        return {name: getattr(self, name + suffix) for name in _TRUNK_PARTS}

    def stem(self, x, suffix):
        return getattr(self, "relu" + suffix)(getattr(self, "bn1" + suffix)(getattr(self, "conv1" + suffix)(x)))

    def load_imagenet(self, state_dict):
        """Copy a torchvision ResNet-50 state dict (``conv1.weight``, ``layer1.0.conv1.weight``, ...; ``fc.*``
        ignored) into all three trunks, strictly (docs/fsnet.md#q18)."""
        for suffix in _STREAMS:
            for name, module in self.trunk(suffix).items():
                if module.state_dict():
                    module.load_state_dict({k[len(name) + 1:]: v for k, v in state_dict.items()
                                            if k.startswith(name + ".")}, strict=True)


def minmax_normalize(p, eps=1e-8):
    """Official per-frame stretch ``(p - min) / (max - min + eps)`` of an (H, W) map (docs/fsnet.md#q9)."""
    return (p - p.min()) / (p.max() - p.min() + eps)


def bytescale(p):
    """What the official script writes (scipy <= 1.2 ``imsave``/``bytescale``): the map stretched again to its own
    range, ``uint8(clip((p - min) * 255 / (max - min), 0, 255) + 0.5)`` (docs/fsnet.md#q9). (H, W) -> uint8."""
    lo, hi = p.min(), p.max()
    scale = 255.0 / (hi - lo) if hi > lo else torch.ones_like(hi)
    return (((p - lo) * scale).clamp(0, 255) + 0.5).to(torch.uint8)


def multiscale_size(size, scale):
    """Official training size for `scale`: ``round(size * scale / 32) * 32`` (352 -> 256, 352, 448)."""
    return int(round(size * scale / 32) * 32)


@META_ARCH_REGISTRY.register()
class FSNet(nn.Module):
    """FSNet meta-architecture (select with ``MODEL.META_ARCHITECTURE: FSNet``).

    Eval: one dict per input with ``foreground`` (H, W) float in [0, 1] (sigmoid of the appearance logits resized
    to ``height``/``width``, min-max stretched per frame by default: the official saved map), ``mask`` (H, W) bool
    ``foreground > mask_threshold`` (the official U-VOS binarisation, docs/fsnet.md#q9), ``motion`` (the same for
    the motion decoder, called ``edge`` officially: docs/fsnet.md#q20) and ``saved_png`` uint8 (what the official
    script writes). Train: ``{"loss_s", "loss_e"}``, BCE-with-logits of both decoders against the soft target
    ``sem_seg`` (float (H, W) in [0, 1]).
    """

    needs_flow = True  # read by the predictor/demo: each frame comes with a flow image (generic video hook)

    @configurable
    def __init__(self, *, channel=32, depths=(3, 4, 6, 3), num_bpm=4, streams="rgb+flow",
                 pixel_mean=(0.485, 0.456, 0.406), pixel_std=(0.229, 0.224, 0.225), minmax_normalize=True,
                 mask_threshold=0.5, bpm_fp32=True, train_scales=(0.75, 1.0, 1.25), multiscale_mode="cycle",
                 imagenet_weights="", transfer=None):
        super().__init__()
        if streams not in STREAM_MODES:
            raise ValueError(f"MODEL.FSNET.STREAMS must be one of {STREAM_MODES}, got {streams!r}")
        if multiscale_mode not in ("cycle", "sum"):
            raise ValueError(f"MODEL.FSNET.MULTISCALE_MODE must be 'cycle' or 'sum', got {multiscale_mode!r}")
        self.streams = streams
        self.minmax = minmax_normalize
        self.mask_threshold = mask_threshold
        self.bpm_fp32 = bpm_fp32
        # prepare_for_inference keeps these weights fp32 under a reduced-precision autocast (docs/fsnet.md#q7)
        self.autocast_fp32_modules = tuple(f"bpm{i}" for i in range(1, num_bpm + 1)) if bpm_fp32 else ()
        self.train_scales = tuple(train_scales)
        self.multiscale_mode = multiscale_mode
        self._scale_step = 0

        self.resnet = FSNetResNet(depths)
        widths = (64, 256, 512, 1024, 2048)
        for k, c in enumerate(widths):
            setattr(self, f"atten_rgb_{k}", channel_attention(c))
            setattr(self, f"atten_flow_{k}", channel_attention(c))
        for k, c in enumerate(widths[1:], start=1):
            setattr(self, f"reduce_a{k}", DimReduce(c, channel))
        for k, c in enumerate(widths[1:], start=1):
            setattr(self, f"reduce_m{k}", DimReduce(c, channel))
        self.num_bpm = num_bpm
        for i in range(1, num_bpm + 1):
            setattr(self, f"bpm{i}", BPM(channel))
        self.output_s = Decoder(channel)
        self.output_e = Decoder(channel)
        self.RGBF_conv3 = BasicConv2d(2048, 1024, 3, padding=1)  # never called (docs/fsnet.md#q2)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)
        self._init_weights(imagenet_weights)
        if transfer and (transfer.get("appearance") or transfer.get("motion")):
            transfer_stage_weights(self, **transfer)  # stage 3 of the official training (docs/fsnet.md#q14)

    @classmethod
    def from_config(cls, cfg):
        f = cfg.MODEL.FSNET
        return {
            "channel": f.CHANNEL,
            "depths": tuple(f.DEPTHS),
            "num_bpm": f.NUM_BPM,
            "streams": f.STREAMS,
            "pixel_mean": tuple(f.PIXEL_MEAN),
            "pixel_std": tuple(f.PIXEL_STD),
            "minmax_normalize": f.MINMAX_NORMALIZE,
            "mask_threshold": f.MASK_THRESHOLD,
            "bpm_fp32": f.BPM_FP32,
            "train_scales": tuple(f.TRAIN_SCALES),
            "multiscale_mode": f.MULTISCALE_MODE,
            "imagenet_weights": f.IMAGENET_WEIGHTS,
            # MODEL.WEIGHTS replaces every tensor anyway (e.g. evaluating the stage-3 result): no transfer then
            "transfer": None if cfg.MODEL.WEIGHTS else {
                "appearance": f.TRANSFER.APPEARANCE_WEIGHTS, "motion": f.TRANSFER.MOTION_WEIGHTS,
                "motion_bn_stats": f.TRANSFER.MOTION_BN_STATS},
        }

    def _init_weights(self, imagenet_weights):
        """Official init (docs/fsnet.md#q18): every conv N(0, 0.01), BN 1/0, then the ImageNet ResNet-50 copied
        into all three trunks, here from a local file (no download; "" keeps the N(0, 0.01) trunks)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if imagenet_weights:
            sd = torch.load(imagenet_weights, map_location="cpu", weights_only=True)
            sd = sd.get("state_dict", sd.get("model", sd))
            self.resnet.load_imagenet(sd)
            logger.info(f"FSNet: ImageNet ResNet-50 from {imagenet_weights} copied into the three trunks")

    @property
    def device(self):
        return self.pixel_mean.device

    def checkpoint_filter_fn(self, state_dict):
        """Released snapshot -> our keys: strip ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile)
        prefixes; names are otherwise the official ones, unused modules included."""
        return strip_prefixes(state_dict)

    # ------------------------------------------------------------------------------------------------- network
    def network(self, x, y):
        """Official ``FSNet.forward``: normalised frame ``x`` and flow image ``y`` (B, 3, H, W), H and W multiples of
        32 -> ``(pred_s, pred_e)`` logits (B, 1, H, W), resized from H/4 with bilinear ``align_corners=True``."""
        r = self.resnet
        x0 = r.stem(x, "_rgb")
        y0 = r.stem(y, "_flow")
        # crossed naming: atten_flow_k is computed from the flow and gates the RGB features (docs/fsnet.md#q4)
        m = x0 * self.atten_flow_0(y0) + y0 * self.atten_rgb_0(x0)
        xk, yk, m = r.maxpool_rgb(x0), r.maxpool_flow(y0), r.maxpool(m)  # no merge-trunk stem (#q5)
        merged, motion = [], []
        for k in range(1, 5):
            xk = getattr(r, f"layer{k}_rgb")(xk)
            yk = getattr(r, f"layer{k}_flow")(yk)
            # m_k = layer_k(m_{k-1}) + cross terms of level k, not the paper's eq. 3 (docs/fsnet.md#q5)
            m = getattr(r, f"layer{k}")(m) + xk * getattr(self, f"atten_flow_{k}")(yk) + yk * getattr(
                self, f"atten_rgb_{k}")(xk)
            merged.append(m)
            motion.append(yk)
        # appearance features from the fused stream, not the RGB trunk (docs/fsnet.md#q6)
        feats = [getattr(self, f"reduce_a{k}")(merged[k - 1]) for k in range(1, 5)]
        feats += [getattr(self, f"reduce_m{k}")(motion[k - 1]) for k in range(1, 5)]
        ctx = (torch.autocast(device_type=x.device.type, enabled=False)
               if self.bpm_fp32 and torch.is_autocast_enabled(x.device.type) else contextlib.nullcontext())
        with ctx:
            if self.bpm_fp32:
                feats = [f.float() for f in feats]
            for i in range(1, self.num_bpm + 1):
                feats = getattr(self, f"bpm{i}")(*feats)
        pred_s = self.output_s(*feats[:4])
        pred_e = self.output_e(*feats[4:])
        size = x.shape[2:]
        return resize_as(pred_s, size), resize_as(pred_e, size)

    # --------------------------------------------------------------------------------------------------- inputs
    def _normalize(self, images):
        """uint8 (B, 3, H, W) -> ``Normalize(mean, std)(ToTensor(.))`` in the same op order (same floats)."""
        x = images.to(self.device, torch.float32) / 255.0
        return (x - self.pixel_mean) / self.pixel_std

    def _stream_inputs(self, batched_inputs):
        """(x, y) for the RGB and flow trunks per ``streams``: frame + flow, frame twice, or flow twice (#q14)."""
        key = "flow" if self.streams == "flow" else "image"
        if self.streams != "rgb" and any("flow" not in d for d in batched_inputs):
            raise KeyError(f"FSNet (MODEL.FSNET.STREAMS: {self.streams}) needs a 'flow' image per input; "
                           "the FSNet mappers provide it")
        x = self._normalize(torch.stack([d[key] for d in batched_inputs]))
        if self.streams != "rgb+flow":
            return x, x
        return x, self._normalize(torch.stack([d["flow"] for d in batched_inputs]))

    # -------------------------------------------------------------------------------------------------- forward
    def forward(self, batched_inputs):
        x, y = self._stream_inputs(batched_inputs)
        if self.training:
            gt = torch.stack([d["sem_seg"] for d in batched_inputs]).to(self.device, torch.float32)
            return self.losses(x, y, gt.unsqueeze(1) if gt.ndim == 3 else gt)
        pred_s, pred_e = self.network(x, y)
        return [self.postprocess(pred_s[i], pred_e[i], d["height"], d["width"])
                for i, d in enumerate(batched_inputs)]

    def losses(self, x, y, gt):
        """Official training step(s): BCE-with-logits of ``pred_s`` and ``pred_e`` against the soft target, at
        the official scales (docs/fsnet.md#q16); inputs and target are resized with bilinear align_corners=True."""
        if self.multiscale_mode == "cycle":
            scales = [self.train_scales[self._scale_step % len(self.train_scales)]]
            self._scale_step += 1
        else:
            scales = self.train_scales
        loss_s = loss_e = 0.0
        for scale in scales:
            xs, ys, gts = x, y, gt
            if scale != 1:
                size = (multiscale_size(x.shape[2], scale), multiscale_size(x.shape[3], scale))
                xs, ys, gts = resize_as(x, size), resize_as(y, size), resize_as(gt, size)
            pred_s, pred_e = self.network(xs, ys)
            loss_s = loss_s + F.binary_cross_entropy_with_logits(pred_s.float(), gts)
            loss_e = loss_e + F.binary_cross_entropy_with_logits(pred_e.float(), gts)
        return {"loss_s": loss_s, "loss_e": loss_e}

    def postprocess(self, pred_s, pred_e, height, width):
        """Official ``infer.py`` steps (docs/fsnet.md#q9, #q10): logits (1, S, S) resized to (height, width)
        (bilinear, align_corners=True), sigmoid, per-frame min-max; mask = map > threshold."""
        out = {}
        for name, logits in (("foreground", pred_s), ("motion", pred_e)):
            p = resize_as(logits[None].float(), (height, width))[0, 0].sigmoid()
            out[name] = minmax_normalize(p) if self.minmax else p
        out["mask"] = out["foreground"] > self.mask_threshold
        out["saved_png"] = bytescale(out["foreground"])
        return out
