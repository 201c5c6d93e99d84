"""Stage-to-stage weight transfer of FSNet's three-stage training (docs/fsnet.md#q14).

Stage 3 starts from every tensor of the stage-1 (appearance) checkpoint, then takes the flow trunk
(``resnet.{conv1,bn1,layer1..4}_flow``) from the stage-2 (motion) checkpoint. The official surgery matches the
stage-2 keys by substring and writes them back with their ``module.`` prefix, so its strict load fails; here every
checkpoint is read through the model's `checkpoint_filter_fn` first (``module.``/``_orig_mod.`` stripped, detectron2
``{"model": ...}`` files unwrapped), so the prefixes the stages wrote do not matter. As officially, the flow trunk's
BN running statistics stay those of stage 1 unless ``motion_bn_stats`` (``MODEL.FSNET.TRANSFER.MOTION_BN_STATS``).
"""
import logging
import re

import torch

__all__ = ["transfer_stage_weights", "read_state_dict", "FLOW_TRUNK"]

logger = logging.getLogger(__name__)

FLOW_TRUNK = re.compile(r"^resnet\.(conv1|bn1|layer[1-4])_flow\.")
_BN_STATS = (".running_mean", ".running_var")


def read_state_dict(path, model):
    """{key: tensor} of a checkpoint file (bare state dict or ``{"model": ...}``), through ``model.checkpoint_filter_fn``."""
    data = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    return model.checkpoint_filter_fn(data)


def transfer_stage_weights(model, appearance="", motion="", motion_bn_stats=False):
    """Load the stage-1 checkpoint `appearance` (all keys, strict) and the flow trunk of the stage-2 checkpoint
    `motion` into `model` (in place). Either path may be ""; returns the list of keys taken from `motion`."""
    own = model.state_dict()
    new = {}
    if appearance:
        sd = read_state_dict(appearance, model)
        missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
        if missing or unexpected:
            raise KeyError(f"{appearance}: not an FSNet checkpoint of this architecture "
                           f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        new.update(sd)
    taken = []
    if motion:
        sd = read_state_dict(motion, model)
        for k, v in sd.items():
            if FLOW_TRUNK.match(k) and (motion_bn_stats or not k.endswith(_BN_STATS)):
                if k not in own:
                    raise KeyError(f"{motion}: {k} is not a key of the model")
                new[k] = v
                taken.append(k)
        if not taken:
            raise KeyError(f"{motion}: no flow-trunk key (resnet.*_flow) found")
    if new:
        with torch.no_grad():
            for k, v in new.items():
                own[k].copy_(v)
        logger.info(f"FSNet transfer: {len(new) - len(taken)} tensors from {appearance or '-'}, "
                    f"{len(taken)} flow-trunk tensors from {motion or '-'}")
    return taken
