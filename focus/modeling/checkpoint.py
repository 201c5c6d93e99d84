"""`FOCUSCheckpointer`: detectron2's checkpointer with bare-state-dict support and a single load summary."""
import logging
import pickle

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager
from fvcore.common.checkpoint import _filter_reused_missing_keys, _group_checkpoint_keys, _group_to_str

__all__ = ["FOCUSCheckpointer"]


def _grouped(keys):
    return sorted(k + _group_to_str(v) for k, v in _group_checkpoint_keys(keys).items())


class FOCUSCheckpointer(DetectionCheckpointer):
    """Loads official FOCUS checkpoints (`{"model": state_dict, ...}`) and bare state dicts with no key renaming.

    Keys under `sem_seg_head.predictor.clip_refiner.` are dropped by the predictor itself when the CLIP tower is
    not built (docs/focus.md#clip-training-only). Shape mismatches, missing and unexpected keys are logged as one
    warning.
    """

    _MODEL_PREFIXES = ("backbone.", "sem_seg_head.", "criterion.")

    def _load_file(self, filename):
        if filename.endswith(".safetensors"):  # e.g. a Hugging Face `model.safetensors` (a flat state dict)
            from safetensors.torch import load_file

            return {"model": load_file(filename)}
        return self._load_file_torch(filename)

    def _load_model(self, checkpoint):
        """Apply the model's `checkpoint_filter_fn(state_dict) -> state_dict` (timm-style hook) if it has one."""
        model = getattr(self.model, "module", self.model)
        filter_fn = getattr(model, "checkpoint_filter_fn", None)
        if callable(filter_fn):
            self._convert_ndarray_to_tensor(checkpoint["model"])
            checkpoint["model"] = filter_fn(checkpoint["model"])
        return super()._load_model(checkpoint)

    def _load_file_torch(self, filename):
        """`.pth`: detectron2 already wraps a bare state dict. `.pkl`: a FOCUS state dict (bare, or under
        "model" without detectron2's "__author__" tag) is loaded as is, never through detectron2's Caffe2 name
        conversion; any other `.pkl` (e.g. the converted DINOv2 weights, docs/focus.md#weights) goes to detectron2."""
        if filename.endswith(".pkl"):
            with PathManager.open(filename, "rb") as f:
                data = pickle.load(f, encoding="latin1")
            if isinstance(data, dict) and "__author__" not in data:
                if isinstance(data.get("model"), dict):
                    return data
                if data and all(str(k).startswith(self._MODEL_PREFIXES) for k in data):
                    return {"model": data}
        return super()._load_file(filename)

    def _log_incompatible_keys(self, incompatible):
        missing = _filter_reused_missing_keys(self.model, incompatible.missing_keys)
        lines = []
        if incompatible.incorrect_shapes:
            lines.append(f"{len(incompatible.incorrect_shapes)} tensors with a different shape (not loaded):")
            lines += [f"  {k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in incompatible.incorrect_shapes]
        if missing:
            lines.append(f"{len(missing)} model tensors not in the checkpoint (keep their initial values):")
            lines += ["  " + k for k in _grouped(missing)]
        if incompatible.unexpected_keys:
            lines.append(f"{len(incompatible.unexpected_keys)} checkpoint tensors not used by the model:")
            lines += ["  " + k for k in _grouped(incompatible.unexpected_keys)]
        if lines:
            logging.getLogger(__name__).warning("Checkpoint load summary:\n" + "\n".join(lines))
