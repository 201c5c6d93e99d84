"""FOCUS transformer decoder: outputs, train/eval attention masks (docs/focus.md#decoder-forward,
docs/focus.md#decoder-vs-mask2former), CLIP gating, key names."""
import torch
from torch import nn
from torch.nn import functional as F

from focus.modeling.transformer_decoder import MultiScaleMaskedTransformerDecoder

C, Q, NH = 32, 2, 4


class FakeRefiner(nn.Module):
    """Stand-in for FOCUSCLIPRefiner: records calls, returns fixed-size features."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.weight = nn.Parameter(torch.zeros(1))

    def region_features(self, images, pred_masks, pred_logits):
        self.calls += 1
        b = images.shape[0]
        assert pred_masks.shape[:2] == (b, Q) and pred_logits.shape == (b, Q, 3)
        return torch.randn(b, Q, 512), torch.randn(b, Q, 512)


def _decoder(clip_refiner=None, layers=4):
    return MultiScaleMaskedTransformerDecoder(
        C, True, num_classes=2, hidden_dim=C, num_queries=Q, nheads=NH, dim_feedforward=64, dec_layers=layers,
        pre_norm=False, mask_dim=C, enforce_input_project=False, clip_refiner=clip_refiner,
    )


def _inputs(b=2):
    x = [torch.randn(b, C, 2, 3), torch.randn(b, C, 4, 6), torch.randn(b, C, 8, 12)]
    return x, torch.randn(b, C, 16, 24), torch.randn(b, 3, 64, 96)


def _capture_masks(dec):
    masks = []
    for layer in dec.transformer_cross_attention_layers:
        layer.register_forward_hook(lambda m, args, kwargs, out: masks.append(kwargs["memory_mask"].clone()),
                                    with_kwargs=True)
    return masks


def test_outputs_and_aux():
    torch.manual_seed(0)
    dec = _decoder().eval()
    x, mf, _ = _inputs()
    with torch.no_grad():
        out = dec(x, mf)
    assert out["pred_logits"].shape == (2, Q, 3)
    assert out["pred_masks"].shape == (2, Q, 16, 24)
    assert out["pred_boxes"].shape == (2, Q, 4)
    assert out["binary_token"].shape == (Q, 2, C)
    assert out["pred_queries"] == {}
    assert len(out["aux_outputs"]) == 4
    assert all(set(a) == {"pred_logits", "pred_masks", "pred_boxes", "pred_queries", "binary_token"}
               for a in out["aux_outputs"])
    assert not dec.input_proj[0]._modules and len(list(dec.input_proj.parameters())) == 0


def test_first_attention_mask_eval_vs_train():
    torch.manual_seed(0)
    dec = _decoder(layers=3)
    with torch.no_grad():  # make the initial query masks strongly mixed so that eval masks something
        dec.query_feat.weight.normal_(0, 3)
        dec.mask_embed.layers[2].weight.mul_(20)
    masks = _capture_masks(dec)
    x, mf, _ = _inputs()
    dec.eval()
    with torch.no_grad():
        out = dec(x, mf)
    first = out["aux_outputs"][0]["pred_masks"]
    expected = F.interpolate(first, size=(2, 3), mode="bilinear", align_corners=False).sigmoid() < 0.5
    expected = expected.flatten(2).repeat_interleave(NH, 0)
    expected = expected & ~expected.all(-1, keepdim=True)
    assert masks[0].shape == (2 * NH, Q, 6)
    assert torch.equal(masks[0], expected) and masks[0].any()
    masks.clear()
    dec.train()
    dec(x, mf)
    # docs/focus.md#decoder-vs-mask2former: the first cross-attention attends everywhere in training
    assert not masks[0].any()
    assert masks[1].shape == (2 * NH, Q, 24)


def test_clip_features_only_in_training_with_refiner():
    refiner = FakeRefiner()
    dec = _decoder(clip_refiner=refiner, layers=2)
    x, mf, images = _inputs()
    dec.eval()
    with torch.no_grad():
        out = dec(x, mf, images)
    assert refiner.calls == 0 and out["pred_queries"] == {}
    dec.train()
    out = dec(x, mf, images)
    assert refiner.calls == 3
    for pred in [out] + out["aux_outputs"]:
        assert pred["pred_queries"]["image_features"].shape == (2, Q, 512)
        assert pred["pred_queries"]["text_features"].shape == (2, Q, 512)
    dec_no_clip = _decoder().train()
    assert dec_no_clip(x, mf)["pred_queries"] == {}


def test_state_dict_keys_and_clip_keys_dropped_when_not_built():
    dec = _decoder(layers=2)
    sd = dec.state_dict()
    for key, shape in [
        ("transformer_self_attention_layers.1.self_attn.in_proj_weight", (3 * C, C)),
        ("transformer_cross_attention_layers.1.multihead_attn.out_proj.weight", (C, C)),
        ("transformer_ffn_layers.1.linear1.weight", (64, C)),
        ("query_feat.weight", (Q, C)), ("query_embed.weight", (Q, C)), ("level_embed.weight", (3, C)),
        ("class_embed.weight", (3, C)), ("mask_embed.layers.2.weight", (C, C)), ("bbox_embed.layers.2.weight", (4, C)),
        ("text_embed.bn1.running_mean", (2,)), ("image_embed.projection.weight", (512, 512)),
    ]:
        assert tuple(sd[key].shape) == shape, key
    assert not any(k.startswith("clip_refiner") for k in sd)
    sd["clip_refiner.non_object_embedding"] = torch.zeros(1, 512)
    sd["clip_refiner.clip_model.visual.proj"] = torch.zeros(768, 512)
    wrapper = nn.Module()
    wrapper.predictor = dec
    prefixed = {"predictor." + k: v for k, v in sd.items()}
    result = wrapper.load_state_dict(prefixed, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    dec_with = _decoder(clip_refiner=FakeRefiner(), layers=2)
    result = dec_with.load_state_dict(sd, strict=False)
    assert "clip_refiner.non_object_embedding" in result.unexpected_keys  # kept (not dropped) when CLIP is built
