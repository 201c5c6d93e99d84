"""timm CNN backbones used as feature extractors by several members, with timm's own parameter names."""
import logging
import os

import torch

__all__ = ["build_timm_features", "load_timm_weights"]

logger = logging.getLogger(__name__)


def build_timm_features(model_name, out_indices=None, weights="", **kwargs):
    """`timm.create_model(model_name, features_only=True, pretrained=False, **kwargs)` (a `FeatureListNet` whose
    state-dict keys are those of the timm model without its head), optionally loaded from a local file.

    Args:
        model_name: timm architecture name, e.g. "resnet50".
        out_indices: feature levels to return (timm default: all).
        weights: "" (random initialisation) or a local timm/torchvision state dict (.pth/.safetensors) of the same
            architecture, e.g. timm's `resnet50.a1_in1k` weights; the classifier keys are dropped. Nothing is
            ever downloaded.
        kwargs: architecture overrides passed to timm (e.g. `layers=(1, 1, 1, 1)` for a reduced ResNet).
    """
    import timm

    if out_indices is not None:
        kwargs["out_indices"] = tuple(out_indices)
    model = timm.create_model(model_name, pretrained=False, features_only=True, **kwargs)
    if weights:
        load_timm_weights(model, weights)
    return model


def load_timm_weights(model, path):
    """Load a local timm state dict into a features-only model; keys the model lacks (the head) are dropped,
    every model key must be present. Returns `model`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone weights not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
    own = model.state_dict()
    dropped = sorted(k for k in state if k not in own)
    missing = sorted(k for k in own if k not in state)
    if missing:
        raise KeyError(f"{path} lacks {len(missing)} backbone tensors, e.g. {missing[:3]}")
    model.load_state_dict({k: v for k, v in state.items() if k in own})
    logger.info(f"Loaded backbone weights from {path} ({len(dropped)} head tensors not used)")
    return model
