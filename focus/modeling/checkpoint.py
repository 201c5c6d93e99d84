"""`FOCUSCheckpointer`: detectron2's checkpointer with safe loading, bare-state-dict support, a member hook
(`checkpoint_filter_fn`) and a single load summary.

No weight file can run code when loaded: `.pth` (and `.pyth`) go through `torch.load(weights_only=True)`,
`.safetensors` through `safetensors`, and `.pkl` through `SafeUnpickler`, which admits only plain containers,
numbers, strings and numpy arrays. A file that needs anything else is refused with `UnsafeCheckpointError`, a
missing or unreadable one with `UserError`, both naming the file.
"""
import logging
import os
import pickle
import re
import warnings
import zipfile
from urllib.parse import parse_qs

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager
from fvcore.common.checkpoint import _filter_reused_missing_keys, _group_checkpoint_keys, _group_to_str

from ..errors import UnsafeCheckpointError, UserError

__all__ = ["FOCUSCheckpointer", "SafeUnpickler", "safe_pickle_load", "safe_torch_load", "load_state_file"]


WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def strip_prefixes(state_dict, prefixes=WRAPPER_PREFIXES):
    """`state_dict` with every leading run of training-wrapper prefixes removed from its keys, in any order
    (`module.` from DataParallel/DDP, `_orig_mod.` from torch.compile): what released files of members hold."""

    def strip(key):
        changed = True
        while changed:
            changed = False
            for p in prefixes:
                if key.startswith(p):
                    key, changed = key[len(p):], True
        return key

    return {strip(k): v for k, v in state_dict.items()}


def _grouped(keys):
    return sorted(k + _group_to_str(v) for k, v in _group_checkpoint_keys(keys).items())


_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric")


class _Refused(pickle.UnpicklingError):
    """A global outside `SafeUnpickler.ALLOWED`; the message is its dotted name."""


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed by plain containers, numbers, strings and numpy arrays.

    Dicts, lists, tuples, strings and numbers are pickle opcodes and need no global; numpy arrays need their
    reconstructors and `numpy.dtype`; protocol-2 byte strings need `_codecs.encode`. Any other global (a
    function such as `os.system`, a class whose construction runs code, a torch tensor) raises
    `pickle.UnpicklingError` naming it, before anything is called.
    """

    ALLOWED = {
        ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"), ("builtins", "bytearray"),
        ("__builtin__", "set"), ("__builtin__", "frozenset"), ("__builtin__", "complex"),
        ("collections", "OrderedDict"), ("_codecs", "encode"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    } | {(m, n) for m in _NUMPY_MODULES for n in ("_reconstruct", "scalar", "_frombuffer")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise _Refused(f"{module}.{name}")


def safe_pickle_load(f, filename="<pickle>"):
    """Load a pickle (`.pkl`) from the binary file object `f` through `SafeUnpickler`.

    Raises `UnsafeCheckpointError` if it needs a global outside the allowed set, `UserError` if it is corrupt.
    """
    try:
        return SafeUnpickler(f, encoding="latin1").load()
    except _Refused as e:
        raise UnsafeCheckpointError(
            f"refused to load {filename}: it contains `{e}`, which is not a plain container, number, string or "
            f"numpy array, and unpickling it could run code. Re-save the weights as a state dict of tensors "
            f"(.pth, .safetensors) or numpy arrays (.pkl) with the tool that made them."
        ) from None
    except Exception as e:  # any failure to parse these untrusted bytes means "not a readable weight file"
        raise UserError(f"cannot read {filename}: not a valid pickle ({type(e).__name__}: {e}); the file may be "
                        f"truncated or not a weight file, download or convert it again") from None


def safe_torch_load(filename):
    """`torch.load(filename, weights_only=True)` on CPU, with refusals and corrupt files turned into one-line
    `UnsafeCheckpointError` / `UserError` messages naming `filename`.

    A file that is not a torch zip archive and that torch's legacy reader rejects may be a plain pickle (e.g. a
    dict of numpy arrays saved with `pickle.dump` under a `.pth` name): it is then read by `SafeUnpickler`,
    which either loads it safely or names the global it refuses.
    """
    try:
        with PathManager.open(filename, "rb") as f, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # any failure to parse these untrusted bytes means "not a readable checkpoint"
        with PathManager.open(filename, "rb") as f:
            is_zip = zipfile.is_zipfile(f)
        if not is_zip:
            try:
                with PathManager.open(filename, "rb") as f:
                    return safe_pickle_load(f, filename)
            except UnsafeCheckpointError:
                raise
            except UserError:
                pass
        _raise_torch_load_error(filename, e)


def _raise_torch_load_error(filename, e):
    if isinstance(e, pickle.UnpicklingError):
        msg = str(e)
        if "Weights only load failed" in msg:
            m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", msg)
            what = f"`{m.group(1)}`" if m else "an object that is not a tensor, number, string or container"
            raise UnsafeCheckpointError(
                f"refused to load {filename}: it contains {what}, which torch.load(weights_only=True) does not "
                f"admit, and unpickling it could run code. Re-save only the state dict (tensors) with the tool "
                f"that made it, or as .safetensors."
            ) from None
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(f"cannot read {filename}: not a valid checkpoint ({first}); the file may be truncated, "
                    f"download or copy it again") from None


def _safetensors_load(filename):
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    try:
        with PathManager.open(filename, "rb") as f:
            return st_load(f.read())
    except SafetensorError as e:
        raise UserError(f"cannot read {filename}: not a valid .safetensors file ({e}); the file may be truncated, "
                        f"download or copy it again") from None


def load_state_file(filename):
    """Read a weight file by extension, safely: `.safetensors` -> dict of tensors, `.pkl` -> the unpickled plain
    object (numpy arrays), anything else -> `torch.load(weights_only=True)`. Missing file -> `UserError`."""
    if not os.path.isfile(filename):
        raise UserError(f"weight file not found: {filename}; check the path")
    if filename.endswith(".safetensors"):
        return _safetensors_load(filename)
    if filename.endswith(".pkl"):
        with PathManager.open(filename, "rb") as f:
            return safe_pickle_load(f, filename)
    return safe_torch_load(filename)


class FOCUSCheckpointer(DetectionCheckpointer):
    """Loads official checkpoints (`{"model": state_dict, ...}`), bare state dicts and `.safetensors` files
    with no key renaming, never running code from the file (see the module docstring).

    If the model defines `checkpoint_filter_fn(self, state_dict) -> state_dict` (timm-style), it is applied to the
    loaded state dict before loading: members use it to strip `module.`/`_orig_mod.` prefixes, drop or rename
    keys of their authors' released files. Keys under `sem_seg_head.predictor.clip_refiner.` are dropped by the
    transformer decoder itself when the CLIP tower is not built (docs/focus.md#clip-training-only). Shape
    mismatches, missing and unexpected keys are logged as one warning.
    """

    _MODEL_PREFIXES = ("backbone.", "sem_seg_head.", "criterion.")

    def load(self, path, *args, **kwargs):
        if path and "://" not in path and not os.path.isfile(path.split("?", 1)[0]):
            raise UserError(f"checkpoint not found: {path}; check MODEL.WEIGHTS (or the path you gave)")
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename):
        """`.safetensors`: a bare state dict. `.pkl` (safe unpickler): a FOCUS state dict (bare, or under "model"
        without detectron2's "__author__" tag) is loaded as is; any other `.pkl` (the converted DINOv2 weights,
        docs/focus.md#weights, or a detectron2/Caffe2 model-zoo file) follows detectron2's rules, including its
        Caffe2 name matching. `.pth` and others: `torch.load(weights_only=True)`, with detectron2's query handling."""
        if filename.endswith(".safetensors"):
            return {"model": _safetensors_load(filename)}
        if filename.endswith(".pkl"):
            with PathManager.open(filename, "rb") as f:
                data = safe_pickle_load(f, filename)
            if not isinstance(data, dict):
                raise UserError(f"cannot load {filename}: it holds a {type(data).__name__}, not a state dict")
            if "__author__" not in data:
                if isinstance(data.get("model"), dict):
                    return data
                if data and all(str(k).startswith(self._MODEL_PREFIXES) for k in data):
                    return {"model": data}
            # detectron2's .pkl rules (DetectionCheckpointer._load_file), on the safely loaded data
            if "model" in data and "__author__" in data:
                self.logger.info("Reading a file from '{}'".format(data["__author__"]))
                return data
            if "blobs" in data:
                data = data["blobs"]
            data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
            return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
        if filename.endswith(".pyth"):
            data = self._torch_load(filename)
            if not isinstance(data, dict) or "model_state" not in data:
                raise UserError(f"cannot load {filename}: pycls checkpoints (.pyth) must contain 'model_state'")
            model_state = {k: v for k, v in data["model_state"].items() if not k.endswith("num_batches_tracked")}
            return {"model": model_state, "__author__": "pycls", "matching_heuristics": True}
        loaded = self._torch_load(filename)
        if not isinstance(loaded, dict):
            raise UserError(f"cannot load {filename}: it holds a {type(loaded).__name__}, not a state dict")
        if "model" not in loaded:
            loaded = {"model": loaded}
        parsed_url = self._parsed_url_during_load
        queries = parse_qs(parsed_url.query) if parsed_url is not None else {}
        if queries.pop("matching_heuristics", "False") == ["True"]:
            loaded["matching_heuristics"] = True
        if queries:
            raise UserError(f"unsupported query {queries} in checkpoint path {parsed_url.geturl()}")
        return loaded

    def _torch_load(self, f):
        return safe_torch_load(f)

    def _load_model(self, checkpoint):
        """Apply the model's `checkpoint_filter_fn(state_dict) -> state_dict` (timm-style, when it has one: strip
        prefixes, drop or rename keys of released files) before loading."""
        model = getattr(self.model, "module", self.model)  # DDP-wrapped during training
        filter_fn = getattr(model, "checkpoint_filter_fn", None)
        if callable(filter_fn):
            state_dict = checkpoint["model"]
            if not isinstance(state_dict, dict):
                raise UserError(f"the checkpoint's 'model' entry is a {type(state_dict).__name__}, not a state dict")
            self._convert_ndarray_to_tensor(state_dict)
            checkpoint["model"] = filter_fn(state_dict)
        return super()._load_model(checkpoint)

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

