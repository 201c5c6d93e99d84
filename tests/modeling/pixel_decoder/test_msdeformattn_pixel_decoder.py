"""MSDeformAttnPixelDecoder: official key names/shapes, output shapes, fp32 under autocast, reference points."""
import torch
from detectron2.layers import ShapeSpec

from focus.modeling.pixel_decoder import MSDeformAttnPixelDecoder
from focus.modeling.pixel_decoder.msdeformattn import MSDeformAttnTransformerEncoder

D = 24


def _decoder(ffn=1024, layers=2, dropout=0.0, with_cp=False):
    shapes = {f"res{i}": ShapeSpec(channels=D, stride=2 ** i) for i in range(2, 6)}
    return MSDeformAttnPixelDecoder(
        shapes,
        with_cp=with_cp,
        transformer_dropout=dropout,
        transformer_nheads=4,
        transformer_dim_feedforward=ffn,
        transformer_enc_layers=layers,
        conv_dim=64,
        mask_dim=32,
        norm="GN",
        transformer_in_features=["res3", "res4", "res5"],
        common_stride=4,
    )


def _features(b=2, h=64, w=96):
    return {f"res{i}": torch.randn(b, D, h // 2 ** i, w // 2 ** i) for i in range(2, 6)}


def test_state_dict_keys_match_official_layout():
    sd = _decoder(ffn=1024, layers=2).state_dict()
    assert sd["input_proj.0.0.weight"].shape == (64, D, 1, 1)
    assert sd["input_proj.2.1.weight"].shape == (64,)
    assert sd["transformer.level_embed"].shape == (3, 64)
    assert sd["transformer.encoder.layers.1.self_attn.sampling_offsets.weight"].shape == (4 * 3 * 4 * 2, 64)
    assert sd["transformer.encoder.layers.1.self_attn.value_proj.weight"].shape == (64, 64)
    assert sd["transformer.encoder.layers.0.linear1.weight"].shape == (1024, 64)
    assert sd["adapter_1.weight"].shape == (64, D, 1, 1) and "adapter_1.bias" not in sd
    assert sd["layer_1.norm.weight"].shape == (64,) and "layer_1.bias" not in sd
    assert sd["mask_features.weight"].shape == (32, 64, 1, 1)
    per_layer = [k for k in sd if k.startswith("transformer.encoder.layers.0.")]
    assert len(per_layer) == 16
    assert len(sd) == 12 + 1 + 2 * 16 + 2 + 3 + 3


def test_with_cp_gives_the_same_values_and_gradients():
    # dropout on: checkpointing must replay the RNG so the recomputed layers drop the same units
    torch.manual_seed(0)
    plain = _decoder(ffn=32, layers=2, dropout=0.3).train()
    cp = _decoder(ffn=32, layers=2, dropout=0.3, with_cp=True).train()
    cp.load_state_dict(plain.state_dict())
    feats = _features()
    grads, outs, saved = [], [], []
    for dec in (plain, cp):
        x = {k: v.clone().requires_grad_() for k, v in feats.items()}
        torch.manual_seed(1)
        packed = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t.numel()) or t, lambda t: t):
            mask_features, _, ms = dec(x)
        saved.append(sum(packed))
        (mask_features.square().mean() + sum(m.mean() for m in ms)).backward()
        outs.append(mask_features.detach())
        grads.append([x["res3"].grad] + [p.grad for p in dec.parameters()])
    assert saved[1] < 0.5 * saved[0]  # the encoder layers' activations were not kept
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=0)
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_output_shapes_and_fp32_under_autocast():
    dec = _decoder(ffn=32, layers=1).eval()
    feats = {k: v.bfloat16() for k, v in _features().items()}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        mask_features, coarse, ms = dec(feats)
    assert mask_features.shape == (2, 32, 16, 24) and mask_features.dtype == torch.float32
    assert [tuple(m.shape) for m in ms] == [(2, 64, 2, 3), (2, 64, 4, 6), (2, 64, 8, 12)]
    assert all(m.dtype == torch.float32 for m in ms)
    assert coarse is ms[0]
    # forward_features is the official entry point
    with torch.no_grad():
        a = dec.forward_features(_features())[0]
    assert a.shape == (2, 32, 16, 24)


def test_reference_points_are_pixel_centres():
    ref = MSDeformAttnTransformerEncoder.get_reference_points([(2, 3), (1, 2)], 2, "cpu")
    assert ref.shape == (2, 8, 2, 2)
    expected = torch.tensor(
        [[1 / 6, 1 / 4], [3 / 6, 1 / 4], [5 / 6, 1 / 4], [1 / 6, 3 / 4], [3 / 6, 3 / 4], [5 / 6, 3 / 4],
         [1 / 4, 1 / 2], [3 / 4, 1 / 2]]
    )
    torch.testing.assert_close(ref[1, :, 0], expected)
    torch.testing.assert_close(ref[:, :, 1], ref[:, :, 0])
