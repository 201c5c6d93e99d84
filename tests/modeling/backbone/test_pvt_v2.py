"""`PyramidVisionTransformerV2` (original layout) computes timm's PVT-v2 function: same weights renamed, same maps."""
import re

import torch


def to_timm(key):
    """Original PVT-v2 key -> timm key."""
    key = re.sub(r"^patch_embed1\.", "patch_embed.", key)
    key = re.sub(r"^patch_embed(\d)\.", lambda m: f"stages.{int(m.group(1)) - 1}.downsample.", key)
    key = re.sub(r"^block(\d)\.", lambda m: f"stages.{int(m.group(1)) - 1}.blocks.", key)
    key = re.sub(r"^norm(\d)\.", lambda m: f"stages.{int(m.group(1)) - 1}.norm.", key)
    return key.replace("mlp.dwconv.dwconv.", "mlp.dwconv.")


def test_pvt_v2_b0_equals_timm():
    import timm

    from focus.modeling.backbone.pvt_v2 import build_pvt_v2

    torch.manual_seed(0)
    ours = build_pvt_v2("pvt_v2_b0").eval()
    ref = timm.create_model("pvt_v2_b0", pretrained=False, num_classes=0).eval()
    sd = {to_timm(k): v for k, v in ours.state_dict().items()}
    missing, unexpected = ref.load_state_dict(sd, strict=False)
    assert not unexpected and not [k for k in missing if not k.startswith("head")]
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        got = ours(x)
        want = ref.forward_intermediates(x, intermediates_only=True)
    assert [tuple(t.shape) for t in got] == [(1, 32, 24, 32), (1, 64, 12, 16), (1, 160, 6, 8), (1, 256, 3, 4)]
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-5)
