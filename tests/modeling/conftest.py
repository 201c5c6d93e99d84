"""Fixtures shared by the modeling tests."""
import pytest


def _tiny_clip(depth=3, seed=0, embed_dim=32, layers=3):
    """A small open_clip ViT/16 at 224 px (same code paths as ViT-B/16, fast), mask prompt added, frozen
    except `visual.mask_embedding` as in the FOCUS refiner."""
    import open_clip
    import torch
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    from focus.modeling.clip_refiner import add_mask_prompt

    torch.manual_seed(seed)
    model = open_clip.model.CLIP(
        embed_dim=embed_dim,
        vision_cfg=CLIPVisionCfg(layers=layers, width=64, head_width=32, patch_size=16, image_size=224),
        text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2, layers=1),
        quick_gelu=True,
    )
    add_mask_prompt(model, depth)
    for name, p in model.named_parameters():
        p.requires_grad = name == "visual.mask_embedding"
    return model


@pytest.fixture(scope="session")
def tiny_clip():
    """Builder `tiny_clip(depth=3, seed=0, embed_dim=32, layers=3)` of a small mask-prompted CLIP."""
    return _tiny_clip
