#!/usr/bin/env python
"""Convert an official DINOv2 checkpoint (and optionally torchvision's ResNet-50) into an init file for the
FOCUS backbone `D2DINOV2` (docs/focus.md#weights).

    python tools/convert_dinov2.py dinov2_vitl14_reg4_pretrain.pth ckpt/dinov2_vitl14_pretrain_updated.pkl \
        --resnet50 resnet50-0676ba61.pth

Mapping (exact key names, so detectron2's `DetectionCheckpointer` loads the result without matching heuristics):
* DINOv2 `cls_token`, `pos_embed`, `patch_embed.proj.*`, `blocks.{i}.*` -> `backbone.<same>`, with
  `blocks.{i}.ls1.gamma -> blocks.{i}.gamma1` and `ls2.gamma -> gamma2`; chunked layouts (`blocks.{c}.{i}.*`,
  DINOv2 `block_chunks > 0`) are flattened.
* dropped: `register_tokens` (FOCUS runs without registers, docs/focus.md#q10), `mask_token`, the final `norm.*`.
* torchvision ResNet-50 state dict minus `fc.*` -> `backbone.edge.*` (the edge prior's trunk; its `fc1..fc4`
  projections and the adapter keep their random init).

Output: `{"model": {key: tensor}, "__author__": "focus", "matching_heuristics": False}`, written with
`torch.save`, or with plain `pickle` (numpy arrays) when DST ends in `.pkl` (detectron2 reads `.pkl` with pickle).
Every rename and every dropped key is printed.
"""
import argparse
import os
import pickle
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from focus.utils.file_io import atomic_write  # noqa: E402
from focus.engine.cli import run_main  # noqa: E402
from focus.errors import UserError  # noqa: E402
from focus.modeling.checkpoint import load_state_file  # noqa: E402


class ConversionError(UserError, KeyError, ValueError):
    """The source file is not the checkpoint this tool converts (wrong keys or shapes)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""

MISSING_RESNET50_WARNING = (
    "=" * 100 + "\n"
    "WARNING: no --resnet50 given: the edge prior's ResNet-50 trunk (backbone.edge.*) will start from RANDOM\n"
    "weights. The official recipe initialises it from torchvision's ImageNet ResNet-50 (IMAGENET1K_V1,\n"
    "resnet50-0676ba61.pth); pass it with --resnet50 to train as the official code does.\n" + "=" * 100
)
DROPPED = ("register_tokens", "mask_token", "norm.weight", "norm.bias")
_TOP = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
_BLOCK = re.compile(
    r"^blocks\.(\d+)\.(?:norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2|mlp\.w12|mlp\.w3)\.(?:weight|bias)$"
    r"|^blocks\.(\d+)\.gamma[12]$"
)
_RESNET = re.compile(r"^(conv1|bn1|layer[1-4])\.")


def _unwrap(obj, path):
    """The tensor dict of a checkpoint: plain state dict, or under `model` / `state_dict` / `teacher`."""
    for key in ("model", "state_dict", "teacher"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ConversionError(f"{path}: expected a state dict of tensors")
    return obj


def convert_dinov2(state_dict, log=print, source="DINOv2 checkpoint"):
    """DINOv2 state dict -> `{backbone.<key>: tensor}` (see the module docstring); `log` receives each line."""
    out = {}
    for key, value in state_dict.items():
        new = key
        if key.startswith("backbone."):  # DINOv2 training checkpoints ("teacher" -> "backbone.*")
            new = key[len("backbone."):]
        if new in DROPPED or new.startswith(("dino_head.", "ibot_head.")):
            log(f"drop    {key} {tuple(value.shape)}")
            continue
        new = re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", new)  # chunked blocks
        new = re.sub(r"\.ls([12])\.gamma$", r".gamma\1", new)
        if new not in _TOP and not _BLOCK.match(new):
            raise ConversionError(f"{source}: unexpected key {key!r} (not a DINOv2 ViT key)")
        if new != key:
            log(f"rename  {key} -> backbone.{new}")
        if "backbone." + new in out:
            raise ConversionError(f"{source}: two keys map to backbone.{new}")
        out["backbone." + new] = value
    for key in ("cls_token", "pos_embed", "patch_embed.proj.weight"):
        if "backbone." + key not in out:
            raise ConversionError(f"{source}: missing {key!r}; is this a DINOv2 ViT checkpoint?")
    npos = out["backbone.pos_embed"].shape[1] - 1
    if int(npos**0.5) ** 2 != npos:
        raise ConversionError(f"{source}: pos_embed has {npos} patch positions, not a square grid (1 cls + k*k)")
    return out


def convert_resnet50(state_dict, log=print, source="ResNet-50 checkpoint"):
    """torchvision ResNet state dict -> `{backbone.edge.<key>: tensor}` without the classifier `fc.*`."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("fc."):
            log(f"drop    {key} {tuple(value.shape)}")
            continue
        if not _RESNET.match(key):
            raise ConversionError(f"{source}: unexpected key {key!r} (not a torchvision ResNet trunk key)")
        log(f"rename  {key} -> backbone.edge.{key}")
        out["backbone.edge." + key] = value
    return out


def save(model, path):
    """Write `{"model", "__author__": "focus", "matching_heuristics": False}` (pickle of numpy arrays for .pkl)."""
    data = {"model": model, "__author__": "focus", "matching_heuristics": False}
    if str(path).endswith(".pkl"):
        data["model"] = {k: v.detach().cpu().numpy() for k, v in model.items()}
        atomic_write(path, lambda f: pickle.dump(data, f))  # a failure or Ctrl-C never leaves a truncated file
    else:
        atomic_write(path, lambda f: torch.save(data, f))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="official DINOv2 checkpoint, e.g. dinov2_vitl14_reg4_pretrain.pth")
    parser.add_argument("dst", help="output file (.pth: torch.save; .pkl: pickle)")
    parser.add_argument("--resnet50", metavar="RESNET.pth", help="torchvision ResNet-50 ImageNet state dict")
    args = parser.parse_args(argv)

    model = convert_dinov2(_unwrap(load_state_file(args.src), args.src), source=args.src)
    if args.resnet50:
        sd = _unwrap(load_state_file(args.resnet50), args.resnet50)
        model.update(convert_resnet50(sd, source=args.resnet50))
    else:
        print(MISSING_RESNET50_WARNING, file=sys.stderr)
    save(model, args.dst)
    n = sum(v.numel() for v in model.values())
    print(f"wrote {len(model)} tensors ({n / 1e6:.1f} M values) to {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
