"""Inference preparation: reduced-precision storage and CPU weight packing, as one explicit step.

A model's `forward` never changes its parameters. What makes inference cheaper by changing them (bf16 weights,
oneDNN-packed `nn.Linear` weights) happens here, once, on a model that is then used for inference only:

    model = build_model(cfg); load weights; model = prepare_for_inference(model, dtype="bf16")

The returned `InferenceModel` wraps the model: it runs it in eval mode without gradients, under `torch.autocast`
when the cast is `"autocast"`, and refuses to go back to training (build a fresh model for that). The predictor,
the demo, `train_net --eval-only` and the benchmark apply it from the `TEST.INFERENCE_*` keys
(`inference_options(cfg)`); training and the evaluations during training never do.

Members need nothing to support it. One optional attribute refines it: `autocast_fp32_modules`, the names of
submodules that run with autocast disabled (FOCUS's pixel decoder), whose weights then stay exactly fp32 under the
`"autocast"` cast. Outputs are returned as the member produces them.
"""
import contextlib

import torch
from torch import nn

from .packing import pack_linears, unpack_linears
from .precision import autocast_parameter_names, store_parameters_in

__all__ = ["INFERENCE_DTYPES", "INFERENCE_CASTS", "InferenceModel", "inference_options", "prepare_for_inference"]

INFERENCE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
INFERENCE_CASTS = ("autocast", "full")


def inference_options(cfg):
    """`{"dtype", "cast", "pack"}` from a config's `TEST.INFERENCE_DTYPE / _CAST / _PACK`."""
    return {"dtype": cfg.TEST.INFERENCE_DTYPE, "cast": cfg.TEST.INFERENCE_CAST, "pack": cfg.TEST.INFERENCE_PACK}


def _cast(model, dtype, cast):
    if cast == "full":
        # every child (backbone, heads...) in `dtype`; the model's own constants (pixel mean/std) stay fp32
        for child in model.children():
            child.to(dtype)
        return
    # modules that run with autocast disabled keep exact fp32 weights (a round trip through `dtype` would round them)
    keep = tuple(f"{name}." for name in getattr(model, "autocast_fp32_modules", ()))
    names = {n for n in autocast_parameter_names(model) if not n.startswith(keep)}
    store_parameters_in(model, names, dtype, others=torch.float32)


class InferenceModel(nn.Module):
    """A model prepared by `prepare_for_inference`: `forward(batched_inputs)` runs it in eval mode, without
    gradients, under autocast in `autocast_dtype` (None: no autocast). Inference only."""

    def __init__(self, model, autocast_dtype=None):
        super().__init__()
        self.model = model
        self.autocast_dtype = autocast_dtype
        self.train(False)

    @property
    def device(self):
        return next(self.model.buffers(), next(self.model.parameters())).device

    def train(self, mode=True):
        if mode:
            raise RuntimeError("a model prepared for inference (packed or cast weights) cannot be trained: build a "
                               "fresh model for training")
        return super().train(False)

    def forward(self, batched_inputs):
        precision = contextlib.nullcontext()
        if self.autocast_dtype is not None:
            precision = torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype, cache_enabled=False)
        with torch.inference_mode(), precision:
            return self.model(batched_inputs)


def prepare_for_inference(model, dtype="fp32", cast="autocast", pack=True):
    """Prepare `model` (in place) for inference and return it wrapped in an `InferenceModel`.

    Args:
        model: a built (and loaded) model; it must not be trained afterwards.
        dtype: "fp32", "bf16" or "fp16": the dtype the weights are stored in.
        cast: how a reduced `dtype` applies. "autocast": the weights autocast rounds anyway (linear, convolution,
            attention in-projection) are stored in `dtype` and the forward runs under autocast, so norms and
            residuals stay fp32 and the outputs are those of the fp32 model under autocast, bit for bit. "full":
            every weight and activation in `dtype` (faster, further from fp32).
        pack: on CPU, pack `nn.Linear` weights once for oneDNN (`focus.modeling.packing`); same values as
            `F.linear` up to the summation order.
    """
    if isinstance(model, InferenceModel):
        raise ValueError("this model is already prepared for inference")
    if dtype not in INFERENCE_DTYPES:
        raise ValueError(f"TEST.INFERENCE_DTYPE must be one of {sorted(INFERENCE_DTYPES)}, got {dtype!r}")
    if cast not in INFERENCE_CASTS:
        raise ValueError(f"TEST.INFERENCE_CAST must be one of {list(INFERENCE_CASTS)}, got {cast!r}")
    model.eval()
    torch_dtype = INFERENCE_DTYPES[dtype]
    unpack_linears(model)
    if torch_dtype != torch.float32:
        _cast(model, torch_dtype, cast)
    if pack:
        pack_linears(model)
    autocast = torch_dtype if torch_dtype != torch.float32 and cast == "autocast" else None
    return InferenceModel(model, autocast)
