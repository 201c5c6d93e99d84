"""The frozen CLIP tower of the FOCUS CLIP refiner, built offline with open_clip (docs/focus.md#clip-model).

The official code loads OpenAI's CLIP as modified by OVSeg: a `visual.mask_embedding` `(depth, grid², width)`
and a mask-prompted visual forward. Here the same network is an open_clip `CLIP` of the OpenAI
architecture (QuickGELU) whose state-dict keys are OpenAI's; the mask embedding is added as a parameter of
`visual` and the mask-prompted forward is `encode_image_with_mask_prompt`. Weights are random unless a
local OpenAI / open_clip state dict is given; nothing is ever downloaded.

open_clip (which imports timm) is imported by the functions that build a CLIP model, not at module import: it
costs memory and start-up time that inference, which never reads CLIP, should not pay (docs/speed_memory.md#memory).
"""

import logging
import zipfile

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CLIP_PIXEL_MEAN",
    "CLIP_PIXEL_STD",
    "open_clip_name",
    "build_clip_model",
    "add_mask_prompt",
    "load_clip_weights",
    "encode_image_with_mask_prompt",
    "encode_text",
]

logger = logging.getLogger(__name__)

# OpenAI CLIP image statistics (0..1 scale, RGB)
CLIP_PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)

# keys of an OpenAI state dict that are metadata, not tensors of the model
_OPENAI_META_KEYS = ("input_resolution", "context_length", "vocab_size")


def open_clip_name(name):
    """OpenAI model name ("ViT-B/16") → open_clip architecture with QuickGELU ("ViT-B-16-quickgelu")."""
    import open_clip

    arch = name.replace("/", "-")
    if not arch.endswith("-quickgelu"):
        arch += "-quickgelu"
    if arch not in open_clip.list_models():
        raise ValueError(f"MODEL.CLIP_REFINER.CLIP_MODEL_NAME {name!r}: no open_clip architecture {arch!r}")
    return arch


def build_clip_model(name="ViT-B/16", mask_prompt_depth=3, weights=""):
    """Build the CLIP model `name` (OpenAI naming) with a mask-prompt embedding, frozen except the embedding.

    Args:
        name: OpenAI CLIP model name, e.g. "ViT-B/16".
        mask_prompt_depth: number of mask-prompt embeddings (input + the first `depth − 1` blocks).
        weights: "" for random weights, "openai" for OpenAI's released weights (open_clip's `openai` pretrained
            tag, downloaded by open_clip into its cache when online), else a local OpenAI or open_clip state dict
            (or OpenAI JIT archive).
    Returns:
        open_clip `CLIP` with `visual.mask_embedding` `(depth, grid², width)` ~ N(0, 0.02) (docs/focus.md#clip-model:
        FOCUS's MAE-style init; pretrained checkpoints have no such key) and `visual.mask_pool`.
    """
    import open_clip

    arch = open_clip_name(name)
    if weights == "openai":
        try:
            clip = open_clip.create_model(arch, pretrained="openai")
        except Exception as e:  # noqa: BLE001 -- any download/cache failure gets the same guidance
            raise RuntimeError(
                f"MODEL.CLIP_REFINER.WEIGHTS 'openai': open_clip could not fetch OpenAI's {name} weights ({e}). "
                "Offline, point MODEL.CLIP_REFINER.WEIGHTS to a local copy (OpenAI's ViT-B-16.pt or an open_clip "
                "state dict), or set it to '' when MODEL.WEIGHTS is a FOCUS checkpoint that contains the tower."
            ) from e
        logger.info("Loaded OpenAI's %s weights through open_clip", name)
        model = add_mask_prompt(clip, mask_prompt_depth)
    else:
        model = add_mask_prompt(open_clip.create_model(arch, pretrained=None), mask_prompt_depth)
        if weights:
            load_clip_weights(model, weights)
    for pname, param in model.named_parameters():
        param.requires_grad = pname == "visual.mask_embedding"
    return model


def add_mask_prompt(model, mask_prompt_depth):
    """Give the ViT `model.visual` of an open_clip `CLIP` a `mask_embedding` `(depth, grid², width)`
    ~ N(0, 0.02) and a `mask_pool` (patch-size average pooling) in place; returns `model`."""
    visual = model.visual
    width = visual.conv1.out_channels
    num_patches = visual.grid_size[0] * visual.grid_size[1]
    visual.mask_embedding = nn.Parameter(torch.empty(mask_prompt_depth, num_patches, width))
    nn.init.normal_(visual.mask_embedding, std=0.02)
    visual.mask_pool = nn.AvgPool2d(visual.patch_size, visual.patch_size)
    visual.mask_prompt_depth = mask_prompt_depth
    return model


def _is_torchscript(path):
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") for n in zf.namelist())


def _read_state_dict(path):
    if _is_torchscript(path):  # OpenAI's released files are TorchScript archives
        return torch.jit.load(path, map_location="cpu").state_dict()
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def load_clip_weights(model, path):
    """Load a local CLIP state dict (OpenAI or open_clip layout, optionally under "state_dict"/"model",
    optionally with a "module." prefix) into `model`. `visual.mask_embedding` may be absent (it keeps its
    initialisation, as in the official non-strict load); any other missing or unexpected key is an error."""
    state = _read_state_dict(path)
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    state = {k: v.float() for k, v in state.items() if k not in _OPENAI_META_KEYS}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "visual.mask_embedding"]
    if missing or unexpected:
        raise KeyError(
            f"MODEL.CLIP_REFINER.WEIGHTS {path}: not a {type(model).__name__} state dict "
            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''})"
        )
    logger.info("Loaded CLIP weights from %s", path)


def encode_image_with_mask_prompt(visual, images, masks=None):
    """Mask-prompted CLIP image encoder (OVSeg, docs/focus.md#clip-model).

    Patches whose mask prompt is 0 have their tokens replaced by `mask_embedding[0]` before the class
    token / positional embedding, and by `mask_embedding[d]` after block `d` for `d < depth`. The mask
    prompt of a patch is `ceil(mean of the mask over the patch)`, i.e. 1 unless the patch is entirely 0.

    Args:
        visual: the `visual` tower returned by `build_clip_model`.
        images: `(R, 3, S, S)` CLIP-normalised images (S = 224 for ViT-B/16).
        masks: `(R, 1, S, S)` mask prompts in [0, 1], or None for the plain CLIP forward.
    Returns:
        `(R, E)` image embeddings `ln_post(cls) @ proj` (not normalised).
    """
    x = visual.conv1(images)
    x = x.flatten(2).transpose(1, 2)  # (R, grid², width)
    if masks is not None:
        m = torch.ceil(visual.mask_pool(masks.to(x.dtype)).flatten(1).unsqueeze(-1))  # (R, grid², 1)
        emb = visual.mask_embedding.to(x.dtype)
        x = x * m + emb[0] * (1 - m)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(x)
    x = x.transpose(0, 1).contiguous()  # (L, R, width): see `residual_block_seq_first`
    for d, block in enumerate(visual.transformer.resblocks, start=1):
        x = residual_block_seq_first(block, x)
        if masks is not None and d < visual.mask_prompt_depth:
            x = torch.cat([x[:1], x[1:] * m.transpose(0, 1) + emb[d][:, None] * (1 - m.transpose(0, 1))], dim=0)
    x = visual.ln_post(x[0])
    return x @ visual.proj


def residual_block_seq_first(block, x):
    """open_clip `ResidualAttentionBlock` on a contiguous sequence-first `(L, N, D)` tensor.

    The same function as `block(x.transpose(0, 1)).transpose(0, 1)`. open_clip's attention is batch-first, and
    `nn.MultiheadAttention` then transposes its input internally; when that input requires grad, the
    non-contiguous in-projection becomes a batched matmul that copies the weight once per token (most of a CPU
    training step; docs/speed_memory.md#training). In sequence-first layout every projection is one GEMM.
    """
    attn = block.attn
    y = block.ln_1(x)
    y = F.multi_head_attention_forward(
        y, y, y, attn.embed_dim, attn.num_heads, attn.in_proj_weight, attn.in_proj_bias, None, None, False,
        0.0, attn.out_proj.weight, attn.out_proj.bias, training=attn.training, need_weights=False,
    )[0]
    x = x + block.ls_1(y)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def encode_text(model, tokens):
    """CLIP text features `(N, E)` (EOT token, projected, not normalised) of `(N, L)` token ids.

    Equal to `model.encode_text(tokens)` (OpenAI architecture: causal mask, EOT = highest token id), but the
    sequence is cut after the last EOT of the batch: with a causal mask the EOT feature does not depend on
    the padding after it, and prompts are ~15 of the 77 context tokens, so this is ~5x cheaper.
    """
    eot = tokens.argmax(-1)
    n = int(eot.max()) + 1
    x = model.token_embedding(tokens[:, :n]) + model.positional_embedding[:n]
    x = model.transformer(x, attn_mask=model.attn_mask[:n, :n])
    x = model.ln_final(x)
    return x[torch.arange(x.shape[0], device=x.device), eot] @ model.text_projection
