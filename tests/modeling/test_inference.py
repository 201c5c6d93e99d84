"""`prepare_for_inference`: reduced precision and packing as one explicit step; a plain eval forward changes
nothing in the model."""
import copy

import pytest
import torch
from detectron2.modeling import build_model

from focus.modeling.inference import InferenceModel, prepare_for_inference

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tiny_model(load_cfg):
    torch.manual_seed(0)
    cfg = load_cfg("tiny/focus_tiny.yaml", "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256",
                   "MODEL.MASK_FORMER.DEC_LAYERS", "3")
    return build_model(cfg)


def _inputs(seed=1, size=64):
    return [{"image": torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed)) * 255}]


def test_eval_forward_has_no_side_effect(tiny_model):
    """A training model's state dict (values, dtypes, storage) is bit-identical before and after an eval forward,
    and its parameters stay readable (no packed or emptied weights)."""
    model = copy.deepcopy(tiny_model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    numel = sum(p.numel() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        model(_inputs())
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert after[k].dtype == v.dtype and torch.equal(after[k], v), k
    assert sum(p.numel() for p in model.parameters()) == numel
    assert not any("_packed_weight" in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("cast", ["autocast", "full"])
def test_reduced_precision(cast, tiny_model):
    ref_model = copy.deepcopy(tiny_model).eval()
    prepared = prepare_for_inference(copy.deepcopy(tiny_model), dtype="bf16", cast=cast)
    model = prepared.model
    inputs = _inputs(size=32)
    with torch.no_grad():
        ref = ref_model(inputs)[0]
    out = prepared(inputs)[0]
    head = model.sem_seg_head
    bf16 = torch.bfloat16
    if cast == "full":
        assert {p.dtype for p in model.backbone.parameters()} | {p.dtype for p in head.parameters()} == {bf16}
    else:
        assert head.predictor.class_embed.weight.dtype == bf16
        assert model.backbone.blocks[0].attn.qkv.weight.dtype == bf16
        assert model.backbone.blocks[0].norm1.weight.dtype == torch.float32
        assert model.backbone.pos_embed.dtype == torch.float32
        # FOCUS.autocast_fp32_modules: the pixel decoder runs with autocast off (docs/focus.md)
        assert {p.dtype for p in head.pixel_decoder.parameters()} == {torch.float32}
    assert out["sem_seg"].dtype == torch.float32
    assert (out["sem_seg"] - ref["sem_seg"]).abs().max() < 0.1


def test_autocast_cast_is_plain_autocast(tiny_model):
    """cast "autocast" = the fp32 network under torch.autocast and fp32 post-processing, bit for bit, with the
    matmul weights stored in bf16 (half their memory, no per-call casts)."""
    ref_model = copy.deepcopy(tiny_model).eval()
    # oneDNN's packed bf16 products differ from ATen's in summation order: compare the casts alone
    prepared = prepare_for_inference(copy.deepcopy(tiny_model), dtype="bf16", pack=False)
    for module in (ref_model.backbone, ref_model.sem_seg_head):
        module.forward = torch.autocast("cpu", dtype=torch.bfloat16)(module.forward)
    inputs = _inputs()
    with torch.no_grad():
        ref = ref_model(inputs)[0]
    out = prepared(inputs)[0]
    assert torch.equal(out["sem_seg"], ref["sem_seg"])
    assert torch.equal(out["mask"], ref["mask"])
    model = prepared.model
    assert sum(p.numel() for p in model.parameters() if p.dtype == torch.bfloat16) > 0.8 * sum(
        p.numel() for p in model.backbone.parameters()
    )


def test_packing_keeps_outputs_and_state_dict(tiny_model):
    ref_model = copy.deepcopy(tiny_model).eval()
    prepared = prepare_for_inference(copy.deepcopy(tiny_model))
    assert isinstance(prepared, InferenceModel)
    with torch.no_grad():
        ref = ref_model(_inputs())[0]
    out = prepared(_inputs())[0]
    torch.testing.assert_close(out["sem_seg"], ref["sem_seg"], rtol=0, atol=1e-5)
    sd = prepared.model.state_dict()
    for k, v in ref_model.state_dict().items():
        assert torch.equal(sd[k], v), k
    with pytest.raises(RuntimeError, match="cannot be trained"):
        prepared.train()


def test_bad_options_are_named(tiny_model):
    with pytest.raises(ValueError, match="INFERENCE_DTYPE"):
        prepare_for_inference(copy.deepcopy(tiny_model), dtype="int8")
    with pytest.raises(ValueError, match="INFERENCE_CAST"):
        prepare_for_inference(copy.deepcopy(tiny_model), cast="half")
